//! Which backend each consumer uses, following the server's own precedence (`resolve.rs` of the
//! config crate): a consumer's own Redis, else `spec.redis`, else (rate limiter only) the cache's.
//! Only backends some consumer uses are deployed; the rest are pruned and reported.

use kube::ResourceExt;
use sockudo_config::{AdapterDriver, CacheDriver, RateLimiterDriver};

use crate::crd::{NatsSpec, RedisMode, RedisSpec, SockudoCluster, SockudoClusterSpec};

/// Which Redis section of the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RedisRole {
    /// `spec.redis`
    Shared,
    /// `spec.cache.redis`
    Cache,
    /// `spec.rateLimiter.redis`
    RateLimiter,
}

impl RedisRole {
    /// Used in child names, mount paths and the `component` label.
    pub fn slug(self) -> &'static str {
        match self {
            RedisRole::Shared => "redis",
            RedisRole::Cache => "cache-redis",
            RedisRole::RateLimiter => "ratelimiter-redis",
        }
    }

    pub fn spec_path(self) -> &'static str {
        match self {
            RedisRole::Shared => "spec.redis",
            RedisRole::Cache => "spec.cache.redis",
            RedisRole::RateLimiter => "spec.rateLimiter.redis",
        }
    }
}

/// One Redis section of the spec and its role.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RedisInstance<'a> {
    pub role: RedisRole,
    pub spec: &'a RedisSpec,
}

impl RedisInstance<'_> {
    pub fn mode(&self) -> RedisMode {
        self.spec.mode()
    }

    pub fn is_managed(&self) -> bool {
        self.spec.managed.is_some()
    }

    /// `component` label of a managed instance; differs by mode so a mode switch never reuses a
    /// StatefulSet (and its volumes) of the other shape.
    pub fn component(&self) -> String {
        match self.mode() {
            RedisMode::Standalone => self.role.slug().to_string(),
            RedisMode::Cluster => format!("{}-cluster", self.role.slug()),
        }
    }

    /// Name of the managed StatefulSet, its Service and config.
    pub fn managed_name(&self, cluster: &SockudoCluster) -> String {
        format!("{}-{}", cluster.name_any(), self.component())
    }

    /// Name of the generated password Secret of a managed instance.
    pub fn auth_secret(&self, cluster: &SockudoCluster) -> String {
        format!("{}-auth", self.managed_name(cluster))
    }
}

/// What each consumer uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Topology<'a> {
    pub adapter_redis: Option<RedisInstance<'a>>,
    pub cache_redis: Option<RedisInstance<'a>>,
    pub limiter_redis: Option<RedisInstance<'a>>,
    /// The NATS the adapter uses.
    pub nats: Option<&'a NatsSpec>,
}

fn instance(role: RedisRole, spec: Option<&RedisSpec>) -> Option<RedisInstance<'_>> {
    spec.map(|spec| RedisInstance { role, spec })
}

fn with_mode(i: Option<RedisInstance<'_>>, mode: RedisMode) -> Option<RedisInstance<'_>> {
    i.filter(|i| i.mode() == mode)
}

impl<'a> Topology<'a> {
    pub fn of(spec: &'a SockudoClusterSpec) -> Self {
        let shared = instance(RedisRole::Shared, spec.redis.as_ref());
        let cache_own = instance(
            RedisRole::Cache,
            spec.cache.as_ref().and_then(|c| c.redis.as_ref()),
        );
        let adapter = spec.adapter.as_ref().map(|a| a.driver).unwrap_or_default();
        let adapter_redis = match adapter {
            AdapterDriver::Redis | AdapterDriver::RedisCluster => shared,
            AdapterDriver::Local | AdapterDriver::Nats => None,
        };
        let cache_mode = match spec.cache.as_ref().map(|c| c.driver) {
            Some(CacheDriver::Redis) => Some(RedisMode::Standalone),
            Some(CacheDriver::RedisCluster) => Some(RedisMode::Cluster),
            _ => None,
        };
        let cache_redis = cache_mode.and_then(|_| cache_own.or(shared));
        let limiter = spec.rate_limiter.as_ref();
        let limiter_mode = match limiter
            .filter(|l| l.enabled != Some(false))
            .and_then(|l| l.driver)
        {
            Some(RateLimiterDriver::Redis) => Some(RedisMode::Standalone),
            Some(RateLimiterDriver::RedisCluster) => Some(RedisMode::Cluster),
            _ => None,
        };
        let limiter_redis = limiter_mode.and_then(|mode| {
            instance(
                RedisRole::RateLimiter,
                limiter.and_then(|l| l.redis.as_ref()),
            )
            .or(with_mode(shared, mode))
            .or(with_mode(cache_own, mode))
        });
        let nats = match adapter {
            AdapterDriver::Nats => spec.nats.as_ref(),
            _ => None,
        };
        Topology {
            adapter_redis,
            cache_redis,
            limiter_redis,
            nats,
        }
    }

    /// Every Redis section some consumer uses, once each, in role order.
    pub fn used_redis(&self) -> Vec<RedisInstance<'a>> {
        let mut used: Vec<RedisInstance<'a>> =
            [self.adapter_redis, self.cache_redis, self.limiter_redis]
                .into_iter()
                .flatten()
                .collect();
        used.sort_by_key(|i| i.role);
        used.dedup_by_key(|i| i.role);
        used
    }

    pub fn uses(&self, role: RedisRole) -> bool {
        self.used_redis().iter().any(|i| i.role == role)
    }
}
