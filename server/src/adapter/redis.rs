//! `adapter.driver: redis`: classic pub/sub on one Redis server.
//!
//! Names: `{prefix}:events`, `{prefix}:control` and `{prefix}:node:{node}-{boot}` (the inbox).
//! Publishes go through a [`RedisBackend`] (the same connection path as the cache and rate
//! limiter: credentials, TLS, timeouts, reconnection); a dedicated subscriber connection, made
//! from the same client, is re-established with backoff after any failure.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use sockudo_config::{RedisTarget, ServerConfig};
use tokio::sync::mpsc;

use crate::adapter::horizontal::transport::{Backoff, Topic, Transport, TransportError};
use crate::adapter::{AdapterError, BackendHealth, redis_conn};
use crate::redis_backend::{RedisBackend, RedisBackendError};

pub struct RedisTransport {
    prefix: String,
    backend: RedisBackend,
    subscribed: AtomicBool,
    /// Why the subscriber is not connected (a TLS or AUTH failure reads better than "down").
    subscribe_error: Mutex<Option<String>>,
}

impl RedisTransport {
    fn name(&self, topic: &Topic) -> String {
        match topic {
            Topic::Events(_) => format!("{}:events", self.prefix),
            Topic::Control => format!("{}:control", self.prefix),
            Topic::Node(n) => format!("{}:node:{n}", self.prefix),
        }
    }

    /// Connects (one attempt; a Redis that is down at startup is retried in the background).
    pub async fn start(
        config: &ServerConfig,
        inbox: &str,
        incoming: mpsc::Sender<Bytes>,
    ) -> Result<Arc<Self>, AdapterError> {
        let target = RedisTarget::Standalone(redis_conn::standalone(config)?);
        let backend =
            RedisBackend::connect("adapter", &target, redis_conn::options(config), None).await?;
        let transport = Arc::new(RedisTransport {
            prefix: config.adapter.prefix.clone(),
            backend,
            subscribed: AtomicBool::new(false),
            subscribe_error: Mutex::new(None),
        });
        let topics = vec![
            transport.name(&Topic::Events(0)),
            transport.name(&Topic::Control),
            transport.name(&Topic::Node(inbox.to_string())),
        ];
        tokio::spawn(subscriber(transport.clone(), topics, incoming));
        Ok(transport)
    }
}

async fn subscriber(t: Arc<RedisTransport>, topics: Vec<String>, incoming: mpsc::Sender<Bytes>) {
    let mut backoff = Backoff::new();
    loop {
        let connected = async {
            let mut ps = t.backend.pubsub().await?;
            for topic in &topics {
                ps.subscribe(topic)
                    .await
                    .map_err(|source| RedisBackendError::Command {
                        name: "adapter",
                        source,
                    })?;
            }
            Ok::<_, RedisBackendError>(ps)
        }
        .await;
        match connected {
            Ok(ps) => {
                backoff.reset();
                *t.subscribe_error.lock().expect("lock") = None;
                t.subscribed.store(true, Ordering::Release);
                tracing::info!(channels = ?topics, "redis adapter: subscribed");
                let mut stream = ps.into_on_message();
                while let Some(msg) = stream.next().await {
                    let payload = Bytes::copy_from_slice(msg.get_payload_bytes());
                    if incoming.send(payload).await.is_err() {
                        return;
                    }
                }
                t.subscribed.store(false, Ordering::Release);
                *t.subscribe_error.lock().expect("lock") =
                    Some("subscriber connection lost".into());
                tracing::warn!("redis adapter: subscriber connection lost; reconnecting");
            }
            Err(e) => {
                tracing::warn!(error = %e, "redis adapter: cannot subscribe; retrying");
                *t.subscribe_error.lock().expect("lock") = Some(e.to_string());
            }
        }
        backoff.wait().await;
    }
}

#[async_trait]
impl Transport for RedisTransport {
    fn driver(&self) -> &'static str {
        "redis"
    }

    fn buckets(&self) -> u16 {
        1
    }

    async fn publish(&self, topic: &Topic, payload: Bytes) -> Result<(), TransportError> {
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(self.name(topic)).arg(payload.as_ref());
        match self.backend.query::<i64>(&cmd).await {
            Ok(_) => Ok(()),
            Err(RedisBackendError::NotConnected { detail, .. }) => {
                Err(TransportError::NotConnected(detail))
            }
            Err(RedisBackendError::Timeout { ms, .. }) => Err(TransportError::Timeout(ms as u64)),
            Err(e) => Err(TransportError::Backend(e.to_string())),
        }
    }

    fn connected(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
    }

    fn last_error(&self) -> Option<String> {
        if let BackendHealth::Degraded(e) = self.backend.health() {
            return Some(e);
        }
        self.subscribe_error.lock().expect("lock").clone()
    }
}
