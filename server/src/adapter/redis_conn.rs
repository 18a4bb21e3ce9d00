//! Which Redis the adapter drivers use and with which timeouts. The connections themselves are
//! made by [`crate::redis_backend`], like every other Redis consumer's, so credentials, TLS and
//! reconnection behave the same everywhere.

use std::time::Duration;

use sockudo_config::{RedisClusterConnection, RedisConnection, RedisTarget, ServerConfig};

use crate::adapter::AdapterError;
use crate::redis_backend::{RedisBackendError, RedisOptions};

/// Connect and command timeouts: a dead backend must fail a publish fast (503), not hang it.
pub fn timeout(config: &ServerConfig) -> Duration {
    Duration::from_millis(config.adapter.request_timeout_ms.clamp(100, 10_000))
}

/// The backend options of the adapter's connections.
pub fn options(config: &ServerConfig) -> RedisOptions {
    let t = timeout(config);
    RedisOptions {
        connect_timeout: t,
        response_timeout: t,
        ..RedisOptions::default()
    }
}

impl From<RedisBackendError> for AdapterError {
    fn from(e: RedisBackendError) -> Self {
        AdapterError::Setup(e.to_string())
    }
}

/// `database.redis`, for `adapter.driver: redis`.
pub fn standalone(config: &ServerConfig) -> Result<RedisConnection, AdapterError> {
    match config.adapter_redis() {
        Some(RedisTarget::Standalone(c)) => Ok(c),
        _ => Err(AdapterError::Setup(
            "`adapter.driver` is `redis` but `database.redis` names no server".into(),
        )),
    }
}

/// `database.redis_cluster`, for `adapter.driver: redis-cluster`.
pub fn cluster(config: &ServerConfig) -> Result<RedisClusterConnection, AdapterError> {
    match config.adapter_redis() {
        Some(RedisTarget::Cluster(c)) => Ok(c),
        _ => Err(AdapterError::Setup(
            "`adapter.driver` is `redis-cluster` but `database.redis_cluster.nodes` is empty"
                .into(),
        )),
    }
}
