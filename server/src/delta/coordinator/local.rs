//! Node-local counting: each node numbers its own publishes. Exact on a single node; on a
//! cluster without coordination, nodes' schedules differ (that is what the other drivers fix).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use moka::sync::Cache;

use crate::delta::coordinator::{CoordinationError, Coordinator, StreamKey};

type Key = (Arc<str>, Arc<str>, Option<Arc<str>>);

pub struct LocalCoordinator {
    counters: Cache<Key, Arc<AtomicU64>>,
}

impl LocalCoordinator {
    /// Counters idle for `ttl` are dropped (and restart at 1); at most `capacity` streams.
    pub fn new(ttl: Duration, capacity: u64) -> Self {
        LocalCoordinator {
            counters: Cache::builder()
                .time_to_idle(ttl)
                .max_capacity(capacity)
                .build(),
        }
    }
}

#[async_trait]
impl Coordinator for LocalCoordinator {
    fn driver(&self) -> &'static str {
        "local"
    }

    async fn next_seq(&self, key: StreamKey<'_>) -> Result<u64, CoordinationError> {
        let k: Key = (
            Arc::from(key.app_id),
            Arc::from(key.channel),
            key.conflation_key.map(Arc::from),
        );
        let counter = self.counters.get_with(k, || Arc::new(AtomicU64::new(0)));
        Ok(counter.fetch_add(1, Ordering::AcqRel) + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_per_stream() {
        let c = LocalCoordinator::new(Duration::from_secs(60), 100);
        let k = |ck| StreamKey {
            app_id: "a",
            channel: "c",
            conflation_key: ck,
        };
        assert_eq!(c.next_seq(k(None)).await.unwrap(), 1);
        assert_eq!(c.next_seq(k(None)).await.unwrap(), 2);
        assert_eq!(c.next_seq(k(Some("BTC"))).await.unwrap(), 1);
        assert_eq!(c.next_seq(k(None)).await.unwrap(), 3);
    }
}
