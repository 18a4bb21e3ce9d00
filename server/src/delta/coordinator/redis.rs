//! Redis / Redis Cluster counting: one Lua script does INCR and refreshes the key's expiry
//! atomically, so concurrent publishers on any node never share a number and idle streams expire.
//!
//! Key: `{prefix}:delta:{<app>:<channel>}:<conflation>`. The hash tag puts every stream of a
//! channel on one Cluster slot; parts are escaped (`=XX`) so `:`/`{`/`}` in values cannot collide.
//!
//! The connection is a [`RedisBackend`], made from the adapter's `database.redis` /
//! `database.redis_cluster` section like every other Redis consumer's (credentials, TLS,
//! timeouts, reconnection).

use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use sockudo_config::RedisTarget;

use crate::adapter::BackendHealth;
use crate::delta::coordinator::{CoordinationError, Coordinator, StreamKey, escaped};
use crate::redis_backend::{RedisBackend, RedisBackendError, RedisOptions};

const SCRIPT: &str = r"
local n = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
return n
";

pub struct RedisCoordinator {
    backend: RedisBackend,
    script: Script,
    prefix: String,
    ttl_secs: u64,
}

impl RedisCoordinator {
    /// Connects to `target` (one attempt; a Redis that is down is retried in the background and
    /// only delays deltas). Only a bad configuration is an error.
    pub async fn connect(
        target: &RedisTarget,
        prefix: &str,
        ttl: Duration,
    ) -> Result<Self, RedisBackendError> {
        let backend =
            RedisBackend::connect("delta_coordination", target, RedisOptions::default(), None)
                .await?;
        Ok(Self::new(backend, prefix, ttl))
    }

    pub fn new(backend: RedisBackend, prefix: &str, ttl: Duration) -> Self {
        RedisCoordinator {
            backend,
            script: Script::new(SCRIPT),
            prefix: prefix.trim_end_matches(':').to_string(),
            ttl_secs: ttl.as_secs().max(1),
        }
    }

    /// The Redis key of a stream.
    pub fn key(&self, k: StreamKey<'_>) -> String {
        stream_key(&self.prefix, k)
    }
}

/// `{prefix}:delta:{<app>:<channel>}:<conflation>` (prefix without its trailing `:`).
fn stream_key(prefix: &str, k: StreamKey<'_>) -> String {
    let keep = |b: u8| !matches!(b, b'=' | b':' | b'{' | b'}') && b.is_ascii_graphic();
    format!(
        "{prefix}:delta:{{{}:{}}}:{}",
        escaped(k.app_id, keep),
        escaped(k.channel, keep),
        k.conflation_key
            .map_or_else(|| "-".to_string(), |c| format!("k{}", escaped(c, keep)))
    )
}

#[async_trait]
impl Coordinator for RedisCoordinator {
    fn driver(&self) -> &'static str {
        self.backend.driver()
    }

    async fn next_seq(&self, k: StreamKey<'_>) -> Result<u64, CoordinationError> {
        let key = self.key(k);
        let mut inv = self.script.key(&key);
        inv.arg(self.ttl_secs);
        let inv = &inv;
        let n: i64 = self
            .backend
            .run(|mut c| async move { inv.invoke_async(&mut c).await })
            .await
            .map_err(|e| match e {
                RedisBackendError::Timeout { ms, .. } => CoordinationError::Timeout(ms as u64),
                e => CoordinationError::Unavailable(e.to_string()),
            })?;
        u64::try_from(n).map_err(|_| CoordinationError::Protocol(format!("INCR gave {n}")))
    }

    /// The backend's own health checks (connected at start-up, PING every second).
    fn health(&self) -> BackendHealth {
        self.backend.health()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_escaped_and_hash_tagged() {
        let k = stream_key(
            "sockudo",
            StreamKey {
                app_id: "1",
                channel: "private-a:b",
                conflation_key: Some("x}{y z"),
            },
        );
        assert_eq!(k, "sockudo:delta:{1:private-a=3Ab}:kx=7D=7By=20z");
        let k = stream_key(
            "sockudo",
            StreamKey {
                app_id: "1",
                channel: "c",
                conflation_key: None,
            },
        );
        assert_eq!(k, "sockudo:delta:{1:c}:-");
    }
}
