//! The general cache: cache channels' last events (and, later, other shared state). Each
//! entry carries its own TTL.

pub mod memory;
pub mod none;

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
    fn health(&self) -> BackendHealth;
}

/// Key of a cache channel's last event.
pub fn cache_channel_key(app_id: &str, channel: &str) -> String {
    format!("app:{app_id}:cache_channel:{channel}")
}
