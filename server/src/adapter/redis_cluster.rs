//! `adapter.driver: redis-cluster`: a Redis Cluster with sharded pub/sub (Redis 7).
//!
//! Events are spread over `EVENT_BUCKETS` shard channels `{prefix}:e:{n}` (a pusher channel
//! always maps to the same one, which keeps its events in order), so their slots, and the
//! fan-out work, spread over the masters. `{prefix}:control` and the per-node inbox
//! `{prefix}:node:{node}` are shard channels too. The cluster client (RESP3) routes SPUBLISH
//! by slot, follows MOVED, and re-subscribes after reconnects and topology changes; when a
//! slot migrates, Redis drops its subscribers with a `sunsubscribe` push, and we subscribe
//! again (the client then finds the new owner). SPUBLISH's reply counts only one shard's
//! receivers, so it is never used as a delivery count.
//!
//! With `adapter.sharded_pubsub: false` the same names use classic SUBSCRIBE / PUBLISH, which
//! Redis Cluster broadcasts to every node.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind, Value};
use sockudo_config::ServerConfig;
use tokio::sync::{RwLock, mpsc};

use crate::adapter::AdapterError;
use crate::adapter::horizontal::transport::{Backoff, Topic, Transport, TransportError};
use crate::adapter::redis_conn;
use crate::redis_backend;

/// Shard channels for events; enough to land on every master of a typical cluster.
pub const EVENT_BUCKETS: u16 = 16;

pub struct RedisClusterTransport {
    prefix: String,
    sharded: bool,
    conn: RwLock<Option<ClusterConnection>>,
    up: AtomicBool,
    /// Since when publishes fail; past `REBUILD_AFTER` the connection is rebuilt from scratch.
    failing_since: Mutex<Option<Instant>>,
    reconnect: Mutex<Option<mpsc::UnboundedSender<()>>>,
    last_reset: Mutex<Option<Instant>>,
    /// Why the last connect-and-subscribe attempt failed (TLS, AUTH, unreachable).
    connect_error: Mutex<Option<String>>,
}

/// The cluster client retries on its own, but after every node was down at once it may never
/// recover (and it retries without pause); a fresh connection fixes both.
const REBUILD_AFTER: Duration = Duration::from_secs(2);

/// Connects and subscribes (with backoff), then waits for a rebuild request.
async fn supervise(
    t: Arc<RedisClusterTransport>,
    client: redis::cluster::ClusterClient,
    topics: Vec<String>,
    timeout: Duration,
    mut rebuild: mpsc::UnboundedReceiver<()>,
) {
    let mut backoff = Backoff::new();
    loop {
        let attempt = tokio::time::timeout(timeout * 4, async {
            let mut conn = client.get_async_connection().await?;
            t.subscribe_all(&mut conn, &topics).await?;
            Ok::<_, redis::RedisError>(conn)
        })
        .await
        .unwrap_or_else(|_| {
            Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "connect and subscribe timed out",
            )))
        });
        match attempt {
            Ok(conn) => {
                tracing::info!(
                    sharded = t.sharded,
                    channels = topics.len(),
                    "redis-cluster adapter: subscribed"
                );
                *t.conn.write().await = Some(conn);
                *t.failing_since.lock().expect("lock") = None;
                *t.connect_error.lock().expect("lock") = None;
                t.up.store(true, Ordering::Release);
                backoff.reset();
                if rebuild.recv().await.is_none() {
                    return;
                }
                while rebuild.try_recv().is_ok() {}
                tracing::warn!("redis-cluster adapter: rebuilding the cluster connection");
                t.up.store(false, Ordering::Release);
                // Dropping the last handle stops the old connection's own retry loop.
                *t.conn.write().await = None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "redis-cluster adapter: cannot connect and subscribe; retrying");
                *t.connect_error.lock().expect("lock") = Some(e.to_string());
                backoff.wait().await;
            }
        }
    }
}

impl RedisClusterTransport {
    pub fn channel_name(prefix: &str, topic: &Topic) -> String {
        match topic {
            Topic::Events(b) => format!("{prefix}:e:{b}"),
            Topic::Control => format!("{prefix}:control"),
            Topic::Node(n) => format!("{prefix}:node:{n}"),
        }
    }

    fn name(&self, topic: &Topic) -> String {
        Self::channel_name(&self.prefix, topic)
    }

    pub fn start(
        config: &ServerConfig,
        inbox: &str,
        incoming: mpsc::Sender<Bytes>,
    ) -> Result<Arc<Self>, AdapterError> {
        let cluster = redis_conn::cluster(config)?;
        let timeout = redis_conn::timeout(config);
        let (push_tx, push_rx) = mpsc::unbounded_channel::<PushInfo>();
        // The shared builder (credentials, TLS, timeouts), plus RESP3 pushes for subscriptions.
        let client =
            redis_backend::cluster_builder("adapter", &cluster, &redis_conn::options(config))?
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(push_tx)
                .build()
                .map_err(|e| AdapterError::Setup(e.to_string()))?;
        let transport = Arc::new(RedisClusterTransport {
            prefix: config.adapter.prefix.clone(),
            sharded: config.adapter.sharded_pubsub,
            conn: RwLock::new(None),
            up: AtomicBool::new(false),
            failing_since: Mutex::new(None),
            reconnect: Mutex::new(None),
            last_reset: Mutex::new(None),
            connect_error: Mutex::new(None),
        });
        let mut topics: Vec<String> = (0..EVENT_BUCKETS)
            .map(|b| transport.name(&Topic::Events(b)))
            .collect();
        topics.push(transport.name(&Topic::Control));
        topics.push(transport.name(&Topic::Node(inbox.to_string())));
        let (reconnect_tx, reconnect_rx) = mpsc::unbounded_channel();
        *transport.reconnect.lock().expect("lock") = Some(reconnect_tx);
        tokio::spawn(supervise(
            transport.clone(),
            client,
            topics,
            timeout,
            reconnect_rx,
        ));
        tokio::spawn(pushes(transport.clone(), push_rx, incoming));
        Ok(transport)
    }

    async fn subscribe_all(
        &self,
        conn: &mut ClusterConnection,
        topics: &[String],
    ) -> redis::RedisResult<()> {
        for t in topics {
            self.subscribe_one(conn, t).await?;
        }
        Ok(())
    }

    async fn subscribe_one(
        &self,
        conn: &mut ClusterConnection,
        topic: &str,
    ) -> redis::RedisResult<()> {
        if self.sharded {
            conn.ssubscribe(topic).await
        } else {
            conn.subscribe(topic).await
        }
    }
}

/// Forwards messages; re-subscribes a shard channel that Redis dropped (slot migration).
async fn pushes(
    t: Arc<RedisClusterTransport>,
    mut rx: mpsc::UnboundedReceiver<PushInfo>,
    incoming: mpsc::Sender<Bytes>,
) {
    while let Some(push) = rx.recv().await {
        match push.kind {
            PushKind::SMessage | PushKind::Message => {
                if let Some(Value::BulkString(payload)) = push.data.get(1)
                    && incoming.send(Bytes::from(payload.clone())).await.is_err()
                {
                    return;
                }
            }
            PushKind::SUnsubscribe => {
                let Some(Value::BulkString(name)) = push.data.first() else {
                    continue;
                };
                let name = String::from_utf8_lossy(name).into_owned();
                if !name.starts_with(&format!("{}:", t.prefix)) {
                    continue;
                }
                tracing::info!(channel = %name, "redis-cluster adapter: shard channel dropped (slot moved); subscribing again");
                let t = t.clone();
                tokio::spawn(async move {
                    let mut backoff = Backoff::new();
                    for _ in 0..20 {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        let conn = t.conn.read().await.clone();
                        if let Some(mut conn) = conn {
                            match t.subscribe_one(&mut conn, &name).await {
                                Ok(()) => return,
                                Err(e) => {
                                    tracing::warn!(channel = %name, error = %e, "re-subscribe failed; retrying")
                                }
                            }
                        }
                        backoff.wait().await;
                    }
                });
            }
            PushKind::Disconnection => {
                tracing::warn!(
                    "redis-cluster adapter: a node connection dropped; the client reconnects and re-subscribes"
                );
            }
            _ => {}
        }
    }
}

struct Attempt<'a> {
    transport: &'a RedisClusterTransport,
    ok: bool,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let mut since = self.transport.failing_since.lock().expect("lock");
        if self.ok {
            *since = None;
            return;
        }
        let failing = since.get_or_insert_with(Instant::now).elapsed();
        tracing::debug!(
            failing_ms = failing.as_millis() as u64,
            "redis-cluster adapter: publish failed"
        );
        if failing > REBUILD_AFTER {
            *since = None;
            if let Some(tx) = &*self.transport.reconnect.lock().expect("lock") {
                let _ = tx.send(());
            }
        }
    }
}

#[async_trait]
impl Transport for RedisClusterTransport {
    fn driver(&self) -> &'static str {
        "redis-cluster"
    }

    fn buckets(&self) -> u16 {
        EVENT_BUCKETS
    }

    async fn publish(&self, topic: &Topic, payload: Bytes) -> Result<(), TransportError> {
        let Some(mut conn) = self.conn.read().await.clone() else {
            let why = self.connect_error.lock().expect("lock").clone();
            return Err(TransportError::NotConnected(
                why.unwrap_or_else(|| "connecting".into()),
            ));
        };
        let cmd = if self.sharded { "SPUBLISH" } else { "PUBLISH" };
        // Counts as failed unless it completes: the caller may drop it on its own timeout.
        let mut attempt = Attempt {
            transport: self,
            ok: false,
        };
        let result = redis::cmd(cmd)
            .arg(self.name(topic))
            .arg(payload.as_ref())
            .query_async::<i64>(&mut conn)
            .await;
        drop(conn);
        match result {
            Ok(_) => {
                attempt.ok = true;
                Ok(())
            }
            Err(e) => Err(TransportError::Backend(e.to_string())),
        }
    }

    fn connected(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    fn last_error(&self) -> Option<String> {
        if self.up.load(Ordering::Acquire) {
            return None;
        }
        self.connect_error.lock().expect("lock").clone()
    }

    fn reset(&self) {
        let mut last = self.last_reset.lock().expect("lock");
        if last.is_some_and(|t| t.elapsed() < REBUILD_AFTER * 2) || !self.up.load(Ordering::Acquire)
        {
            return;
        }
        *last = Some(Instant::now());
        tracing::warn!("redis-cluster adapter: our messages do not come back; re-subscribing");
        if let Some(tx) = &*self.reconnect.lock().expect("lock") {
            let _ = tx.send(());
        }
    }
}
