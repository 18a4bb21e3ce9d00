//! The horizontal core shared by the redis, redis-cluster and nats drivers.
//!
//! - Publishes go to the backend first; local delivery happens only once the backend accepted
//!   the message, so a failed publish (HTTP 503) delivered nothing anywhere. Every node
//!   publishes from its first second: there is no "wait until a peer is seen" window.
//! - Each node replicates its own state (channel counts, presence members, connections) as
//!   ordered, numbered deltas plus full snapshots on join, on request and after an outage.
//!   Peers apply them to a per-node view; presence members are mirrored into the hub, which
//!   fires `member_added` / `member_removed` on transitions of the union of all nodes.
//! - Heartbeats every `heartbeat_interval_ms` carry the last delta number (a gap triggers a
//!   resync); a node silent for `node_timeout_ms` is removed, a graceful stop says `Bye`.
//! - Health is end to end: a failed publish, or our own heartbeat not coming back through the
//!   backend, marks the adapter degraded; when it comes back the node re-announces its state.
//!   While degraded, peers are not expired (we cannot tell who died), answers say incomplete.

mod api;
mod counts;
pub mod envelope;
mod leader;
mod peers;
mod tasks;
pub mod transport;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sockudo_config::AdapterConfig;
use tokio::sync::{mpsc, oneshot};

use crate::adapter::AdapterError;
use crate::connection::handle::Frame;
use crate::hub::{HubEvent, LocalHub};
use crate::metrics::Metrics;
use crate::protocol::ErrorCode;
use crate::webhooks::Webhooks;
use envelope::{AppState, Change, ChannelState, Envelope, NodeRef, NodeState, Request};
use peers::{Peers, Seen};
use transport::{Topic, Transport, sanitize};

/// Capacity of the queue between a transport's subscriber and the core. When full, the
/// subscriber waits (backpressure onto the backend) rather than growing memory.
pub const INCOMING_CAPACITY: usize = 100_000;

/// Who this node is: the configured node id (pod name) plus a boot id that grows across
/// restarts.
pub fn node_ref(node_id: Option<&str>) -> NodeRef {
    let name = node_id
        .map(String::from)
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "sockudo".into());
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    NodeRef {
        name: Arc::from(name),
        boot: (millis << 16) | u64::from(rand::random::<u16>()),
    }
}

/// The inbox topic name of a node incarnation (valid in Redis and NATS names).
pub fn inbox_of(node: &NodeRef) -> String {
    format!("{}-{:x}", sanitize(&node.name), node.boot)
}

enum Cmd {
    Hello,
    SendState {
        to: Arc<str>,
    },
    Publish(Envelope),
    /// A reply, to the asker's inbox.
    Reply {
        to: NodeRef,
        env: Envelope,
    },
    /// Announce cluster-wide subscription counts of the channels changed since the last time.
    FlushCounts,
    /// Re-check a channel's webhook record once the vacate delay passed.
    Reconcile {
        app: String,
        channel: String,
    },
    Bye(oneshot::Sender<()>),
}

struct Pending {
    waiting: HashSet<Arc<str>>,
    count: usize,
    done: Option<oneshot::Sender<()>>,
}

/// A channel's subscription count over all nodes, and its presence users (presence only).
type ClusterChannel = (usize, Option<HashSet<Arc<str>>>);

struct Core {
    me: NodeRef,
    hub: Arc<LocalHub>,
    transport: Arc<dyn Transport>,
    config: AdapterConfig,
    peers: Mutex<Peers>,
    cmds: mpsc::UnboundedSender<Cmd>,
    pending: Mutex<HashMap<u64, Pending>>,
    next_id: AtomicU64,
    healthy: AtomicBool,
    /// Was up once: later recoveries count as reconnects. A watch, so that startup can wait
    /// for the first connection.
    ever_up: tokio::sync::watch::Sender<bool>,
    /// When the backend path first came up.
    up_since: Mutex<Option<Instant>>,
    last_error: Mutex<Option<String>>,
    echo_seen: Mutex<Instant>,
    metrics: Arc<Metrics>,
    webhooks: OnceLock<Webhooks>,
    record: Mutex<leader::Record>,
    /// Events held while the backend is down (`adapter.publish_buffer_size` > 0), oldest first.
    buffer: Mutex<std::collections::VecDeque<(Topic, Envelope)>>,
    /// Webhook events recorded before this node settled (see `settled`).
    deferred: Mutex<Vec<(String, String, crate::webhooks::ClusterEvent)>>,
    vacate_delay: Duration,
    /// Channels whose cluster-wide count may have changed since the last announcement.
    counts_dirty: Mutex<HashSet<(String, String)>>,
}

/// The configuration the core needs.
pub struct Settings {
    pub adapter: AdapterConfig,
    /// `webhooks.vacate_delay_ms`: removals wait this long before a webhook.
    pub vacate_delay: Duration,
}

/// An [`Adapter`] over any [`Transport`].
pub struct HorizontalAdapter {
    core: Arc<Core>,
}

impl HorizontalAdapter {
    /// Starts the core's tasks. `hub_events` is the receiving end of the hub's observer;
    /// `incoming` carries every message of this node's topics from the transport.
    pub fn start(
        me: NodeRef,
        hub: Arc<LocalHub>,
        hub_events: mpsc::UnboundedReceiver<HubEvent>,
        transport: Arc<dyn Transport>,
        incoming: mpsc::Receiver<Bytes>,
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let Settings {
            adapter: config,
            vacate_delay,
        } = settings;
        let (cmds, cmd_rx) = mpsc::unbounded_channel();
        let core = Arc::new(Core {
            me,
            hub,
            transport,
            config,
            peers: Mutex::default(),
            cmds,
            pending: Mutex::default(),
            next_id: AtomicU64::new(1),
            // Degraded until our own first heartbeat comes back through the backend.
            healthy: AtomicBool::new(false),
            ever_up: tokio::sync::watch::channel(false).0,
            up_since: Mutex::new(None),
            last_error: Mutex::new(Some("connecting".into())),
            echo_seen: Mutex::new(Instant::now()),
            metrics,
            webhooks: OnceLock::new(),
            record: Mutex::default(),
            deferred: Mutex::default(),
            buffer: Mutex::default(),
            vacate_delay,
            counts_dirty: Mutex::default(),
        });
        tokio::spawn(tasks::publisher(core.clone(), hub_events, cmd_rx));
        tokio::spawn(tasks::receiver(core.clone(), incoming));
        HorizontalAdapter { core }
    }

    pub fn node(&self) -> &NodeRef {
        &self.core.me
    }
}

impl Core {
    fn driver(&self) -> &'static str {
        self.transport.driver()
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.request_timeout_ms.max(1))
    }

    fn encode(env: &Envelope) -> Bytes {
        Bytes::from(serde_json::to_vec(env).expect("envelopes serialise"))
    }

    async fn publish(&self, topic: &Topic, env: &Envelope) -> Result<(), AdapterError> {
        let result = tokio::time::timeout(
            self.timeout(),
            self.transport.publish(topic, Self::encode(env)),
        )
        .await
        .unwrap_or(Err(transport::TransportError::Timeout(
            self.config.request_timeout_ms,
        )));
        match result {
            Ok(()) => {
                self.metrics
                    .adapter_messages
                    .with_label_values(&[self.driver(), "published"])
                    .inc();
                Ok(())
            }
            Err(e) => {
                self.mark_down(&e.to_string());
                Err(AdapterError::Unavailable(format!("{}: {e}", self.driver())))
            }
        }
    }

    /// Publishes a channel event. With `adapter.publish_buffer_size` > 0, an event the backend
    /// does not take is held (in order, behind any already held) and sent when it is back;
    /// a full buffer refuses (503) like no buffer does.
    async fn publish_event(&self, topic: Topic, env: Envelope) -> Result<(), AdapterError> {
        let cap = self.config.publish_buffer_size;
        if cap > 0 {
            let mut buffer = self.buffer.lock().expect("lock");
            if !buffer.is_empty() {
                if buffer.len() >= cap {
                    return Err(AdapterError::Unavailable(format!(
                        "{}: backend unreachable and the publish buffer ({cap}) is full",
                        self.driver()
                    )));
                }
                buffer.push_back((topic, env));
                return Ok(());
            }
        }
        match self.publish(&topic, &env).await {
            Ok(()) => Ok(()),
            Err(e) if cap > 0 => {
                let mut buffer = self.buffer.lock().expect("lock");
                if buffer.len() >= cap {
                    return Err(e);
                }
                tracing::debug!(held = buffer.len() + 1, "backend unreachable; publish held");
                buffer.push_back((topic, env));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Sends held events in order, stopping at the first failure. Waits until every peer
    /// answered our Hello after the outage: a peer still re-subscribing would miss them.
    async fn flush_buffer(&self) {
        if self.buffer.lock().expect("lock").is_empty()
            || !self.healthy.load(Ordering::Acquire)
            || !self
                .peers
                .lock()
                .expect("lock")
                .map
                .values()
                .all(|p| p.synced)
        {
            return;
        }
        loop {
            let next = self.buffer.lock().expect("lock").front().cloned();
            let Some((topic, env)) = next else {
                return;
            };
            if self.publish(&topic, &env).await.is_err() {
                return;
            }
            self.buffer.lock().expect("lock").pop_front();
        }
    }

    fn mark_down(&self, error: &str) {
        *self.last_error.lock().expect("lock") = Some(error.to_string());
        if self.healthy.swap(false, Ordering::AcqRel) {
            tracing::warn!(driver = self.driver(), %error, "adapter backend degraded; serving local clients, retrying");
            self.metrics
                .backend_up
                .with_label_values(&["adapter", self.driver()])
                .set(0);
        }
    }

    /// Our own heartbeat came back through the backend: the path works end to end.
    fn echo(&self) {
        *self.echo_seen.lock().expect("lock") = Instant::now();
        if !self.healthy.swap(true, Ordering::AcqRel) {
            self.up_since
                .lock()
                .expect("lock")
                .get_or_insert_with(Instant::now);
            let was_error = self.last_error.lock().expect("lock").take();
            tracing::info!(driver = self.driver(), previous = ?was_error, "adapter backend up; announcing state");
            if self.ever_up.send_replace(true) {
                self.metrics
                    .adapter_reconnects
                    .with_label_values(&[self.driver()])
                    .inc();
            }
            self.metrics
                .backend_up
                .with_label_values(&["adapter", self.driver()])
                .set(1);
            // Peers were not expired while we were cut off; give them a fresh deadline. Their
            // state is stale until they answer our Hello (which also proves they hear us again).
            let mut peers = self.peers.lock().expect("lock");
            for p in peers.map.values_mut() {
                p.last_seen = Instant::now();
                p.synced = false;
            }
            drop(peers);
            let _ = self.cmds.send(Cmd::Hello);
        }
    }

    /// Heartbeat tick: expire silent peers, notice a backend that stopped echoing.
    fn check(&self) {
        let interval = Duration::from_millis(self.config.heartbeat_interval_ms);
        let stale = (interval * 2 + self.timeout())
            .max(Duration::from_millis(self.config.node_timeout_ms / 2));
        if self.echo_seen.lock().expect("lock").elapsed() > stale {
            self.mark_down("no heartbeat echo from the backend");
            self.transport.reset();
        }
        if !self.healthy.load(Ordering::Acquire) {
            return;
        }
        let timeout = Duration::from_millis(self.config.node_timeout_ms);
        let mut peers = self.peers.lock().expect("lock");
        let dead: Vec<Arc<str>> = peers
            .map
            .iter()
            .filter(|(_, p)| p.last_seen.elapsed() > timeout)
            .map(|(k, _)| k.clone())
            .collect();
        let mut touched = Vec::new();
        for name in dead {
            tracing::warn!(node = %name, timeout_ms = self.config.node_timeout_ms, "node silent too long; removing it and its members");
            touched.extend(peers.remove(&self.hub, &name));
        }
        drop(peers);
        self.reconcile_all(touched);
    }

    fn ask_sync(&self, peers: &mut Peers, name: &Arc<str>) {
        let Some(p) = peers.map.get_mut(name) else {
            return;
        };
        let interval = Duration::from_millis(self.config.heartbeat_interval_ms);
        if p.sync_asked.is_some_and(|t| t.elapsed() < interval) {
            return;
        }
        p.sync_asked = Some(Instant::now());
        p.synced = false;
        let _ = self.cmds.send(Cmd::Publish(Envelope::SyncRequest {
            from: self.me.clone(),
            to: name.clone(),
        }));
    }

    fn on_message(&self, bytes: &[u8]) {
        let env: Envelope = match serde_json::from_slice(bytes) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(driver = self.driver(), error = %e, "undecodable adapter message ignored");
                return;
            }
        };
        self.metrics
            .adapter_messages
            .with_label_values(&[self.driver(), "received"])
            .inc();
        let from = env.from().clone();
        if from == self.me {
            if let Envelope::Heartbeat { .. } = env {
                self.echo();
            }
            return;
        }
        if from.name == self.me.name {
            // Another process claims our name: a misconfiguration, or our previous
            // incarnation's last messages. Never treat it as a peer.
            if from.boot > self.me.boot {
                tracing::error!(node = %from.name, "another node runs with this node's id");
            }
            return;
        }
        match env {
            Envelope::Event {
                app,
                channel,
                user,
                except,
                frame,
                delta,
                ..
            } => self.deliver(
                &app,
                channel.as_deref(),
                user.as_deref(),
                except,
                frame,
                delta.as_ref(),
            ),
            Envelope::Reply { id, count, .. } => self.on_reply(&from.name, id, count),
            Envelope::Request { id, request, .. } => self.on_request(&from, id, request),
            other => self.on_control(&from, other),
        }
    }

    fn deliver(
        &self,
        app: &str,
        channel: Option<&str>,
        user: Option<&str>,
        except: Option<String>,
        frame: String,
        delta: Option<&crate::delta::DeltaDecision>,
    ) {
        let frame = Frame::from(frame);
        let sent = match (channel, user) {
            (Some(c), _) => {
                let except = except.and_then(|s| s.parse().ok());
                self.hub.deliver_to_channel(app, c, &frame, except, delta)
            }
            (None, Some(u)) => self.hub.deliver_to_user(app, u, &frame),
            (None, None) => 0,
        };
        self.metrics.delivered(app, sent, frame.len());
    }

    fn on_control(&self, from: &NodeRef, env: Envelope) {
        let mut touched = Vec::new();
        self.on_control_locked(from, env, &mut touched);
        // Outside the peers lock: the webhook record reads the view.
        self.reconcile_all(touched);
    }

    fn on_control_locked(
        &self,
        from: &NodeRef,
        env: Envelope,
        touched: &mut Vec<(String, String)>,
    ) {
        let mut peers = self.peers.lock().expect("lock");
        if let Envelope::Bye { .. } = env {
            if peers
                .map
                .get(&from.name)
                .is_some_and(|p| p.boot == from.boot)
            {
                tracing::info!(node = %from.name, "node left");
                touched.extend(peers.remove(&self.hub, &from.name));
            }
            return;
        }
        if let Seen::Stale = peers.seen(&self.hub, from, touched) {
            return;
        }
        match env {
            Envelope::Heartbeat { seq, .. } => {
                let p = &peers.map[&from.name];
                if !p.synced || p.seq != seq {
                    self.ask_sync(&mut peers, &from.name);
                }
            }
            Envelope::Hello { seq, state, .. } => {
                touched.extend(peers.replace(&self.hub, &from.name, seq, state));
                let _ = self.cmds.send(Cmd::SendState {
                    to: from.name.clone(),
                });
            }
            Envelope::State { to, seq, state, .. } if to == self.me.name => {
                touched.extend(peers.replace(&self.hub, &from.name, seq, state));
            }
            Envelope::SyncRequest { to, .. } if to == self.me.name => {
                let _ = self.cmds.send(Cmd::SendState {
                    to: from.name.clone(),
                });
            }
            Envelope::Delta { seq, changes, .. } => {
                let p = &peers.map[&from.name];
                if !p.synced {
                    // The full state we asked for includes these changes.
                    self.ask_sync(&mut peers, &from.name);
                } else if seq <= p.seq {
                    // Duplicate.
                } else if seq == p.seq + 1 {
                    touched.extend(changes.iter().filter_map(Change::channel_key));
                    peers.apply(&self.hub, &from.name, changes);
                    if let Some(p) = peers.map.get_mut(&from.name) {
                        p.seq = seq;
                    }
                } else {
                    tracing::info!(node = %from.name, expected = p.seq + 1, got = seq, "missed changes; asking for a full state");
                    // Apply anyway (changes are absolute) while the full state is on its way.
                    touched.extend(changes.iter().filter_map(Change::channel_key));
                    peers.apply(&self.hub, &from.name, changes);
                    self.ask_sync(&mut peers, &from.name);
                }
            }
            _ => {}
        }
    }

    fn on_request(&self, from: &NodeRef, id: u64, request: Request) {
        let count = match request {
            Request::TerminateUser { app, user } => self.terminate_local(&app, &user),
            Request::Unknown => 0,
        };
        let _ = self.cmds.send(Cmd::Reply {
            to: from.clone(),
            env: Envelope::Reply {
                from: self.me.clone(),
                id,
                count,
            },
        });
    }

    fn on_reply(&self, from: &Arc<str>, id: u64, count: usize) {
        let mut pending = self.pending.lock().expect("lock");
        if let Some(p) = pending.get_mut(&id)
            && p.waiting.remove(from)
        {
            p.count += count;
            if p.waiting.is_empty()
                && let Some(done) = p.done.take()
            {
                let _ = done.send(());
            }
        }
    }

    fn terminate_local(&self, app: &str, user: &str) -> usize {
        let conns = self
            .hub
            .existing(app)
            .map(|h| h.user_connections(user))
            .unwrap_or_default();
        for c in &conns {
            c.close(ErrorCode::Unauthorized);
        }
        conns.len()
    }

    /// This node's full state, from the hub.
    fn snapshot(&self) -> NodeState {
        let mut state = NodeState::default();
        for app in self.hub.app_ids() {
            let Some(h) = self.hub.existing(&app) else {
                continue;
            };
            let channels: HashMap<String, ChannelState> = h
                .local_snapshot()
                .into_iter()
                .map(|c| {
                    (
                        c.name.to_string(),
                        ChannelState {
                            count: c.subscription_count,
                            members: c.members.into_iter().collect(),
                        },
                    )
                })
                .collect();
            let connections = h.connection_count();
            let users: HashSet<Arc<str>> = h.replicated_users().into_iter().collect();
            if connections > 0 || !channels.is_empty() || !users.is_empty() {
                state.apps.insert(
                    app.to_string(),
                    AppState {
                        connections,
                        channels,
                        users,
                    },
                );
            }
        }
        state
    }

    fn change_of(&self, ev: HubEvent) -> Change {
        match ev {
            HubEvent::ChannelCount {
                app,
                channel,
                count,
            } => Change::Count {
                app: app.to_string(),
                channel: channel.to_string(),
                count,
            },
            HubEvent::MemberJoined {
                app,
                channel,
                user,
                info,
                ..
            } => Change::Join {
                app: app.to_string(),
                channel: channel.to_string(),
                user,
                info,
            },
            HubEvent::MemberLeft {
                app, channel, user, ..
            } => Change::Leave {
                app: app.to_string(),
                channel: channel.to_string(),
                user,
            },
            HubEvent::Connections { app } => Change::Connections {
                // Read now: concurrent connects may report out of order; the latest wins.
                count: self.hub.existing(&app).map_or(0, |h| h.connection_count()),
                app: app.to_string(),
            },
            HubEvent::User { app, user, online } => Change::User {
                app: app.to_string(),
                user,
                online,
            },
        }
    }

    /// Cluster-wide counts of an app's channels: this node's plus every peer's.
    fn cluster_channels(&self, app: &str) -> HashMap<String, ClusterChannel> {
        let mut out: HashMap<String, ClusterChannel> = HashMap::new();
        if let Some(h) = self.hub.existing(app) {
            for c in h.local_snapshot() {
                let e = out.entry(c.name.to_string()).or_default();
                e.0 += c.subscription_count;
                if crate::channel::ChannelType::of(&c.name).is_presence() {
                    e.1.get_or_insert_with(HashSet::new)
                        .extend(c.members.into_iter().map(|(u, _)| u));
                }
            }
        }
        let peers = self.peers.lock().expect("lock");
        for p in peers.map.values() {
            let Some(a) = p.state.apps.get(app) else {
                continue;
            };
            for (name, c) in &a.channels {
                let e = out.entry(name.clone()).or_default();
                e.0 += c.count;
                if crate::channel::ChannelType::of(name).is_presence() {
                    e.1.get_or_insert_with(HashSet::new)
                        .extend(c.members.keys().cloned());
                }
            }
        }
        out.retain(|_, (count, _)| *count > 0);
        out
    }
}
