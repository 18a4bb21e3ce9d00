//! `adapter.driver: nats`: core NATS subjects.
//!
//! Subjects: `{nats.prefix}.{adapter.prefix}.events`, `...control` and `...node.{node}` (the
//! inbox replies go to). Prefixes only hold `[A-Za-z0-9_-]` (validated), so every subject is
//! valid NATS. The client reconnects by itself (with a capped backoff) and re-subscribes;
//! a publish is refused while disconnected (the client would otherwise buffer it silently)
//! and is flushed to the server before it counts as accepted.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use sockudo_config::ServerConfig;
use tokio::sync::{OnceCell, mpsc};

use crate::adapter::AdapterError;
use crate::adapter::horizontal::transport::{Backoff, Topic, Transport, TransportError};

pub struct NatsTransport {
    prefix: String,
    client: OnceCell<async_nats::Client>,
    timeout: Duration,
}

fn secret(value: &Option<String>, file: &Option<String>) -> Result<Option<String>, AdapterError> {
    match file {
        Some(path) => std::fs::read_to_string(path)
            .map(|s| Some(s.trim_end_matches(['\r', '\n']).to_string()))
            .map_err(|e| AdapterError::Setup(format!("cannot read {path}: {e}"))),
        None => Ok(value.clone()),
    }
}

impl NatsTransport {
    fn subject(&self, topic: &Topic) -> String {
        match topic {
            Topic::Events(_) => format!("{}.events", self.prefix),
            Topic::Control => format!("{}.control", self.prefix),
            Topic::Node(n) => format!("{}.node.{n}", self.prefix),
        }
    }

    async fn options(
        config: &ServerConfig,
        node: &str,
    ) -> Result<async_nats::ConnectOptions, AdapterError> {
        let n = &config.nats;
        let mut opts = async_nats::ConnectOptions::new()
            .name(format!("sockudo-{node}"))
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_millis(n.connection_timeout_ms.max(100)))
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((100u64 << attempts.min(6)).min(5_000))
            })
            .event_callback(|event| async move {
                tracing::info!(%event, "nats adapter: connection event");
            });
        if let Some(path) = &n.credentials_file {
            opts = opts
                .credentials_file(path)
                .await
                .map_err(|e| AdapterError::Setup(format!("nats.credentials_file {path}: {e}")))?;
        }
        if let Some(user) = &n.username {
            let password = secret(&n.password, &n.password_file)?.unwrap_or_default();
            opts = opts.user_and_password(user.clone(), password);
        }
        if let Some(token) = secret(&n.token, &n.token_file)? {
            opts = opts.token(token);
        }
        if let Some(tls) = n.tls.as_ref().filter(|t| t.enabled) {
            opts = opts.require_tls(true);
            if let Some(ca) = &tls.ca_file {
                opts = opts.add_root_certificates(PathBuf::from(ca));
            }
            if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
                opts = opts.add_client_certificate(PathBuf::from(cert), PathBuf::from(key));
            }
        }
        Ok(opts)
    }

    pub async fn start(
        config: &ServerConfig,
        node: &str,
        inbox: &str,
        incoming: mpsc::Sender<Bytes>,
    ) -> Result<Arc<Self>, AdapterError> {
        let opts = Self::options(config, node).await?;
        let servers = config.nats.servers.to_vec();
        let transport = Arc::new(NatsTransport {
            prefix: format!("{}.{}", config.nats.prefix, config.adapter.prefix),
            client: OnceCell::new(),
            timeout: Duration::from_millis(config.adapter.request_timeout_ms.max(100)),
        });
        let subjects = vec![
            transport.subject(&Topic::Events(0)),
            transport.subject(&Topic::Control),
            transport.subject(&Topic::Node(inbox.to_string())),
        ];
        let t = transport.clone();
        tokio::spawn(async move {
            // With retry_on_initial_connect, connect returns at once and keeps trying.
            let client = match opts.connect(servers.clone()).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, servers = ?servers, "nats adapter: cannot connect");
                    return;
                }
            };
            let _ = t.client.set(client.clone());
            let mut backoff = Backoff::new();
            for subject in subjects {
                let sub = loop {
                    match client.subscribe(subject.clone()).await {
                        Ok(s) => break s,
                        Err(e) => {
                            tracing::warn!(%subject, error = %e, "nats adapter: cannot subscribe; retrying");
                            backoff.wait().await;
                        }
                    }
                };
                let incoming = incoming.clone();
                tokio::spawn(async move {
                    let mut sub = sub;
                    while let Some(msg) = sub.next().await {
                        if incoming.send(msg.payload).await.is_err() {
                            return;
                        }
                    }
                });
            }
            tracing::info!("nats adapter: subscribed");
        });
        Ok(transport)
    }
}

#[async_trait]
impl Transport for NatsTransport {
    fn driver(&self) -> &'static str {
        "nats"
    }

    fn buckets(&self) -> u16 {
        1
    }

    async fn publish(&self, topic: &Topic, payload: Bytes) -> Result<(), TransportError> {
        let Some(client) = self.client.get() else {
            return Err(TransportError::NotConnected);
        };
        if client.connection_state() != async_nats::connection::State::Connected {
            return Err(TransportError::NotConnected);
        }
        client
            .publish(self.subject(topic), payload)
            .await
            .map_err(|e| TransportError::Backend(e.to_string()))?;
        tokio::time::timeout(self.timeout, client.flush())
            .await
            .map_err(|_| TransportError::Timeout(self.timeout.as_millis() as u64))?
            .map_err(|e| TransportError::Backend(e.to_string()))
    }

    fn connected(&self) -> bool {
        self.client
            .get()
            .is_some_and(|c| c.connection_state() == async_nats::connection::State::Connected)
    }
}
