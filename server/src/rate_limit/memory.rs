//! GCRA counters in process memory, sharded to keep lock contention low. Expired keys are swept
//! lazily, so memory stays bounded by the keys active within one window.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use async_trait::async_trait;
use sockudo_config::RateLimit;

use crate::adapter::BackendHealth;
use crate::rate_limit::{Decision, RateLimitError, RateLimiter, gcra, now_micros};

const SHARDS: usize = 16;
const SWEEP_EVERY_MICROS: u64 = 10_000_000;

#[derive(Default)]
struct Shard {
    tats: HashMap<String, u64>,
    last_sweep: u64,
}

pub struct MemoryRateLimiter {
    shards: Vec<Mutex<Shard>>,
    hasher: RandomState,
}

impl Default for MemoryRateLimiter {
    fn default() -> Self {
        MemoryRateLimiter {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl MemoryRateLimiter {
    /// Synchronous check at a given time (tests and the async trait share it).
    pub fn check_at(&self, key: &str, limit: &RateLimit, now: u64) -> Decision {
        let shard = &self.shards[self.hasher.hash_one(key) as usize % SHARDS];
        let mut shard = shard.lock().expect("rate limiter lock");
        if now.saturating_sub(shard.last_sweep) > SWEEP_EVERY_MICROS {
            // A TAT in the past means a full bucket: the same as no entry.
            shard.tats.retain(|_, tat| *tat > now);
            shard.last_sweep = now;
        }
        let (decision, new_tat) = gcra(shard.tats.get(key).copied(), now, limit);
        if let Some(t) = new_tat {
            shard.tats.insert(key.to_string(), t);
        }
        decision
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    fn driver(&self) -> &'static str {
        "memory"
    }

    async fn check(&self, key: &str, limit: &RateLimit) -> Result<Decision, RateLimitError> {
        Ok(self.check_at(key, limit, now_micros()))
    }

    fn health(&self) -> BackendHealth {
        BackendHealth::Ok
    }
}
