//! The CEL rules (`x-kubernetes-validations`) of the CRD, in one place.
//!
//! The API server enforces them from 1.25 on; older ones drop them silently, which is why
//! [`crate::validate`] implements the same rules in Rust and the tests check both agree.

use serde_json::{Value, json};

/// One CEL rule with the message the user sees when it fails.
#[derive(Debug, Clone, Copy)]
pub struct CelRule {
    pub rule: &'static str,
    pub message: &'static str,
}

/// `r` is a RedisSpec in standalone mode (the default mode).
macro_rules! standalone {
    ($r:literal) => {
        concat!("(!has(", $r, ".mode) || ", $r, ".mode == 'standalone')")
    };
}
macro_rules! cluster {
    ($r:literal) => {
        concat!("(has(", $r, ".mode) && ", $r, ".mode == 'cluster')")
    };
}

pub const LOCAL_IS_SINGLE_NODE: CelRule = CelRule {
    rule: "(has(self.adapter) && self.adapter.driver != 'local') || (self.replicas <= 1 && !has(self.autoscaling))",
    message: "adapter.driver `local` runs one node: replicas > 1 or autoscaling needs adapter.driver redis, redis-cluster or nats",
};

pub const REDIS_ADAPTER_NEEDS_STANDALONE: CelRule = CelRule {
    rule: concat!(
        "!has(self.adapter) || self.adapter.driver != 'redis' || (has(self.redis) && ",
        standalone!("self.redis"),
        ")"
    ),
    message: "adapter.driver `redis` needs spec.redis in standalone mode",
};

pub const REDIS_CLUSTER_ADAPTER_NEEDS_CLUSTER: CelRule = CelRule {
    rule: concat!(
        "!has(self.adapter) || self.adapter.driver != 'redis-cluster' || (has(self.redis) && ",
        cluster!("self.redis"),
        ")"
    ),
    message: "adapter.driver `redis-cluster` needs spec.redis with mode `cluster`",
};

pub const NATS_ADAPTER_NEEDS_NATS: CelRule = CelRule {
    rule: "!has(self.adapter) || self.adapter.driver != 'nats' || has(self.nats)",
    message: "adapter.driver `nats` needs spec.nats",
};

pub const COORDINATION_NEEDS_SHARED_ADAPTER: CelRule = CelRule {
    rule: "!has(self.deltaCompression) || !has(self.deltaCompression.clusterCoordination) || !self.deltaCompression.clusterCoordination || (has(self.adapter) && self.adapter.driver in ['redis', 'redis-cluster', 'nats'])",
    message: "deltaCompression.clusterCoordination needs adapter.driver redis, redis-cluster or nats (it uses the adapter's backend)",
};

pub const CACHE_REDIS_NEEDS_STANDALONE: CelRule = CelRule {
    rule: concat!(
        "!has(self.cache) || self.cache.driver != 'redis' || (has(self.cache.redis) ? ",
        standalone!("self.cache.redis"),
        " : (has(self.redis) && ",
        standalone!("self.redis"),
        "))"
    ),
    message: "cache.driver `redis` needs a standalone Redis: cache.redis or spec.redis",
};

pub const CACHE_REDIS_CLUSTER_NEEDS_CLUSTER: CelRule = CelRule {
    rule: concat!(
        "!has(self.cache) || self.cache.driver != 'redis-cluster' || (has(self.cache.redis) ? ",
        cluster!("self.cache.redis"),
        " : (has(self.redis) && ",
        cluster!("self.redis"),
        "))"
    ),
    message: "cache.driver `redis-cluster` needs a Redis Cluster: cache.redis or spec.redis with mode `cluster`",
};

pub const LIMITER_REDIS_NEEDS_STANDALONE: CelRule = CelRule {
    rule: concat!(
        "!has(self.rateLimiter) || !has(self.rateLimiter.driver) || (has(self.rateLimiter.enabled) && !self.rateLimiter.enabled) || self.rateLimiter.driver != 'redis' || (has(self.rateLimiter.redis) ? ",
        standalone!("self.rateLimiter.redis"),
        " : ((has(self.redis) && ",
        standalone!("self.redis"),
        ") || (has(self.cache) && has(self.cache.redis) && ",
        standalone!("self.cache.redis"),
        ")))"
    ),
    message: "rateLimiter.driver `redis` needs a standalone Redis: rateLimiter.redis, spec.redis or cache.redis",
};

pub const LIMITER_REDIS_CLUSTER_NEEDS_CLUSTER: CelRule = CelRule {
    rule: concat!(
        "!has(self.rateLimiter) || !has(self.rateLimiter.driver) || (has(self.rateLimiter.enabled) && !self.rateLimiter.enabled) || self.rateLimiter.driver != 'redis-cluster' || (has(self.rateLimiter.redis) ? ",
        cluster!("self.rateLimiter.redis"),
        " : ((has(self.redis) && ",
        cluster!("self.redis"),
        ") || (has(self.cache) && has(self.cache.redis) && ",
        cluster!("self.cache.redis"),
        ")))"
    ),
    message: "rateLimiter.driver `redis-cluster` needs a Redis Cluster: rateLimiter.redis, spec.redis or cache.redis with mode `cluster`",
};

pub const AUTOSCALING_MIN_LE_MAX: CelRule = CelRule {
    rule: "!has(self.autoscaling) || self.autoscaling.minReplicas <= self.autoscaling.maxReplicas",
    message: "autoscaling.minReplicas must not exceed autoscaling.maxReplicas",
};

/// `r` is a managed Redis Cluster (`r` may be unset).
macro_rules! managed_cluster {
    ($r:literal) => {
        concat!(
            "(has(",
            $r,
            ") && has(",
            $r,
            ".managed) && ",
            cluster!($r),
            ")"
        )
    };
}

/// The operator forms, scales and reports (`status.redisCluster`) one managed Redis Cluster per
/// SockudoCluster; a second would be created and never formed.
pub const ONE_MANAGED_REDIS_CLUSTER: CelRule = CelRule {
    rule: concat!(
        "[",
        managed_cluster!("self.redis"),
        ", has(self.cache) && ",
        managed_cluster!("self.cache.redis"),
        ", has(self.rateLimiter) && ",
        managed_cluster!("self.rateLimiter.redis"),
        "].filter(m, m).size() <= 1"
    ),
    message: "at most one managed Redis Cluster per SockudoCluster: let the cache and rate limiter share spec.redis (leave their redis unset), or make the others external",
};

/// Rules on `spec` (`self` is the spec).
pub const SPEC_RULES: &[CelRule] = &[
    LOCAL_IS_SINGLE_NODE,
    REDIS_ADAPTER_NEEDS_STANDALONE,
    REDIS_CLUSTER_ADAPTER_NEEDS_CLUSTER,
    NATS_ADAPTER_NEEDS_NATS,
    COORDINATION_NEEDS_SHARED_ADAPTER,
    CACHE_REDIS_NEEDS_STANDALONE,
    CACHE_REDIS_CLUSTER_NEEDS_CLUSTER,
    LIMITER_REDIS_NEEDS_STANDALONE,
    LIMITER_REDIS_CLUSTER_NEEDS_CLUSTER,
    AUTOSCALING_MIN_LE_MAX,
    ONE_MANAGED_REDIS_CLUSTER,
];

pub const REDIS_MANAGED_XOR_EXTERNAL: CelRule = CelRule {
    rule: "has(self.managed) != has(self.external)",
    message: "set exactly one of managed or external",
};

pub const REDIS_CLUSTER_MIN_MASTERS: CelRule = CelRule {
    rule: concat!(
        "!has(self.managed) || !",
        cluster!("self"),
        " || !has(self.managed.masters) || self.managed.masters >= 3"
    ),
    message: "a managed Redis Cluster needs at least 3 masters",
};

pub const REDIS_EXTERNAL_ADDRESS: CelRule = CelRule {
    rule: concat!(
        "!has(self.external) || (",
        cluster!("self"),
        " ? (has(self.external.nodes) && !has(self.external.url) && !has(self.external.host)) : (!has(self.external.nodes) && has(self.external.url) != has(self.external.host)))"
    ),
    message: "an external Redis Cluster is given by nodes; a standalone one by exactly one of url or host",
};

/// `tokenKey` and `credentialsKey` of a shared `BackendSecretRef` are NATS modes; on a Redis they
/// would be mounted and never read.
pub const REDIS_SECRET_KEYS: CelRule = CelRule {
    rule: "!has(self.external) || !has(self.external.secretRef) || (!has(self.external.secretRef.tokenKey) && !has(self.external.secretRef.credentialsKey))",
    message: "external.secretRef.tokenKey and credentialsKey are for NATS; Redis takes usernameKey and passwordKey",
};

/// Rules on every Redis section (`spec.redis`, `cache.redis`, `rateLimiter.redis`).
pub const REDIS_RULES: &[CelRule] = &[
    REDIS_MANAGED_XOR_EXTERNAL,
    REDIS_CLUSTER_MIN_MASTERS,
    REDIS_EXTERNAL_ADDRESS,
    REDIS_SECRET_KEYS,
];

/// Rules on `spec.nats`.
pub const NATS_RULES: &[CelRule] = &[CelRule {
    rule: "has(self.managed) != has(self.external)",
    message: "set exactly one of managed or external",
}];

/// An external NATS's `secretRef` in one credentials mode, as the server config requires: NATS
/// takes user and password, a token, or a `.creds` file, and the client would send them all.
pub const NATS_TOKEN_ALONE: CelRule = CelRule {
    rule: "!has(self.secretRef) || !has(self.secretRef.tokenKey) || (!has(self.secretRef.usernameKey) && !has(self.secretRef.passwordKey))",
    message: "secretRef.tokenKey cannot be combined with usernameKey or passwordKey: NATS takes one credentials mode",
};

pub const NATS_CREDENTIALS_ALONE: CelRule = CelRule {
    rule: "!has(self.secretRef) || !has(self.secretRef.credentialsKey) || (!has(self.secretRef.usernameKey) && !has(self.secretRef.passwordKey) && !has(self.secretRef.tokenKey))",
    message: "secretRef.credentialsKey cannot be combined with usernameKey, passwordKey or tokenKey: NATS takes one credentials mode",
};

pub const NATS_PASSWORD_NEEDS_USERNAME: CelRule = CelRule {
    rule: "!has(self.secretRef) || !has(self.secretRef.passwordKey) || has(self.secretRef.usernameKey)",
    message: "secretRef.passwordKey needs usernameKey: NATS password authentication takes both",
};

/// Rules on `spec.nats.external`.
pub const NATS_EXTERNAL_RULES: &[CelRule] = &[
    NATS_TOKEN_ALONE,
    NATS_CREDENTIALS_ALONE,
    NATS_PASSWORD_NEEDS_USERNAME,
];

fn to_json(rules: &[CelRule]) -> Value {
    Value::Array(
        rules
            .iter()
            .map(|r| json!({"rule": r.rule, "message": r.message}))
            .collect(),
    )
}

pub fn spec_rules_json() -> Value {
    to_json(SPEC_RULES)
}

pub fn redis_rules_json() -> Value {
    to_json(REDIS_RULES)
}

pub fn nats_rules_json() -> Value {
    to_json(NATS_RULES)
}

pub fn nats_external_rules_json() -> Value {
    to_json(NATS_EXTERNAL_RULES)
}
