//! Redis / Redis Cluster counting: one Lua script does INCR and refreshes the key's expiry
//! atomically, so concurrent publishers on any node never share a number and idle streams expire.
//!
//! Key: `{prefix}:delta:{<app>:<channel>}:<conflation>`. The hash tag puts every stream of a
//! channel on one Cluster slot; parts are escaped (`=XX`) so `:`/`{`/`}` in values cannot collide.

use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use tokio::sync::OnceCell;

use crate::delta::coordinator::{CoordinationError, Coordinator, StreamKey, escaped};

const SCRIPT: &str = r"
local n = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
return n
";

enum Target {
    Standalone(Box<redis::Client>),
    Cluster(Box<redis::cluster::ClusterClient>),
}

enum Conn {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

pub struct RedisCoordinator {
    target: Target,
    /// Connected on first use, so a Redis that is down at startup only delays deltas.
    conn: OnceCell<Conn>,
    script: Script,
    prefix: String,
    ttl_secs: u64,
}

fn unavailable(e: impl std::fmt::Display) -> CoordinationError {
    CoordinationError::Unavailable(e.to_string())
}

impl RedisCoordinator {
    /// A standalone Redis at `url`.
    pub fn standalone(url: &str, prefix: &str, ttl: Duration) -> Result<Self, CoordinationError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        Ok(Self::new(Target::Standalone(Box::new(client)), prefix, ttl))
    }

    /// A Redis Cluster from its seed node URLs.
    pub fn cluster(
        urls: &[String],
        prefix: &str,
        ttl: Duration,
    ) -> Result<Self, CoordinationError> {
        let client = redis::cluster::ClusterClientBuilder::new(urls.to_vec())
            .retries(2)
            .build()
            .map_err(unavailable)?;
        Ok(Self::new(Target::Cluster(Box::new(client)), prefix, ttl))
    }

    fn new(target: Target, prefix: &str, ttl: Duration) -> Self {
        RedisCoordinator {
            target,
            conn: OnceCell::new(),
            script: Script::new(SCRIPT),
            prefix: prefix.trim_end_matches(':').to_string(),
            ttl_secs: ttl.as_secs().max(1),
        }
    }

    /// The Redis key of a stream.
    pub fn key(&self, k: StreamKey<'_>) -> String {
        let keep = |b: u8| !matches!(b, b'=' | b':' | b'{' | b'}') && b.is_ascii_graphic();
        format!(
            "{}:delta:{{{}:{}}}:{}",
            self.prefix,
            escaped(k.app_id, keep),
            escaped(k.channel, keep),
            k.conflation_key
                .map_or_else(|| "-".to_string(), |c| format!("k{}", escaped(c, keep)))
        )
    }

    async fn conn(&self) -> Result<&Conn, CoordinationError> {
        self.conn
            .get_or_try_init(|| async {
                match &self.target {
                    Target::Standalone(c) => {
                        let cfg = redis::aio::ConnectionManagerConfig::new()
                            .set_connection_timeout(Some(Duration::from_secs(2)))
                            .set_response_timeout(Some(Duration::from_secs(2)))
                            .set_number_of_retries(1);
                        ConnectionManager::new_with_config((**c).clone(), cfg)
                            .await
                            .map(Conn::Standalone)
                            .map_err(unavailable)
                    }
                    Target::Cluster(c) => c
                        .get_async_connection()
                        .await
                        .map(Conn::Cluster)
                        .map_err(unavailable),
                }
            })
            .await
    }
}

#[async_trait]
impl Coordinator for RedisCoordinator {
    fn driver(&self) -> &'static str {
        match self.target {
            Target::Standalone(_) => "redis",
            Target::Cluster(_) => "redis-cluster",
        }
    }

    async fn next_seq(&self, k: StreamKey<'_>) -> Result<u64, CoordinationError> {
        let key = self.key(k);
        let mut inv = self.script.key(&key);
        inv.arg(self.ttl_secs);
        let n: i64 = match self.conn().await? {
            Conn::Standalone(c) => inv.invoke_async(&mut c.clone()).await,
            Conn::Cluster(c) => inv.invoke_async(&mut c.clone()).await,
        }
        .map_err(unavailable)?;
        u64::try_from(n).map_err(|_| CoordinationError::Protocol(format!("INCR gave {n}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_escaped_and_hash_tagged() {
        let c =
            RedisCoordinator::standalone("redis://127.0.0.1:1", "sockudo:", Duration::from_secs(9))
                .unwrap();
        let k = c.key(StreamKey {
            app_id: "1",
            channel: "private-a:b",
            conflation_key: Some("x}{y z"),
        });
        assert_eq!(k, "sockudo:delta:{1:private-a=3Ab}:kx=7D=7By=20z");
        let k = c.key(StreamKey {
            app_id: "1",
            channel: "c",
            conflation_key: None,
        });
        assert_eq!(k, "sockudo:delta:{1:c}:-");
    }
}
