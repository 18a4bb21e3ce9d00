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

pub mod envelope;
mod leader;
mod peers;
pub mod transport;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use sockudo_config::AdapterConfig;
use tokio::sync::{mpsc, oneshot};

use crate::adapter::{Adapter, AdapterError, BackendHealth, Completion};
use crate::connection::handle::Frame;
use crate::hub::{ChannelCounts, HubEvent, LocalHub};
use crate::metrics::Metrics;
use crate::protocol::ErrorCode;
use crate::socket_id::SocketId;
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
    /// Was up once: later recoveries count as reconnects.
    ever_up: AtomicBool,
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
            ever_up: AtomicBool::new(false),
            up_since: Mutex::new(None),
            last_error: Mutex::new(Some("connecting".into())),
            echo_seen: Mutex::new(Instant::now()),
            metrics,
            webhooks: OnceLock::new(),
            record: Mutex::default(),
            deferred: Mutex::default(),
            buffer: Mutex::default(),
            vacate_delay,
        });
        tokio::spawn(publisher(core.clone(), hub_events, cmd_rx));
        tokio::spawn(receiver(core.clone(), incoming));
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
            if self.ever_up.swap(true, Ordering::AcqRel) {
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

    /// Connected for two heartbeats: long enough to have heard of older peers. Before that,
    /// at a cold start, every node knows no one and would think it leads.
    fn settled(&self) -> bool {
        let settle = Duration::from_millis(self.config.heartbeat_interval_ms * 2);
        let up_since = *self.up_since.lock().expect("lock");
        up_since.is_some_and(|t| t.elapsed() >= settle)
    }

    /// Sends the events deferred while settling, if this node turned out to lead.
    fn flush_deferred(&self) {
        if !self.settled() {
            return;
        }
        let deferred = std::mem::take(&mut *self.deferred.lock().expect("lock"));
        if deferred.is_empty() || !self.is_leader() {
            return;
        }
        if let Some(webhooks) = self.webhooks.get() {
            for (app, channel, e) in deferred {
                webhooks.cluster_event(&app, &channel, e);
            }
        }
    }

    fn is_leader(&self) -> bool {
        // The webhook leader: the live node with the oldest boot.
        let peers = self.peers.lock().expect("lock");
        peers.map.values().all(|p| p.boot > self.me.boot)
    }

    /// A channel's subscription count and presence users over all nodes.
    fn channel_view(&self, app: &str, channel: &str) -> (usize, HashSet<Arc<str>>) {
        let (mut count, mut users) = match self.hub.existing(app) {
            Some(h) => (
                h.channel_counts(channel)
                    .map_or(0, |c| c.subscription_count),
                h.local_members(channel)
                    .into_iter()
                    .map(|(u, _)| u)
                    .collect(),
            ),
            None => (0, HashSet::new()),
        };
        let peers = self.peers.lock().expect("lock");
        for p in peers.map.values() {
            if let Some(c) = p.state.apps.get(app).and_then(|a| a.channels.get(channel)) {
                count += c.count;
                users.extend(c.members.keys().cloned());
            }
        }
        (count, users)
    }

    /// Updates the channel's webhook record from the cluster view; the leader sends the
    /// differences (see `leader`).
    fn reconcile(&self, app: &str, channel: &str, removals: bool) {
        let Some(webhooks) = self.webhooks.get() else {
            return;
        };
        let (count, users) = self.channel_view(app, channel);
        let presence = crate::channel::ChannelType::of(channel).is_presence();
        let removals = removals || self.vacate_delay.is_zero();
        let outcome = self
            .record
            .lock()
            .expect("lock")
            .reconcile(app, channel, presence, count, &users, removals);
        if outcome.recheck {
            let cmds = self.cmds.clone();
            let (app, channel, delay) = (app.to_string(), channel.to_string(), self.vacate_delay);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = cmds.send(Cmd::Reconcile { app, channel });
            });
        }
        if outcome.events.is_empty() {
            return;
        }
        if !self.settled() {
            let mut deferred = self.deferred.lock().expect("lock");
            deferred.extend(
                outcome
                    .events
                    .into_iter()
                    .map(|e| (app.to_string(), channel.to_string(), e)),
            );
        } else if self.is_leader() {
            for e in outcome.events {
                webhooks.cluster_event(app, channel, e);
            }
        }
    }

    fn reconcile_all(&self, touched: Vec<(String, String)>) {
        let unique: HashSet<(String, String)> = touched.into_iter().collect();
        for (app, channel) in unique {
            self.reconcile(&app, &channel, false);
        }
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
                ..
            } => self.deliver(&app, channel.as_deref(), user.as_deref(), except, frame),
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
    ) {
        let Some(hub) = self.hub.existing(app) else {
            return;
        };
        let frame = Frame::from(frame);
        let sent = match (channel, user) {
            (Some(c), _) => hub.broadcast(c, &frame, except.and_then(|s| s.parse().ok())),
            (None, Some(u)) => hub.send_to_user(u, &frame),
            (None, None) => 0,
        };
        self.metrics.delivered(sent, frame.len());
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
            if connections > 0 || !channels.is_empty() {
                state.apps.insert(
                    app.to_string(),
                    AppState {
                        connections,
                        channels,
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

/// Sends this node's changes, heartbeats and snapshots, in one order (the delta numbers).
async fn publisher(
    core: Arc<Core>,
    mut hub_events: mpsc::UnboundedReceiver<HubEvent>,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
) {
    let mut seq: u64 = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(core.config.heartbeat_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let _ = core.cmds.send(Cmd::Hello);
    loop {
        tokio::select! {
            Some(ev) = hub_events.recv() => {
                let mut changes = vec![core.change_of(ev)];
                while changes.len() < 512 {
                    match hub_events.try_recv() {
                        Ok(ev) => changes.push(core.change_of(ev)),
                        Err(_) => break,
                    }
                }
                core.reconcile_all(changes.iter().filter_map(Change::channel_key).collect());
                seq += 1;
                // While degraded the changes are not sent: peers notice the gap in `seq` and
                // we announce the full state when the backend is back.
                if core.healthy.load(Ordering::Acquire) {
                    let env = Envelope::Delta { from: core.me.clone(), seq, changes };
                    let _ = core.publish(&Topic::Control, &env).await;
                }
            }
            Some(cmd) = cmds.recv() => match cmd {
                Cmd::Hello => {
                    let env = Envelope::Hello { from: core.me.clone(), seq, state: core.snapshot() };
                    let _ = core.publish(&Topic::Control, &env).await;
                }
                Cmd::SendState { to } => {
                    let env = Envelope::State { from: core.me.clone(), to, seq, state: core.snapshot() };
                    let _ = core.publish(&Topic::Control, &env).await;
                }
                Cmd::Publish(env) => {
                    let _ = core.publish(&Topic::Control, &env).await;
                }
                Cmd::Reply { to, env } => {
                    let _ = core.publish(&Topic::Node(inbox_of(&to)), &env).await;
                }
                Cmd::Reconcile { app, channel } => core.reconcile(&app, &channel, true),
                Cmd::Bye(done) => {
                    let env = Envelope::Bye { from: core.me.clone() };
                    if core.publish(&Topic::Control, &env).await.is_ok() {
                        tracing::info!(node = %core.me.name, "announced departure");
                    }
                    let _ = done.send(());
                    return;
                }
            },
            _ = tick.tick() => {
                let env = Envelope::Heartbeat { from: core.me.clone(), seq };
                let _ = core.publish(&Topic::Control, &env).await;
                core.check();
                core.flush_deferred();
                core.flush_buffer().await;
            }
        }
    }
}

async fn receiver(core: Arc<Core>, mut incoming: mpsc::Receiver<Bytes>) {
    while let Some(bytes) = incoming.recv().await {
        core.on_message(&bytes);
    }
}

#[async_trait]
impl Adapter for HorizontalAdapter {
    fn driver(&self) -> &'static str {
        self.core.driver()
    }

    fn hub(&self) -> &Arc<LocalHub> {
        &self.core.hub
    }

    async fn broadcast(
        &self,
        app_id: &str,
        channel: &str,
        frame: &Frame,
        except: Option<SocketId>,
    ) -> Result<usize, AdapterError> {
        let core = &self.core;
        let env = Envelope::Event {
            from: core.me.clone(),
            app: app_id.to_string(),
            channel: Some(channel.to_string()),
            user: None,
            except: except.map(|s| s.to_string()),
            frame: frame.as_str().to_string(),
        };
        let bucket = transport::bucket_of(app_id, channel, core.transport.buckets());
        core.publish_event(Topic::Events(bucket), env).await?;
        Ok(core
            .hub
            .existing(app_id)
            .map_or(0, |h| h.broadcast(channel, frame, except)))
    }

    async fn send_to_user(
        &self,
        app_id: &str,
        user_id: &str,
        frame: &Frame,
    ) -> Result<usize, AdapterError> {
        let core = &self.core;
        let env = Envelope::Event {
            from: core.me.clone(),
            app: app_id.to_string(),
            channel: None,
            user: Some(user_id.to_string()),
            except: None,
            frame: frame.as_str().to_string(),
        };
        let bucket = transport::bucket_of(app_id, user_id, core.transport.buckets());
        core.publish_event(Topic::Events(bucket), env).await?;
        Ok(core
            .hub
            .existing(app_id)
            .map_or(0, |h| h.send_to_user(user_id, frame)))
    }

    async fn channels(&self, app_id: &str) -> Result<Vec<(String, ChannelCounts)>, AdapterError> {
        Ok(self
            .core
            .cluster_channels(app_id)
            .into_iter()
            .map(|(name, (count, users))| {
                (
                    name,
                    ChannelCounts {
                        subscription_count: count,
                        user_count: users.map(|u| u.len()),
                    },
                )
            })
            .collect())
    }

    async fn channel_counts(
        &self,
        app_id: &str,
        channel: &str,
    ) -> Result<Option<ChannelCounts>, AdapterError> {
        let mut count = self
            .core
            .hub
            .existing(app_id)
            .and_then(|h| h.channel_counts(channel))
            .map_or(0, |c| c.subscription_count);
        let users = self.presence_user_ids(app_id, channel).await?;
        {
            let peers = self.core.peers.lock().expect("lock");
            for p in peers.map.values() {
                count += p
                    .state
                    .apps
                    .get(app_id)
                    .and_then(|a| a.channels.get(channel))
                    .map_or(0, |c| c.count);
            }
        }
        Ok((count > 0).then(|| ChannelCounts {
            subscription_count: count,
            user_count: crate::channel::ChannelType::of(channel)
                .is_presence()
                .then_some(users.len()),
        }))
    }

    async fn presence_user_ids(
        &self,
        app_id: &str,
        channel: &str,
    ) -> Result<Vec<String>, AdapterError> {
        let mut users: HashSet<Arc<str>> = self
            .core
            .hub
            .existing(app_id)
            .map(|h| {
                h.local_members(channel)
                    .into_iter()
                    .map(|(u, _)| u)
                    .collect()
            })
            .unwrap_or_default();
        let peers = self.core.peers.lock().expect("lock");
        for p in peers.map.values() {
            if let Some(c) = p
                .state
                .apps
                .get(app_id)
                .and_then(|a| a.channels.get(channel))
            {
                users.extend(c.members.keys().cloned());
            }
        }
        Ok(users.into_iter().map(|u| u.to_string()).collect())
    }

    async fn has_presence_user(
        &self,
        app_id: &str,
        channel: &str,
        user_id: &str,
    ) -> Result<bool, AdapterError> {
        Ok(self
            .presence_user_ids(app_id, channel)
            .await?
            .iter()
            .any(|u| u == user_id))
    }

    async fn connection_count(&self, app_id: &str) -> Result<u64, AdapterError> {
        let local = self
            .core
            .hub
            .existing(app_id)
            .map_or(0, |h| h.connection_count());
        Ok(local + self.remote_connections(app_id))
    }

    async fn terminate_user_connections(
        &self,
        app_id: &str,
        user_id: &str,
    ) -> Result<Completion, AdapterError> {
        let core = &self.core;
        let started = Instant::now();
        let id = core.next_id.fetch_add(1, Ordering::Relaxed);
        let waiting: HashSet<Arc<str>> = core
            .peers
            .lock()
            .expect("lock")
            .map
            .keys()
            .cloned()
            .collect();
        let (done_tx, done_rx) = oneshot::channel();
        let expected = waiting.len();
        core.pending.lock().expect("lock").insert(
            id,
            Pending {
                waiting,
                count: 0,
                done: Some(done_tx),
            },
        );
        let env = Envelope::Request {
            from: core.me.clone(),
            id,
            request: Request::TerminateUser {
                app: app_id.to_string(),
                user: user_id.to_string(),
            },
        };
        let published = core.publish(&Topic::Control, &env).await;
        let local = core.terminate_local(app_id, user_id);
        let answered = if published.is_ok() && expected > 0 {
            tokio::time::timeout(core.timeout(), done_rx).await.is_ok()
        } else {
            expected == 0
        };
        let pending = core.pending.lock().expect("lock").remove(&id);
        let remote = pending.as_ref().map_or(0, |p| p.count);
        core.metrics
            .adapter_request_seconds
            .with_label_values(&[core.driver()])
            .observe(started.elapsed().as_secs_f64());
        let complete = answered && published.is_ok();
        if !complete {
            core.metrics
                .adapter_timeouts
                .with_label_values(&[core.driver()])
                .inc();
            tracing::warn!(
                app_id,
                user_id,
                expected,
                missing = pending.map_or(0, |p| p.waiting.len()),
                "terminate_connections: some nodes did not answer in time"
            );
        }
        Ok(Completion {
            count: local + remote,
            complete,
        })
    }

    fn health(&self) -> BackendHealth {
        if self.core.healthy.load(Ordering::Acquire) {
            BackendHealth::Ok
        } else {
            let e = self.core.last_error.lock().expect("lock").clone();
            BackendHealth::Degraded(e.unwrap_or_else(|| "backend unreachable".into()))
        }
    }

    fn answers_complete(&self) -> bool {
        self.core.healthy.load(Ordering::Acquire)
            && self
                .core
                .peers
                .lock()
                .expect("lock")
                .map
                .values()
                .all(|p| p.synced)
    }

    fn cluster_webhooks(&self) -> bool {
        true
    }

    fn attach_webhooks(&self, webhooks: Webhooks) {
        let _ = self.core.webhooks.set(webhooks);
    }

    fn remote_connections(&self, app_id: &str) -> u64 {
        let peers = self.core.peers.lock().expect("lock");
        peers
            .map
            .values()
            .filter_map(|p| p.state.apps.get(app_id))
            .map(|a| a.connections)
            .sum()
    }

    async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.core.cmds.send(Cmd::Bye(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), rx).await;
        }
    }
}
