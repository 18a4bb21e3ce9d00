//! Redis connection settings for the adapter drivers (kept inside the adapter module so the
//! cache / rate limiter Redis module can evolve on its own).

use std::time::Duration;

use sockudo_config::{RedisTarget, ServerConfig};

use crate::adapter::AdapterError;

/// Connect and command timeouts: a dead backend must fail a publish fast (503), not hang it.
pub fn timeout(config: &ServerConfig) -> Duration {
    Duration::from_millis(config.adapter.request_timeout_ms.clamp(100, 10_000))
}

fn tls_unsupported(url: &str) -> Result<(), AdapterError> {
    if url.starts_with("rediss://") {
        return Err(AdapterError::Setup(
            "TLS (rediss://) to the adapter's Redis is not supported by this build".into(),
        ));
    }
    Ok(())
}

/// The standalone Redis URL of `database.redis` (password files read).
pub fn standalone_url(config: &ServerConfig) -> Result<String, AdapterError> {
    match config.adapter_redis() {
        Some(RedisTarget::Standalone(c)) => {
            let url = c.to_url().map_err(|e| AdapterError::Setup(e.to_string()))?;
            tls_unsupported(&url)?;
            Ok(url)
        }
        _ => Err(AdapterError::Setup(
            "`adapter.driver` is `redis` but `database.redis` names no server".into(),
        )),
    }
}

/// The seed node URLs of `database.redis_cluster` (password files read).
pub fn cluster_urls(config: &ServerConfig) -> Result<Vec<String>, AdapterError> {
    match config.adapter_redis() {
        Some(RedisTarget::Cluster(c)) => {
            let urls = c
                .to_urls()
                .map_err(|e| AdapterError::Setup(e.to_string()))?;
            for u in &urls {
                tls_unsupported(u)?;
            }
            Ok(urls)
        }
        _ => Err(AdapterError::Setup(
            "`adapter.driver` is `redis-cluster` but `database.redis_cluster.nodes` is empty"
                .into(),
        )),
    }
}
