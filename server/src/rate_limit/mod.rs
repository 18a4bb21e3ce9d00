//! Rate limiting with GCRA (generic cell rate algorithm): one timestamp per key, the
//! "theoretical arrival time" (TAT). A limit of `max_requests` per `window_seconds` admits a
//! burst of `max_requests` and then one request every `window / max_requests`.
//!
//! [`gcra`] is pure integer arithmetic on microseconds so a Redis Lua script (GET tat, the same
//! arithmetic, SET tat PX) gives identical answers to the memory driver.
//!
//! Drivers: `memory`, `redis` / `redis-cluster` ([`redis::RedisRateLimiter`], cluster-wide) and
//! `none`. `enabled: false` and `driver: none` mean the same: no limiter is consulted at all.
//! [`enforce`] applies the one policy every call site shares, including
//! `rate_limiter.on_backend_failure` when a shared backend cannot answer.

pub mod client_ip;
pub mod memory;
pub mod none;
pub mod redis;

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

/// What a call site does with one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead; the decision feeds the X-RateLimit-* headers (None: backend down, failing open).
    Allowed(Option<Decision>),
    /// Over the limit: 429 (or the WebSocket equivalent) with Retry-After.
    Refused(Decision),
    /// Backend down and `on_backend_failure: closed`: 503, saying why.
    Unavailable(String),
}

/// Checks `key` against `limit` with the configured driver and failure policy, counting the
/// outcome (`rate_limit_decisions_total`, `rate_limit_hits_total`,
/// `rate_limiter_backend_failures_total`). `name` labels the limit (`api_ip`, `websocket`, ...).
pub async fn enforce(
    state: &crate::state::ServerState,
    name: &str,
    key: &str,
    limit: &RateLimit,
) -> Verdict {
    let m = &state.metrics;
    let driver = state.limiter.driver();
    match state.limiter.check(key, limit).await {
        Ok(d) if d.allowed => {
            m.rate_limit_decisions
                .with_label_values(&[driver, name, "allowed"])
                .inc();
            Verdict::Allowed(Some(d))
        }
        Ok(d) => {
            m.rate_limit_decisions
                .with_label_values(&[driver, name, "refused"])
                .inc();
            m.rate_limit_hits.with_label_values(&[name]).inc();
            Verdict::Refused(d)
        }
        Err(e) => {
            let mode = state.config.rate_limiter.on_backend_failure;
            let mode_name = match mode {
                sockudo_config::FailureMode::Open => "open",
                sockudo_config::FailureMode::Closed => "closed",
            };
            m.rate_limit_decisions
                .with_label_values(&[driver, name, "backend_error"])
                .inc();
            m.rate_limiter_backend_failures
                .with_label_values(&[driver, mode_name])
                .inc();
            // The outage itself is logged once by the backend; per request only at debug.
            tracing::debug!(error = %e, limit = name, on_backend_failure = mode_name, "rate limiter unavailable");
            match mode {
                sockudo_config::FailureMode::Open => Verdict::Allowed(None),
                sockudo_config::FailureMode::Closed => Verdict::Unavailable(format!(
                    "{e}; rate_limiter.on_backend_failure is closed, so requests are refused until it is back"
                )),
            }
        }
    }
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
