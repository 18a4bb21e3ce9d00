//! `adapter.driver: nats`: core NATS subjects.
//!
//! Subjects: `{nats.prefix}.{adapter.prefix}.events`, `...control` and `...node.{node}` (the
//! inbox replies go to). Prefixes only hold `[A-Za-z0-9_-]` (validated), so every subject is
//! valid NATS. The client reconnects by itself (with a capped backoff) and re-subscribes;
//! a publish is refused while disconnected (the client would otherwise buffer it silently)
//! and is flushed to the server before it counts as accepted.

use std::sync::{Arc, Mutex};
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
    /// The client library's last connection error (bad credentials, TLS), until connected.
    last_error: Arc<Mutex<Option<String>>>,
    /// The cause of the first failed attempt, in full: the client's retry events only carry an
    /// error kind ("IO error"), not which certificate or credential was refused.
    first_error: Arc<Mutex<Option<String>>>,
}

impl NatsTransport {
    fn subject(&self, topic: &Topic) -> String {
        match topic {
            Topic::Events(_) => format!("{}.events", self.prefix),
            Topic::Control => format!("{}.control", self.prefix),
            Topic::Node(n) => format!("{}.node.{n}", self.prefix),
        }
    }

    /// The shared options (credentials, TLS) plus this adapter's reconnection policy; connection
    /// events are logged and errors kept for readiness.
    async fn options(
        config: &ServerConfig,
        node: &str,
        last_error: Arc<Mutex<Option<String>>>,
        first_error: Arc<Mutex<Option<String>>>,
    ) -> Result<async_nats::ConnectOptions, AdapterError> {
        let servers = config.nats.servers.to_vec().join(",");
        let refused = crate::nats_backend::credentials_hint(&config.nats);
        let opts = crate::nats_backend::connect_options(&config.nats, node)
            .await
            .map_err(|e| AdapterError::Setup(e.to_string()))?
            .retry_on_initial_connect()
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((100u64 << attempts.min(6)).min(5_000))
            })
            .event_callback(move |event| {
                let last_error = last_error.clone();
                let first_error = first_error.clone();
                let servers = servers.clone();
                let refused = refused.clone();
                async move {
                    let why = match &event {
                        async_nats::Event::Connected => None,
                        async_nats::Event::ServerError(
                            e @ async_nats::ServerError::AuthorizationViolation,
                        ) => Some(format!("server error: {e}{refused}")),
                        async_nats::Event::ServerError(e) => Some(format!("server error: {e}")),
                        async_nats::Event::ClientError(e) => {
                            Some(format!("cannot connect to {servers}: {e}"))
                        }
                        async_nats::Event::Disconnected => Some("disconnected".into()),
                        _ => {
                            tracing::info!(%event, "nats adapter: connection event");
                            return;
                        }
                    };
                    match &why {
                        Some(e) => tracing::warn!(error = %e, "nats adapter: connection problem"),
                        None => {
                            tracing::info!("nats adapter: connected");
                            *first_error.lock().expect("lock") = None;
                        }
                    }
                    *last_error.lock().expect("lock") = why;
                }
            });
        Ok(opts)
    }

    pub async fn start(
        config: &ServerConfig,
        node: &str,
        inbox: &str,
        incoming: mpsc::Sender<Bytes>,
    ) -> Result<Arc<Self>, AdapterError> {
        let last_error = Arc::new(Mutex::new(Some("connecting".to_string())));
        let first_error = Arc::new(Mutex::new(None));
        let opts = Self::options(config, node, last_error.clone(), first_error.clone()).await?;
        let servers = config.nats.servers.to_vec();
        let transport = Arc::new(NatsTransport {
            prefix: format!("{}.{}", config.nats.prefix, config.adapter.prefix),
            client: OnceCell::new(),
            timeout: Duration::from_millis(config.adapter.request_timeout_ms.max(100)),
            last_error,
            first_error,
        });
        let probe = crate::nats_backend::connect_options(&config.nats, node)
            .await
            .map_err(|e| AdapterError::Setup(e.to_string()))?;
        let subjects = vec![
            transport.subject(&Topic::Events(0)),
            transport.subject(&Topic::Control),
            transport.subject(&Topic::Node(inbox.to_string())),
        ];
        let t = transport.clone();
        let nats = config.nats.clone();
        tokio::spawn(async move {
            // One attempt without retries, only to learn the cause if it fails.
            if let Err(e) = probe.connect(servers.clone()).await {
                let why = crate::nats_backend::describe(&e, &nats);
                tracing::warn!(error = %why, servers = ?servers, "nats adapter: cannot connect; retrying");
                *t.first_error.lock().expect("lock") = Some(why);
            }
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
        let not_connected = || {
            let why = self.last_error.lock().expect("lock").clone();
            TransportError::NotConnected(why.unwrap_or_else(|| "connecting".into()))
        };
        let Some(client) = self.client.get() else {
            return Err(not_connected());
        };
        if client.connection_state() != async_nats::connection::State::Connected {
            return Err(not_connected());
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

    fn last_error(&self) -> Option<String> {
        if self.connected() {
            return None;
        }
        let last = self.last_error.lock().expect("lock").clone();
        match (last, self.first_error.lock().expect("lock").clone()) {
            (Some(last), Some(first)) => Some(format!("{last} (first attempt: {first})")),
            (last, first) => last.or(first),
        }
    }
}
