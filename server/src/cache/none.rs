//! No cache: every lookup misses (cache channels always answer `pusher:cache_miss`).

use std::time::Duration;

use async_trait::async_trait;

use crate::adapter::BackendHealth;
use crate::cache::{Cache, CacheError, Cached};

pub struct NoCache;

#[async_trait]
impl Cache for NoCache {
    fn driver(&self) -> &'static str {
        "none"
    }

    async fn get(&self, _: &str) -> Result<Option<Cached>, CacheError> {
        Ok(None)
    }

    async fn set(&self, _: &str, _: String, _: Duration) -> Result<(), CacheError> {
        Ok(())
    }

    async fn delete(&self, _: &str) -> Result<(), CacheError> {
        Ok(())
    }

    async fn replace(&self, _: &str, _: String, _: Duration) -> Result<Option<String>, CacheError> {
        Ok(None)
    }

    fn health(&self) -> BackendHealth {
        BackendHealth::Ok
    }
}
