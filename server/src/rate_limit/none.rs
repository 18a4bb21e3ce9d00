//! Limiting disabled: every request is allowed.

use std::time::Duration;

use async_trait::async_trait;
use sockudo_config::RateLimit;

use crate::adapter::BackendHealth;
use crate::rate_limit::{Decision, RateLimitError, RateLimiter};

pub struct NoRateLimiter;

#[async_trait]
impl RateLimiter for NoRateLimiter {
    fn driver(&self) -> &'static str {
        "none"
    }

    async fn check(&self, _: &str, limit: &RateLimit) -> Result<Decision, RateLimitError> {
        Ok(Decision {
            allowed: true,
            limit: limit.max_requests,
            remaining: limit.max_requests,
            reset_after: Duration::ZERO,
            retry_after: Duration::ZERO,
        })
    }

    fn health(&self) -> BackendHealth {
        BackendHealth::Ok
    }
}
