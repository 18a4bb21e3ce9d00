//! Builds the cache and rate-limiter drivers a config names (the adapter is chosen in
//! `server.rs`). Redis drivers connect through [`RedisBackend`]; an unreachable Redis does not
//! stop startup, it is reported as degraded and retried.

use std::sync::Arc;

use sockudo_config::{CacheDriver, RateLimiterDriver, RedisTarget, ServerConfig};

use crate::cache::memory::MemoryCache;
use crate::cache::none::NoCache;
use crate::cache::redis::RedisCache;
use crate::cache::{Cache, Metered};
use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;
use crate::rate_limit::memory::MemoryRateLimiter;
use crate::rate_limit::none::NoRateLimiter;
use crate::rate_limit::redis::RedisRateLimiter;
use crate::redis_backend::{RedisBackend, RedisBackendError, RedisOptions};

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("{key} = {driver} but no Redis server is configured for it")]
    NoTarget {
        key: &'static str,
        driver: &'static str,
    },
    #[error(transparent)]
    Redis(#[from] RedisBackendError),
}

async fn backend(
    name: &'static str,
    driver: &'static str,
    target: Option<RedisTarget>,
    metrics: &Metrics,
) -> Result<RedisBackend, DriverError> {
    let key = if name == "cache" {
        "cache.driver"
    } else {
        "rate_limiter.driver"
    };
    let target = target.ok_or(DriverError::NoTarget { key, driver })?;
    let up = metrics.backend_up.with_label_values(&[name, driver]);
    Ok(RedisBackend::connect(name, &target, RedisOptions::default(), Some(up)).await?)
}

/// The general cache, wrapped with its metrics.
pub async fn cache(
    config: &ServerConfig,
    metrics: &Metrics,
) -> Result<Arc<dyn Cache>, DriverError> {
    let driver = config.cache.driver;
    let inner: Arc<dyn Cache> = match driver {
        CacheDriver::None => Arc::new(NoCache),
        CacheDriver::Memory => Arc::new(MemoryCache::new(config.cache.memory.max_capacity)),
        CacheDriver::Redis | CacheDriver::RedisCluster => {
            let b = backend("cache", driver.as_str(), config.cache_redis(), metrics).await?;
            Arc::new(RedisCache::new(b, config.cache_prefix()))
        }
    };
    Ok(Arc::new(Metered::new(inner, metrics)))
}

/// The rate limiter; `enabled: false` and `driver: none` both give [`NoRateLimiter`] (and the
/// call sites skip it altogether).
pub async fn rate_limiter(
    config: &ServerConfig,
    metrics: &Metrics,
) -> Result<Arc<dyn RateLimiter>, DriverError> {
    if !config.rate_limiter.is_active() {
        return Ok(Arc::new(NoRateLimiter));
    }
    let driver = config.rate_limiter.driver;
    Ok(match driver {
        RateLimiterDriver::None => Arc::new(NoRateLimiter),
        RateLimiterDriver::Memory => Arc::new(MemoryRateLimiter::default()),
        RateLimiterDriver::Redis | RateLimiterDriver::RedisCluster => {
            let b = backend(
                "rate_limiter",
                driver.as_str(),
                config.rate_limiter_redis(),
                metrics,
            )
            .await?;
            Arc::new(RedisRateLimiter::new(b, config.rate_limiter_prefix()))
        }
    })
}
