//! In-process cache (moka), bounded, with each entry's own TTL honoured.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::Expiry;
use moka::sync::Cache as Moka;

use crate::adapter::BackendHealth;
use crate::cache::{Cache, CacheError, Cached};

#[derive(Clone)]
struct Entry {
    value: Arc<str>,
    ttl: Duration,
    stored: Instant,
}

/// Expires each entry after the TTL it was stored with.
struct PerEntryTtl;

impl Expiry<String, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _: &String, e: &Entry, _: Instant) -> Option<Duration> {
        Some(e.ttl)
    }

    fn expire_after_update(
        &self,
        _: &String,
        e: &Entry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(e.ttl)
    }
}

pub struct MemoryCache {
    inner: Moka<String, Entry>,
    /// Makes `replace` (read, then write) atomic; other operations do not take it.
    replacing: std::sync::Mutex<()>,
}

impl MemoryCache {
    pub fn new(max_capacity: u64) -> Self {
        MemoryCache {
            inner: Moka::builder()
                .max_capacity(max_capacity)
                .expire_after(PerEntryTtl)
                .build(),
            replacing: std::sync::Mutex::default(),
        }
    }
}

#[async_trait]
impl Cache for MemoryCache {
    fn driver(&self) -> &'static str {
        "memory"
    }

    async fn get(&self, key: &str) -> Result<Option<Cached>, CacheError> {
        Ok(self.inner.get(key).and_then(|e| {
            let left = e.ttl.checked_sub(e.stored.elapsed())?;
            Some(Cached {
                value: e.value.to_string(),
                ttl: left,
            })
        }))
    }

    async fn set(&self, key: &str, value: String, ttl: Duration) -> Result<(), CacheError> {
        self.inner.insert(
            key.to_string(),
            Entry {
                value: value.into(),
                ttl,
                stored: Instant::now(),
            },
        );
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.inner.invalidate(key);
        Ok(())
    }

    async fn replace(
        &self,
        key: &str,
        value: String,
        ttl: Duration,
    ) -> Result<Option<String>, CacheError> {
        let _one_at_a_time = self.replacing.lock().expect("cache lock");
        let old = self
            .inner
            .get(key)
            .filter(|e| e.stored.elapsed() < e.ttl)
            .map(|e| e.value.to_string());
        self.inner.insert(
            key.to_string(),
            Entry {
                value: value.into(),
                ttl,
                stored: Instant::now(),
            },
        );
        Ok(old)
    }

    fn health(&self) -> BackendHealth {
        BackendHealth::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn per_entry_ttl() {
        let c = MemoryCache::new(100);
        c.set("short", "a".into(), Duration::from_millis(50))
            .await
            .unwrap();
        c.set("long", "b".into(), Duration::from_secs(60))
            .await
            .unwrap();
        let long = c.get("long").await.unwrap().unwrap();
        assert!(long.ttl > Duration::from_secs(59));
        assert_eq!(c.get("short").await.unwrap().unwrap().value, "a");
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(c.get("short").await.unwrap(), None);
        assert_eq!(c.get("long").await.unwrap().unwrap().value, "b");
        c.delete("long").await.unwrap();
        assert_eq!(c.get("long").await.unwrap(), None);
    }
}
