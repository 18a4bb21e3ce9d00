//! GCRA on Redis or Redis Cluster (`rate_limiter.driver: redis | redis-cluster`): the limit is
//! cluster-wide because every node reads and writes the same TAT key.
//!
//! One Lua script does GET, the arithmetic of [`gcra`](crate::rate_limit::gcra) and SET PX, so a
//! check is atomic (two nodes racing cannot both take the last slot) and costs one round trip
//! (EVALSHA, falling back to EVAL on NOSCRIPT, which `redis::Script` does). The script touches a
//! single key, so in cluster mode it runs on that key's master.
//!
//! Lua numbers are doubles: every value here (µs since the epoch ~1.8e15, windows in µs) is an
//! integer below 2^53, where double arithmetic is exact and `math.floor(a / b)` equals integer
//! division; so the script's answers are the memory driver's, bit for bit.
//!
//! The clock is Redis' `TIME`, not the caller's: nodes with skewed clocks still share one
//! timeline. Tests pass an explicit `now` to compare with the memory driver.

use std::time::Duration;

use async_trait::async_trait;
use sockudo_config::RateLimit;

use crate::adapter::BackendHealth;
use crate::rate_limit::{Decision, RateLimitError, RateLimiter};
use crate::redis_backend::{RedisBackend, RedisBackendError};

/// KEYS[1] = TAT key; ARGV = max requests, window (µs), now (µs, or "" for Redis TIME).
/// Returns {allowed, limit, remaining, reset_after_us, retry_after_us}.
const GCRA_LUA: &str = r#"
local max = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local interval = math.floor(window / max)
if interval < 1 then interval = 1 end
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - window
if allow_at < 0 then allow_at = 0 end
if now < allow_at then
  return {0, max, 0, tat - now, allow_at - now}
end
local used = new_tat - now
-- The key is useless once its TAT is in the past: let Redis drop it then.
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.floor(used / 1000) + 1)
return {1, max, math.floor((window - used) / interval), used, 0}
"#;

pub struct RedisRateLimiter {
    backend: RedisBackend,
    prefix: String,
    script: redis::Script,
}

impl From<RedisBackendError> for RateLimitError {
    fn from(e: RedisBackendError) -> Self {
        RateLimitError::Unavailable(e.to_string())
    }
}

impl RedisRateLimiter {
    pub fn new(backend: RedisBackend, prefix: impl Into<String>) -> Self {
        RedisRateLimiter {
            backend,
            prefix: prefix.into(),
            script: redis::Script::new(GCRA_LUA),
        }
    }

    /// One check; `now` in µs since the epoch, or None for Redis' own clock.
    pub async fn check_at(
        &self,
        key: &str,
        limit: &RateLimit,
        now: Option<u64>,
    ) -> Result<Decision, RateLimitError> {
        // The same normalisation as `gcra`, done here so both drivers get identical inputs.
        let max = limit.max_requests.max(1);
        let window = limit.window_seconds.max(1).saturating_mul(1_000_000);
        let key = format!("{}{key}", self.prefix);
        let now = now.map(|n| n.to_string()).unwrap_or_default();
        let (allowed, limit, remaining, reset_us, retry_us): (u8, u64, u64, u64, u64) = self
            .backend
            .run(|mut c| {
                let mut inv = self.script.key(&key);
                inv.arg(max).arg(window).arg(&now);
                async move { inv.invoke_async(&mut c).await }
            })
            .await?;
        Ok(Decision {
            allowed: allowed == 1,
            limit,
            remaining,
            reset_after: Duration::from_micros(reset_us),
            retry_after: Duration::from_micros(retry_us),
        })
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    fn driver(&self) -> &'static str {
        self.backend.driver()
    }

    async fn check(&self, key: &str, limit: &RateLimit) -> Result<Decision, RateLimitError> {
        self.check_at(key, limit, None).await
    }

    fn health(&self) -> BackendHealth {
        self.backend.health()
    }
}
