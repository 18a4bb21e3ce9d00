//! `adapter.driver: redis`: classic pub/sub on one Redis server.
//!
//! Names: `{prefix}:events`, `{prefix}:control` and `{prefix}:node:{node}-{boot}` (the inbox).
//! Publishes go through a `ConnectionManager` (reconnects by itself, commands time out); a
//! dedicated subscriber connection is re-established with backoff after any failure.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sockudo_config::ServerConfig;
use tokio::sync::{RwLock, mpsc};

use crate::adapter::AdapterError;
use crate::adapter::horizontal::transport::{Backoff, Topic, Transport, TransportError};
use crate::adapter::redis_conn;

pub struct RedisTransport {
    prefix: String,
    publisher: RwLock<Option<ConnectionManager>>,
    subscribed: AtomicBool,
}

impl RedisTransport {
    fn name(&self, topic: &Topic) -> String {
        match topic {
            Topic::Events(_) => format!("{}:events", self.prefix),
            Topic::Control => format!("{}:control", self.prefix),
            Topic::Node(n) => format!("{}:node:{n}", self.prefix),
        }
    }

    /// Starts connecting in the background; a Redis that is down at startup is retried.
    pub fn start(
        config: &ServerConfig,
        inbox: &str,
        incoming: mpsc::Sender<Bytes>,
    ) -> Result<Arc<Self>, AdapterError> {
        let url = redis_conn::standalone_url(config)?;
        let client = redis::Client::open(url).map_err(|e| AdapterError::Setup(e.to_string()))?;
        let transport = Arc::new(RedisTransport {
            prefix: config.adapter.prefix.clone(),
            publisher: RwLock::new(None),
            subscribed: AtomicBool::new(false),
        });
        let timeout = redis_conn::timeout(config);
        let t = transport.clone();
        let c = client.clone();
        tokio::spawn(async move {
            let cfg = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(1)
                .set_max_delay(std::time::Duration::from_secs(2));
            let mut backoff = Backoff::new();
            loop {
                match ConnectionManager::new_with_config(c.clone(), cfg.clone()).await {
                    Ok(m) => {
                        *t.publisher.write().await = Some(m);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "redis adapter: cannot connect; retrying");
                        backoff.wait().await;
                    }
                }
            }
        });
        let topics = vec![
            transport.name(&Topic::Events(0)),
            transport.name(&Topic::Control),
            transport.name(&Topic::Node(inbox.to_string())),
        ];
        tokio::spawn(subscriber(
            transport.clone(),
            client,
            topics,
            incoming,
            timeout,
        ));
        Ok(transport)
    }
}

async fn subscriber(
    t: Arc<RedisTransport>,
    client: redis::Client,
    topics: Vec<String>,
    incoming: mpsc::Sender<Bytes>,
    timeout: std::time::Duration,
) {
    let mut backoff = Backoff::new();
    loop {
        let connected = tokio::time::timeout(timeout, async {
            let mut ps = client.get_async_pubsub().await?;
            for topic in &topics {
                ps.subscribe(topic).await?;
            }
            Ok::<_, redis::RedisError>(ps)
        })
        .await;
        match connected {
            Ok(Ok(ps)) => {
                backoff.reset();
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
                tracing::warn!("redis adapter: subscriber connection lost; reconnecting");
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "redis adapter: cannot subscribe; retrying"),
            Err(_) => tracing::warn!("redis adapter: subscribe timed out; retrying"),
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
        let Some(mut conn) = self.publisher.read().await.clone() else {
            return Err(TransportError::NotConnected);
        };
        redis::cmd("PUBLISH")
            .arg(self.name(topic))
            .arg(payload.as_ref())
            .query_async::<i64>(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| TransportError::Backend(e.to_string()))
    }

    fn connected(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
    }
}
