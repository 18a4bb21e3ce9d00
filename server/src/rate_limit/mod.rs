//! Rate limiting with GCRA (generic cell rate algorithm): one timestamp per key, the
//! "theoretical arrival time" (TAT). A limit of `max_requests` per `window_seconds` admits a
//! burst of `max_requests` and then one request every `window / max_requests`.
//!
//! [`gcra`] is pure integer arithmetic on microseconds so a Redis Lua script (GET tat, the same
//! arithmetic, SET tat PX) gives identical answers to the memory driver.

pub mod client_ip;
pub mod memory;
pub mod none;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use sockudo_config::RateLimit;

use crate::adapter::BackendHealth;

#[derive(Debug, thiserror::Error)]
pub enum RateLimitError {
    #[error("rate limiter backend unavailable: {0}")]
    Unavailable(String),
}

/// The answer to one request, with what the X-RateLimit-* headers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u64,
    pub remaining: u64,
    /// Until the bucket is full again.
    pub reset_after: Duration,
    /// Until the next request would be allowed (zero when allowed).
    pub retry_after: Duration,
}

/// One GCRA step. `tat` is the stored TAT (µs), `now` the current time (µs). Returns the
/// decision and the TAT to store (None: leave the stored value unchanged).
pub fn gcra(tat: Option<u64>, now: u64, limit: &RateLimit) -> (Decision, Option<u64>) {
    let max = limit.max_requests.max(1);
    let window = limit.window_seconds.max(1).saturating_mul(1_000_000);
    let interval = (window / max).max(1);
    let tat = tat.unwrap_or(now).max(now);
    let new_tat = tat + interval;
    let allow_at = new_tat.saturating_sub(window);
    if now < allow_at {
        return (
            Decision {
                allowed: false,
                limit: max,
                remaining: 0,
                reset_after: Duration::from_micros(tat - now),
                retry_after: Duration::from_micros(allow_at - now),
            },
            None,
        );
    }
    let used = new_tat - now;
    (
        Decision {
            allowed: true,
            limit: max,
            remaining: (window - used) / interval,
            reset_after: Duration::from_micros(used),
            retry_after: Duration::ZERO,
        },
        Some(new_tat),
    )
}

/// Microseconds since the Unix epoch (the clock a shared backend would also use).
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[async_trait]
pub trait RateLimiter: Send + Sync {
    fn driver(&self) -> &'static str;
    async fn check(&self, key: &str, limit: &RateLimit) -> Result<Decision, RateLimitError>;
    fn health(&self) -> BackendHealth;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(max: u64, secs: u64) -> RateLimit {
        RateLimit {
            max_requests: max,
            window_seconds: secs,
        }
    }

    #[test]
    fn burst_then_steady_rate() {
        let l = limit(5, 1);
        let mut tat = None;
        let now = 1_000_000_000;
        for i in 0..5 {
            let (d, t) = gcra(tat, now, &l);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 4 - i);
            tat = t;
        }
        let (d, t) = gcra(tat, now, &l);
        assert!(!d.allowed);
        assert_eq!(t, None);
        assert_eq!(d.retry_after, Duration::from_millis(200));
        // One interval later one more request fits.
        let (d, _) = gcra(tat, now + 200_000, &l);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
    }

    #[test]
    fn idle_bucket_refills() {
        let l = limit(2, 1);
        let (_, tat) = gcra(None, 0, &l);
        let (_, tat) = gcra(tat, 0, &l);
        let (d, _) = gcra(tat, 5_000_000, &l);
        assert!(d.allowed);
        assert_eq!(d.remaining, 1);
    }
}
