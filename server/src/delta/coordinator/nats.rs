//! NATS JetStream Key-Value counting: read the entry, write `n + 1` only if the entry's revision
//! is still the one read (compare-and-set), retry on conflict. No increment is lost and no number
//! is given twice, however many nodes publish at once.
//!
//! Bucket `{prefix}_delta_seq` (prefix is `[A-Za-z0-9_-]` by config validation) in memory, with
//! `max_age` so idle streams expire; key `<app>.<channel>.<conflation>` with every byte outside
//! `[A-Za-z0-9_-]` written `=XX`, which only uses characters NATS allows in keys.
//!
//! async-nats is pinned to 0.40.0: 0.41 and newer fail JetStream KV calls against the
//! nats-server 2.9 packaged by Debian bookworm.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::{self, kv};
use async_trait::async_trait;
use sockudo_config::NatsConfig;
use tokio::sync::Mutex;

use crate::adapter::BackendHealth;
use crate::delta::coordinator::{CoordinationError, Coordinator, StreamKey, escaped};

/// CAS attempts before giving up (each conflict means another publisher got a number).
const MAX_ATTEMPTS: u32 = 64;
/// How often the supervisor looks at a working connection (it only reads its state).
const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Longest wait between two failed connection attempts of the supervisor.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One connection of the coordinator.
struct Conn {
    client: async_nats::Client,
    /// Set when the client reports a disconnection, and left set after the client reconnects
    /// by itself: a restarted server has lost the in-memory bucket, which only a new
    /// connection re-creates.
    lost: Arc<AtomicBool>,
}

impl Conn {
    fn is_up(&self) -> bool {
        !self.lost.load(Ordering::Acquire) && self.client.connection_state() == State::Connected
    }
}

/// What readiness reads: the connection, if any, and the last error.
#[derive(Default)]
struct Status {
    conn: Option<Conn>,
    last_error: Option<String>,
}

pub struct NatsCoordinator {
    /// The `nats` section: servers, credentials and TLS, shared with the adapter.
    nats: NatsConfig,
    bucket: String,
    ttl: Duration,
    /// Connected by the supervisor ([`Self::start`]) or on first use; dropped on a backend error
    /// so the next attempt reconnects and re-creates the bucket (a restarted server has lost its
    /// in-memory bucket).
    store: Mutex<Option<kv::Store>>,
    status: std::sync::Mutex<Status>,
}

fn unavailable(e: impl std::fmt::Display) -> CoordinationError {
    CoordinationError::Unavailable(e.to_string())
}

impl NatsCoordinator {
    /// Connects lazily (first publish) to `nats.servers`, without a background task (see
    /// [`Self::start`]); the bucket is created if missing.
    /// The bucket is named after `prefix` (`nats.prefix` in a server).
    pub fn new(nats: NatsConfig, prefix: &str, ttl: Duration) -> Self {
        NatsCoordinator {
            nats,
            bucket: bucket_name(prefix),
            ttl,
            store: Mutex::new(None),
            status: std::sync::Mutex::default(),
        }
    }

    /// As [`Self::new`], plus a background task that connects at once and reconnects after a
    /// failure (with backoff), so [`Coordinator::health`] is current from start-up. The task
    /// ends when the coordinator is dropped.
    pub fn start(nats: NatsConfig, prefix: &str, ttl: Duration) -> Arc<Self> {
        let coordinator = Arc::new(Self::new(nats, prefix, ttl));
        tokio::spawn(supervise(Arc::downgrade(&coordinator)));
        coordinator
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Drops the store if its connection is not up (see [`Conn::lost`]).
    fn drop_if_lost(&self, slot: &mut Option<kv::Store>) {
        let mut status = self.status();
        if slot.is_some() && !status.conn.as_ref().is_some_and(Conn::is_up) {
            *slot = None;
            status.conn = None;
            status
                .last_error
                .get_or_insert_with(|| "disconnected".into());
        }
    }

    async fn store(&self) -> Result<kv::Store, CoordinationError> {
        let mut slot = self.store.lock().await;
        self.drop_if_lost(&mut slot);
        if let Some(s) = slot.as_ref() {
            return Ok(s.clone());
        }
        match self.connect().await {
            Ok((conn, store)) => {
                *slot = Some(store.clone());
                *self.status() = Status {
                    conn: Some(conn),
                    last_error: None,
                };
                Ok(store)
            }
            Err(e) => {
                self.status().last_error = Some(e.to_string());
                Err(e)
            }
        }
    }

    async fn connect(&self) -> Result<(Conn, kv::Store), CoordinationError> {
        let addrs = self
            .nats
            .servers
            .to_vec()
            .iter()
            .map(|s| s.parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(unavailable)?;
        // No retry_on_initial_connect: a failed first connect must fail fast, with its cause
        // for readiness (the supervisor or the next publish retries), rather than leave a
        // client looping.
        let lost = Arc::new(AtomicBool::new(false));
        let flag = lost.clone();
        let opts = crate::nats_backend::connect_options(&self.nats, "delta")
            .await
            .map_err(unavailable)?
            .event_callback(move |event| {
                let flag = flag.clone();
                async move {
                    if matches!(event, async_nats::Event::Disconnected) {
                        tracing::warn!("nats delta coordinator: disconnected");
                        flag.store(true, Ordering::Release);
                    }
                }
            });
        let client = opts.connect(addrs).await.map_err(|e| {
            CoordinationError::Unavailable(crate::nats_backend::describe(&e, &self.nats))
        })?;
        let conn = Conn {
            client: client.clone(),
            lost,
        };
        let js = jetstream::new(client);
        if let Ok(store) = js.get_key_value(&self.bucket).await {
            return Ok((conn, store));
        }
        let created = js
            .create_key_value(kv::Config {
                bucket: self.bucket.clone(),
                description: "sockudo delta compression sequence numbers".into(),
                history: 1,
                max_age: self.ttl,
                storage: jetstream::stream::StorageType::Memory,
                ..Default::default()
            })
            .await;
        match created {
            Ok(store) => Ok((conn, store)),
            // Nodes of a new fleet start together: another one may have created the bucket
            // since the look-up (nats-server 2.9 then answers "subjects overlap with an
            // existing stream"). Use theirs; if there is none, the creation error stands.
            Err(e) => match js.get_key_value(&self.bucket).await {
                Ok(store) => Ok((conn, store)),
                Err(_) => Err(unavailable(e)),
            },
        }
    }
}

/// Keeps the coordinator connected while it exists: connects at start-up, and again after a
/// failed attempt or a lost connection. A connection's state is read, never probed.
async fn supervise(coordinator: Weak<NatsCoordinator>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(c) = coordinator.upgrade() else {
            return;
        };
        let connected = {
            let mut slot = c.store.lock().await;
            c.drop_if_lost(&mut slot);
            slot.is_some()
        };
        let wait = if connected {
            backoff = Duration::from_millis(100);
            CHECK_INTERVAL
        } else {
            match c.store().await {
                Ok(_) => {
                    tracing::info!(bucket = %c.bucket, "nats delta coordinator: connected");
                    backoff = Duration::from_millis(100);
                    CHECK_INTERVAL
                }
                Err(e) => {
                    tracing::warn!(error = %e, "nats delta coordinator: cannot connect; retrying");
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    backoff
                }
            }
        };
        drop(c);
        tokio::time::sleep(wait).await;
    }
}

/// `{prefix}_delta_seq`, keeping only characters valid in a bucket name.
pub fn bucket_name(prefix: &str) -> String {
    let clean: String = prefix
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    if clean.is_empty() {
        "delta_seq".into()
    } else {
        format!("{clean}_delta_seq")
    }
}

/// The KV key of a stream: three `.`-separated tokens, each never empty.
pub fn key(k: StreamKey<'_>) -> String {
    let keep = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    let part = |s: &str| {
        if s.is_empty() {
            "=".to_string()
        } else {
            escaped(s, keep)
        }
    };
    format!(
        "{}.{}.{}",
        part(k.app_id),
        part(k.channel),
        k.conflation_key
            .map_or_else(|| "_".to_string(), |c| format!("k{}", part(c)))
    )
}

#[async_trait]
impl Coordinator for NatsCoordinator {
    fn driver(&self) -> &'static str {
        "nats"
    }

    async fn next_seq(&self, k: StreamKey<'_>) -> Result<u64, CoordinationError> {
        let store = self.store().await?;
        let result = self.increment(&store, key(k)).await;
        if let Err(e @ CoordinationError::Unavailable(_)) = &result {
            self.status().last_error = Some(e.to_string());
            Coordinator::reset(self).await;
        }
        result
    }

    async fn reset(&self) {
        // Held only while connecting: then there is no stale store to drop, and waiting for
        // the connection attempt would hold up the publish that gave up on it.
        if let Ok(mut slot) = self.store.try_lock() {
            *slot = None;
            self.status().conn = None;
        }
    }

    /// Ok while the client is connected and the bucket was found or created; otherwise the
    /// last error (a refused certificate or credentials, JetStream not enabled, ...).
    fn health(&self) -> BackendHealth {
        let status = self.status();
        let why = status.last_error.as_deref();
        match &status.conn {
            Some(c) if c.is_up() => BackendHealth::Ok,
            Some(_) => BackendHealth::Degraded(match why {
                Some(e) => format!("disconnected ({e})"),
                None => "disconnected".into(),
            }),
            None => BackendHealth::Degraded(why.unwrap_or("connecting").into()),
        }
    }
}

impl NatsCoordinator {
    async fn increment(&self, store: &kv::Store, key: String) -> Result<u64, CoordinationError> {
        for attempt in 0..MAX_ATTEMPTS {
            let (current, revision) = match store.entry(key.as_str()).await.map_err(unavailable)? {
                Some(e) if e.operation == kv::Operation::Put => {
                    let text = std::str::from_utf8(&e.value)
                        .map_err(|e| CoordinationError::Protocol(e.to_string()))?;
                    let n: u64 = text.parse().map_err(|_| {
                        CoordinationError::Protocol(format!("{key} holds {text:?}"))
                    })?;
                    (n, e.revision)
                }
                // Deleted or purged: the stream starts again, expecting that marker's revision.
                Some(e) => (0, e.revision),
                None => (0, 0),
            };
            let next = current + 1;
            match store
                .update(key.as_str(), next.to_string().into(), revision)
                .await
            {
                Ok(_) => return Ok(next),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    // Someone else took `next`; read again after a short random pause, so
                    // nodes that collided do not collide again in lockstep.
                    let pause = rand::random_range(0..=attempt.min(20) * 500);
                    tokio::time::sleep(Duration::from_micros(pause.into())).await;
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(CoordinationError::Contention {
            key,
            attempts: MAX_ATTEMPTS,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_key(k: &str) -> bool {
        !k.is_empty()
            && !k.starts_with('.')
            && !k.ends_with('.')
            && !k.contains("..")
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-/_=.".contains(&b))
    }

    #[test]
    fn names_are_valid_nats() {
        assert_eq!(bucket_name("sockudo"), "sockudo_delta_seq");
        assert_eq!(bucket_name("sockudo_adapter:"), "sockudo_adapter_delta_seq");
        for (app, ch, ck) in [
            ("1", "private-a:b@c,d;e.f#g", Some("BTC/USD.x y")),
            ("", "", Some("")),
            ("app", "presence-x", None),
        ] {
            let k = key(StreamKey {
                app_id: app,
                channel: ch,
                conflation_key: ck,
            });
            assert!(valid_key(&k), "{k}");
        }
        assert_eq!(
            key(StreamKey {
                app_id: "1",
                channel: "a.b:c",
                conflation_key: Some("x")
            }),
            "1.a=2Eb=3Ac.kx"
        );
    }
}
