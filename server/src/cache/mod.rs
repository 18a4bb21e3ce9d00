//! The general cache: cache channels' last events, the short-lived `/channels` listing and the
//! webhook de-duplication state (`webhooks::dedup`). Each entry carries its own TTL. Drivers:
//! `memory` (moka), `redis` / `redis-cluster` ([`redis::RedisCache`]) and `none`; [`Metered`]
//! wraps whichever is chosen with metrics.
//!
//! App configuration is not cached here: apps come only from the config file and live in the
//! in-memory [`AppRegistry`](crate::apps::AppRegistry), so a lookup is already a local map read
//! and there is no remote app source whose answers a cache could save.

pub mod memory;
pub mod none;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::adapter::BackendHealth;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache backend unavailable: {0}")]
    Unavailable(String),
}

/// A cached value with the time it has left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    pub value: String,
    pub ttl: Duration,
}

#[async_trait]
pub trait Cache: Send + Sync {
    fn driver(&self) -> &'static str;
    async fn get(&self, key: &str) -> Result<Option<Cached>, CacheError>;
    async fn set(&self, key: &str, value: String, ttl: Duration) -> Result<(), CacheError>;
    async fn delete(&self, key: &str) -> Result<(), CacheError>;
    /// Stores `value` and returns the value it replaced, in one atomic step (`SET .. GET` on
    /// Redis), so of several nodes writing the same value only the first sees another one.
    async fn replace(
        &self,
        key: &str,
        value: String,
        ttl: Duration,
    ) -> Result<Option<String>, CacheError>;
    fn health(&self) -> BackendHealth;
    /// Whether every node sees the same entries (a Redis driver), so the cache can settle
    /// races between nodes.
    fn shared(&self) -> bool {
        false
    }
}

/// Key of an app's `/channels` listing (cluster-wide channels and counts).
pub fn channels_listing_key(app_id: &str) -> String {
    format!("app:{app_id}:channels_listing")
}

/// Any driver, counted in `cache_operations_total{driver, op, result}`.
pub struct Metered {
    inner: Arc<dyn Cache>,
    ops: prometheus::IntCounterVec,
}

impl Metered {
    pub fn new(inner: Arc<dyn Cache>, metrics: &crate::metrics::Metrics) -> Self {
        Metered {
            inner,
            ops: metrics.cache_operations.clone(),
        }
    }

    fn count(&self, op: &str, result: &str) {
        self.ops
            .with_label_values(&[self.inner.driver(), op, result])
            .inc();
    }
}

#[async_trait]
impl Cache for Metered {
    fn driver(&self) -> &'static str {
        self.inner.driver()
    }

    async fn get(&self, key: &str) -> Result<Option<Cached>, CacheError> {
        let r = self.inner.get(key).await;
        self.count(
            "get",
            match &r {
                Ok(Some(_)) => "hit",
                Ok(None) => "miss",
                Err(_) => "error",
            },
        );
        r
    }

    async fn set(&self, key: &str, value: String, ttl: Duration) -> Result<(), CacheError> {
        let r = self.inner.set(key, value, ttl).await;
        self.count("set", if r.is_ok() { "ok" } else { "error" });
        r
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        let r = self.inner.delete(key).await;
        self.count("delete", if r.is_ok() { "ok" } else { "error" });
        r
    }

    async fn replace(
        &self,
        key: &str,
        value: String,
        ttl: Duration,
    ) -> Result<Option<String>, CacheError> {
        let r = self.inner.replace(key, value, ttl).await;
        self.count("replace", if r.is_ok() { "ok" } else { "error" });
        r
    }

    fn health(&self) -> BackendHealth {
        self.inner.health()
    }

    fn shared(&self) -> bool {
        self.inner.shared()
    }
}

/// Key of a cache channel's last event.
pub fn cache_channel_key(app_id: &str, channel: &str) -> String {
    format!("app:{app_id}:cache_channel:{channel}")
}
