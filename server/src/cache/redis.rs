//! The cache on Redis or Redis Cluster (`cache.driver: redis | redis-cluster`).
//!
//! Keys are `{cache.redis.prefix}{key}`; each entry is written with `SET .. PX ttl` so its own
//! TTL is honoured and readable back (`PTTL`) for `info=cache`. Every operation touches one key,
//! so in cluster mode each goes to the master owning that key's slot: no cross-slot commands.

use std::time::Duration;

use async_trait::async_trait;

use crate::adapter::BackendHealth;
use crate::cache::{Cache, CacheError, Cached};
use crate::redis_backend::{RedisBackend, RedisBackendError};

pub struct RedisCache {
    backend: RedisBackend,
    prefix: String,
}

impl RedisCache {
    pub fn new(backend: RedisBackend, prefix: impl Into<String>) -> Self {
        RedisCache {
            backend,
            prefix: prefix.into(),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

impl From<RedisBackendError> for CacheError {
    fn from(e: RedisBackendError) -> Self {
        CacheError::Unavailable(e.to_string())
    }
}

#[async_trait]
impl Cache for RedisCache {
    fn driver(&self) -> &'static str {
        self.backend.driver()
    }

    async fn get(&self, key: &str) -> Result<Option<Cached>, CacheError> {
        let key = self.key(key);
        // GET and PTTL in one round trip; both address the same key, hence the same slot.
        let (value, pttl): (Option<String>, i64) = self
            .backend
            .run(|mut c| {
                let key = key.clone();
                async move {
                    redis::pipe()
                        .cmd("GET")
                        .arg(&key)
                        .cmd("PTTL")
                        .arg(&key)
                        .query_async(&mut c)
                        .await
                }
            })
            .await?;
        // PTTL -2: expired between the two commands; -1 (no TTL) never happens for our writes,
        // but would read as "no time left" rather than forever.
        Ok(value.and_then(|value| {
            (pttl != -2).then(|| Cached {
                value,
                ttl: Duration::from_millis(pttl.max(0) as u64),
            })
        }))
    }

    async fn set(&self, key: &str, value: String, ttl: Duration) -> Result<(), CacheError> {
        // Redis refuses PX 0: a zero TTL means "already expired", i.e. a delete.
        let ms = ttl.as_millis() as u64;
        if ms == 0 {
            return self.delete(key).await;
        }
        self.backend
            .query::<()>(
                redis::cmd("SET")
                    .arg(self.key(key))
                    .arg(value)
                    .arg("PX")
                    .arg(ms),
            )
            .await?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.backend
            .query::<()>(redis::cmd("DEL").arg(self.key(key)))
            .await?;
        Ok(())
    }

    async fn replace(
        &self,
        key: &str,
        value: String,
        ttl: Duration,
    ) -> Result<Option<String>, CacheError> {
        // `SET .. GET` (Redis 6.2+): one command, so concurrent writers are ordered by Redis.
        let old = self
            .backend
            .query::<Option<String>>(
                redis::cmd("SET")
                    .arg(self.key(key))
                    .arg(value)
                    .arg("PX")
                    .arg((ttl.as_millis() as u64).max(1))
                    .arg("GET"),
            )
            .await?;
        Ok(old)
    }

    fn health(&self) -> BackendHealth {
        self.backend.health()
    }

    fn shared(&self) -> bool {
        true
    }
}
