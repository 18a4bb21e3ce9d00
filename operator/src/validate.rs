//! Client-side validation of a SockudoCluster spec: the CRD's CEL rules in Rust (old API servers
//! drop CEL rules silently) plus the checks CEL cannot express. Pure: no IO.

use std::collections::BTreeSet;

use sockudo_config::{AdapterDriver, CacheDriver, RateLimiterDriver};

use crate::crd::rules::{self, CelRule};
use crate::crd::{RedisMode, RedisSpec, SockudoClusterSpec};

/// One broken rule: where, and the same message the API server would give.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Invalid {
    /// Field path of the offending section, e.g. `spec.cache.redis`.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

fn standalone(r: Option<&RedisSpec>) -> bool {
    r.is_some_and(|r| r.mode() == RedisMode::Standalone)
}

fn cluster(r: Option<&RedisSpec>) -> bool {
    r.is_some_and(|r| r.mode() == RedisMode::Cluster)
}

/// Every rule the spec breaks; empty when it is valid.
pub fn validate(spec: &SockudoClusterSpec) -> Vec<Invalid> {
    let mut errors = Vec::new();
    let mut fail = |path: &str, rule: CelRule| {
        errors.push(Invalid {
            path: path.into(),
            message: rule.message.into(),
        })
    };

    let adapter = spec.adapter.as_ref().map(|a| a.driver);
    let shared = spec.redis.as_ref();
    let cache_own = spec.cache.as_ref().and_then(|c| c.redis.as_ref());

    if adapter.unwrap_or_default() == AdapterDriver::Local
        && (spec.replicas > 1 || spec.autoscaling.is_some())
    {
        fail("spec", rules::LOCAL_IS_SINGLE_NODE);
    }
    match adapter {
        Some(AdapterDriver::Redis) if !standalone(shared) => {
            fail("spec", rules::REDIS_ADAPTER_NEEDS_STANDALONE)
        }
        Some(AdapterDriver::RedisCluster) if !cluster(shared) => {
            fail("spec", rules::REDIS_CLUSTER_ADAPTER_NEEDS_CLUSTER)
        }
        Some(AdapterDriver::Nats) if spec.nats.is_none() => {
            fail("spec", rules::NATS_ADAPTER_NEEDS_NATS)
        }
        _ => {}
    }
    let coordination = spec
        .delta_compression
        .as_ref()
        .and_then(|d| d.cluster_coordination)
        .unwrap_or(false);
    if coordination && matches!(adapter, None | Some(AdapterDriver::Local)) {
        fail("spec", rules::COORDINATION_NEEDS_SHARED_ADAPTER);
    }
    if let Some(cache) = &spec.cache {
        let own = cache.redis.as_ref();
        match cache.driver {
            CacheDriver::Redis if !own.map_or(standalone(shared), |r| standalone(Some(r))) => {
                fail("spec", rules::CACHE_REDIS_NEEDS_STANDALONE)
            }
            CacheDriver::RedisCluster if !own.map_or(cluster(shared), |r| cluster(Some(r))) => {
                fail("spec", rules::CACHE_REDIS_CLUSTER_NEEDS_CLUSTER)
            }
            _ => {}
        }
    }
    if let Some(limiter) = &spec.rate_limiter
        && limiter.enabled != Some(false)
    {
        let own = limiter.redis.as_ref();
        match limiter.driver {
            Some(RateLimiterDriver::Redis)
                if !own.map_or(standalone(shared) || standalone(cache_own), |r| {
                    standalone(Some(r))
                }) =>
            {
                fail("spec", rules::LIMITER_REDIS_NEEDS_STANDALONE)
            }
            Some(RateLimiterDriver::RedisCluster)
                if !own.map_or(cluster(shared) || cluster(cache_own), |r| cluster(Some(r))) =>
            {
                fail("spec", rules::LIMITER_REDIS_CLUSTER_NEEDS_CLUSTER)
            }
            _ => {}
        }
    }
    if let Some(a) = &spec.autoscaling
        && a.min_replicas > a.max_replicas
    {
        fail("spec", rules::AUTOSCALING_MIN_LE_MAX);
    }

    let redis_sections = [
        ("spec.redis", shared),
        ("spec.cache.redis", cache_own),
        (
            "spec.rateLimiter.redis",
            spec.rate_limiter.as_ref().and_then(|l| l.redis.as_ref()),
        ),
    ];
    for (path, redis) in redis_sections {
        if let Some(redis) = redis {
            redis_rules(path, redis, &mut fail);
        }
    }
    let managed_clusters = redis_sections
        .iter()
        .filter(|(_, r)| r.is_some_and(|r| r.managed.is_some() && r.mode() == RedisMode::Cluster))
        .count();
    if managed_clusters > 1 {
        fail("spec", rules::ONE_MANAGED_REDIS_CLUSTER);
    }
    if let Some(nats) = &spec.nats
        && nats.managed.is_some() == nats.external.is_some()
    {
        fail("spec.nats", rules::NATS_RULES[0]);
    }
    if let Some(secret) = spec
        .nats
        .as_ref()
        .and_then(|n| n.external.as_ref())
        .and_then(|e| e.secret_ref.as_ref())
    {
        let path = "spec.nats.external";
        let user = secret.username_key.is_some();
        let password = secret.password_key.is_some();
        let token = secret.token_key.is_some();
        if token && (user || password) {
            fail(path, rules::NATS_TOKEN_ALONE);
        }
        if secret.credentials_key.is_some() && (user || password || token) {
            fail(path, rules::NATS_CREDENTIALS_ALONE);
        }
        if password && !user {
            fail(path, rules::NATS_PASSWORD_NEEDS_USERNAME);
        }
    }

    // The schema's digest pattern, for clients that bypass it.
    let managed_nats = spec.nats.as_ref().and_then(|n| n.managed.as_ref());
    let images = [
        ("spec".to_string(), spec.image.as_ref()),
        (
            "spec.nats.managed".to_string(),
            managed_nats.and_then(|m| m.image.as_ref()),
        ),
    ]
    .into_iter()
    .chain(redis_sections.iter().map(|(path, r)| {
        (
            format!("{path}.managed"),
            r.and_then(|r| r.managed.as_ref())
                .and_then(|m| m.image.as_ref()),
        )
    }));
    for (path, image) in images {
        if let Some(image) = image.filter(|i| !i.digest_is_valid()) {
            errors.push(Invalid {
                path: format!("{path}.image.digest"),
                message: format!(
                    "digest {:?} is not sha256:<64 lowercase hex digits>",
                    image.digest.as_deref().unwrap_or_default()
                ),
            });
        }
    }

    // Beyond CEL: duplicate app ids would make one app shadow another.
    let mut seen = BTreeSet::new();
    for app in &spec.apps {
        if !seen.insert(app.id.as_str()) {
            errors.push(Invalid {
                path: "spec.apps".into(),
                message: format!("app id {} appears more than once", app.id),
            });
        }
    }
    errors
}

fn redis_rules(path: &str, redis: &RedisSpec, fail: &mut impl FnMut(&str, CelRule)) {
    if redis.managed.is_some() == redis.external.is_some() {
        fail(path, rules::REDIS_MANAGED_XOR_EXTERNAL);
    }
    let is_cluster = redis.mode() == RedisMode::Cluster;
    if let Some(m) = &redis.managed
        && is_cluster
        && m.masters.is_some_and(|n| n < 3)
    {
        fail(path, rules::REDIS_CLUSTER_MIN_MASTERS);
    }
    if let Some(e) = &redis.external {
        let ok = if is_cluster {
            e.nodes.is_some() && e.url.is_none() && e.host.is_none()
        } else {
            e.nodes.is_none() && (e.url.is_some() != e.host.is_some())
        };
        if !ok {
            fail(path, rules::REDIS_EXTERNAL_ADDRESS);
        }
        if e.secret_ref
            .as_ref()
            .is_some_and(|s| s.token_key.is_some() || s.credentials_key.is_some())
        {
            fail(path, rules::REDIS_SECRET_KEYS);
        }
    }
}
