//! The local hub: which sockets of this node are in which channel, presence members, and
//! signed-in users. Delivery is synchronous and never blocks: frames go into per-socket queues.
//!
//! Frames that must stay ordered with membership changes (`subscription_succeeded`,
//! `member_added`/`member_removed`, `subscription_count`) are queued while the channel lock is
//! held, so no subscriber sees an event before its own `subscription_succeeded`.
//!
//! With a horizontal adapter the hub also holds the presence members of other nodes
//! (`remote_member`), so `member_added` / `member_removed` fire when a user appears or disappears
//! in the union of all nodes, and reports this node's own changes as [`HubEvent`]s for the
//! adapter to replicate. Lock order: `channels` before `remote`.

mod counts;
pub mod presence;
mod watchlist;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::value::RawValue;
use tokio::sync::mpsc::UnboundedSender;

use crate::connection::handle::{ConnHandle, Delivery, Frame};
use crate::delta::{DeltaDecision, DeltaMetrics, FanOut};
use crate::protocol::server as frames;
use crate::socket_id::SocketId;
use presence::{Join, Presence, RemoteMember, RemoteMembers};

/// A change of this node's own state, sent (in order, under the hub's locks) to a horizontal
/// adapter that replicates it to the other nodes.
#[derive(Debug, Clone)]
pub enum HubEvent {
    /// A channel's local subscription count is now `count` (0: no local subscriber).
    ChannelCount {
        app: Arc<str>,
        channel: Arc<str>,
        count: usize,
    },
    /// The user's first local socket joined a presence channel; `union`: the user was absent
    /// from every node before.
    MemberJoined {
        app: Arc<str>,
        channel: Arc<str>,
        user: Arc<str>,
        info: Arc<str>,
        union: bool,
    },
    /// The user's last local socket left; `union`: no node has the user any more.
    MemberLeft {
        app: Arc<str>,
        channel: Arc<str>,
        user: Arc<str>,
        union: bool,
    },
    /// The app's local connection count changed.
    Connections { app: Arc<str> },
    /// A user's first local socket signed in (`online`), or its last one left; only for
    /// apps with watchlist events, whose watchers on other nodes need to know.
    User {
        app: Arc<str>,
        user: Arc<str>,
        online: bool,
    },
}

/// One local channel in a state snapshot: its count and presence members (id, info JSON).
pub struct LocalChannel {
    pub name: Arc<str>,
    pub subscription_count: usize,
    pub members: Vec<(Arc<str>, Arc<str>)>,
}

/// All apps' hubs on this node.
#[derive(Default)]
pub struct LocalHub {
    apps: RwLock<HashMap<Arc<str>, Arc<AppHub>>>,
    connections: AtomicU64,
    delta_metrics: DeltaMetrics,
    observer: Option<UnboundedSender<HubEvent>>,
}

impl LocalHub {
    /// A hub whose delta fan-out counts into these (registered) metrics, reporting its changes
    /// to `observer` when a horizontal adapter replicates them.
    pub fn new(delta_metrics: DeltaMetrics, observer: Option<UnboundedSender<HubEvent>>) -> Self {
        LocalHub {
            delta_metrics,
            observer,
            ..LocalHub::default()
        }
    }

    /// Apps with state on this node.
    pub fn app_ids(&self) -> Vec<Arc<str>> {
        self.apps
            .read()
            .expect("hub lock")
            .keys()
            .cloned()
            .collect()
    }

    /// The app's hub, created on first use.
    pub fn app(&self, app_id: &str) -> Arc<AppHub> {
        if let Some(h) = self.existing(app_id) {
            return h;
        }
        let mut apps = self.apps.write().expect("hub lock");
        let id: Arc<str> = Arc::from(app_id);
        apps.entry(id.clone())
            .or_insert_with(|| {
                Arc::new(AppHub {
                    app_id: id,
                    observer: self.observer.clone(),
                    delta_metrics: self.delta_metrics.clone(),
                    ..AppHub::default()
                })
            })
            .clone()
    }

    pub fn existing(&self, app_id: &str) -> Option<Arc<AppHub>> {
        self.apps.read().expect("hub lock").get(app_id).cloned()
    }

    /// The local part of every publish to a channel, whatever the adapter: queues `frame` for
    /// this node's subscribers but `except`. Returns the number of sockets reached.
    pub fn deliver_to_channel(
        &self,
        app_id: &str,
        channel: &str,
        frame: &Frame,
        except: Option<SocketId>,
        delta: Option<&DeltaDecision>,
    ) -> usize {
        self.existing(app_id)
            .map_or(0, |h| h.broadcast(channel, frame, except, delta))
    }

    /// The local part of every publish to a user: queues `frame` for this node's sockets
    /// signed in as `user_id`.
    pub fn deliver_to_user(&self, app_id: &str, user_id: &str, frame: &Frame) -> usize {
        self.existing(app_id)
            .map_or(0, |h| h.send_to_user(user_id, frame))
    }

    /// Reserves a node-wide connection slot, unless `max` are in use.
    pub fn try_add_connection(&self, max: u64) -> bool {
        try_increment(&self.connections, max)
    }

    pub fn remove_connection(&self) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
    }

    pub fn connection_count(&self) -> u64 {
        self.connections.load(Ordering::Acquire)
    }
}

fn try_increment(counter: &AtomicU64, max: u64) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

#[derive(Default)]
struct ChannelState {
    sockets: HashMap<SocketId, Arc<ConnHandle>>,
    presence: Option<Presence>,
    /// Cluster-wide `subscription_count` (horizontal adapters): see `counts`.
    counts: counts::Announced,
}

/// How many subscribers ahead a fan-out prefetches (see `ConnHandle::prefetch`): enough to
/// cover a few sends' worth of memory latency, few enough to stay in L1.
const PREFETCH_AHEAD: usize = 4;

impl ChannelState {
    /// The subscribers, each one's handle prefetched a few places before it is yielded.
    fn subscribers(&self) -> impl Iterator<Item = (&SocketId, &Arc<ConnHandle>)> {
        let mut ahead = self.sockets.values();
        ahead
            .by_ref()
            .take(PREFETCH_AHEAD)
            .for_each(|c| c.prefetch());
        self.sockets.iter().inspect(move |_| {
            if let Some(next) = ahead.next() {
                next.prefetch();
            }
        })
    }

    fn broadcast(&self, frame: &Frame, except: Option<SocketId>) -> usize {
        let how = Delivery::for_fan_out(self.sockets.len());
        let mut sent = 0;
        for (id, conn) in self.subscribers() {
            if Some(*id) != except && conn.deliver(frame, how) {
                sent += 1;
            }
        }
        sent
    }

    /// An event with its delta decision: opted-in sockets get a delta or full frame, the others
    /// the plain frame, exactly as without deltas.
    fn broadcast_event(
        &self,
        channel: &str,
        frame: &Frame,
        except: Option<SocketId>,
        decision: &DeltaDecision,
        metrics: &DeltaMetrics,
    ) -> usize {
        let mut fan_out = FanOut::new(channel, frame, decision);
        let how = Delivery::for_fan_out(self.sockets.len());
        let mut sent = 0;
        for (id, conn) in self.subscribers() {
            if Some(*id) == except {
                continue;
            }
            let ok = if conn.delta.is_active() {
                fan_out.send_to(conn, how)
            } else {
                conn.deliver(frame, how)
            };
            if ok {
                sent += 1;
            }
        }
        fan_out.record(metrics);
        sent
    }
}

#[derive(Default)]
struct Users {
    /// Signed-in users and their sockets.
    signed_in: HashMap<Arc<str>, HashMap<SocketId, Arc<ConnHandle>>>,
    /// Watched user -> sockets watching it.
    watchers: HashMap<Arc<str>, HashMap<SocketId, Arc<ConnHandle>>>,
    /// Local users whose sign-in is replicated to other nodes (watchlist apps).
    replicated: std::collections::HashSet<Arc<str>>,
    /// Users signed in on other nodes, with those nodes (horizontal adapters).
    remote: HashMap<Arc<str>, std::collections::HashSet<Arc<str>>>,
}

impl Users {
    /// Signed in on this node or another one.
    fn online(&self, user: &str) -> bool {
        self.signed_in.contains_key(user) || self.remote.contains_key(user)
    }

    fn tell_watchers(&self, user: &Arc<str>, online: bool) {
        if let Some(watchers) = self.watchers.get(user) {
            let name = if online { "online" } else { "offline" };
            let frame = Frame::from(frames::watchlist_events(&[(name, vec![user])]));
            for w in watchers.values() {
                w.send(&frame);
            }
        }
    }
}

/// One app's channels, members and users on this node.
#[derive(Default)]
pub struct AppHub {
    app_id: Arc<str>,
    channels: RwLock<HashMap<Arc<str>, ChannelState>>,
    /// Presence members on other nodes, per channel (horizontal adapters only).
    remote: Mutex<HashMap<Arc<str>, RemoteMembers>>,
    users: RwLock<Users>,
    connections: AtomicU64,
    delta_metrics: DeltaMetrics,
    observer: Option<UnboundedSender<HubEvent>>,
}

/// A presence subscription's member.
pub struct PresenceMember {
    pub user_id: Arc<str>,
    pub user_info: Box<RawValue>,
    /// Refuse a new user once the channel has this many.
    pub max_members: usize,
}

/// Result of a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscribed {
    pub subscription_count: usize,
    /// The channel had no subscriber before.
    pub occupied: bool,
    /// Presence: the user's first socket in the channel.
    pub new_member: bool,
    /// The socket was already subscribed (nothing changed).
    pub duplicate: bool,
}

/// Result of an unsubscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribed {
    pub subscription_count: usize,
    pub vacated: bool,
    /// Presence: the user whose last socket left.
    pub member_removed: Option<Arc<str>>,
}

/// A user's first local socket in a presence channel: (user id, user_info JSON).
type Joined = (Arc<str>, Arc<str>);

/// A presence channel has its maximum of members.
#[derive(Debug, thiserror::Error)]
#[error("presence channel is full ({max} members)")]
pub struct PresenceFull {
    pub max: usize,
}

/// Counts of one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelCounts {
    pub subscription_count: usize,
    /// Presence channels only.
    pub user_count: Option<usize>,
}

impl AppHub {
    fn emit(&self, event: impl FnOnce(Arc<str>) -> HubEvent) {
        if let Some(tx) = &self.observer {
            // The receiver lives as long as the adapter; a send after shutdown is moot.
            let _ = tx.send(event(self.app_id.clone()));
        }
    }

    pub fn try_add_connection(&self, max: u64) -> bool {
        let ok = try_increment(&self.connections, max);
        if ok {
            self.emit(|app| HubEvent::Connections { app });
        }
        ok
    }

    pub fn remove_connection(&self) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
        self.emit(|app| HubEvent::Connections { app });
    }

    pub fn connection_count(&self) -> u64 {
        self.connections.load(Ordering::Acquire)
    }

    /// Adds `conn` to `channel` and queues its `subscription_succeeded` (plus `member_added` to
    /// the others and `subscription_count` to all, when asked) under the channel lock.
    pub fn subscribe(
        &self,
        channel: &str,
        conn: &Arc<ConnHandle>,
        member: Option<PresenceMember>,
        notify_count: bool,
    ) -> Result<Subscribed, PresenceFull> {
        let mut channels = self.channels.write().expect("hub lock");
        let remote = self.remote.lock().expect("hub lock");
        let occupied = !channels.contains_key(channel);
        let (name, state) = match channels.get_key_value(channel) {
            Some((k, _)) => {
                let k = k.clone();
                (k.clone(), channels.get_mut(&k).expect("present"))
            }
            None => {
                let k: Arc<str> = Arc::from(channel);
                (k.clone(), channels.entry(k).or_default())
            }
        };
        // With a horizontal adapter the count is cluster-wide: the adapter announces it.
        let clustered = self.observer.is_some();
        let result = Self::join(
            state,
            channel,
            conn,
            member,
            notify_count && !clustered,
            remote.get(channel),
        );
        if notify_count && clustered && result.as_ref().is_ok_and(|(s, _)| !s.duplicate) {
            state.counts.want();
        }
        if state.sockets.is_empty() {
            channels.remove(channel);
        }
        let (subscribed, joined) = result?;
        if !subscribed.duplicate {
            let count = subscribed.subscription_count;
            self.emit(|app| HubEvent::ChannelCount {
                app,
                channel: name.clone(),
                count,
            });
            if let Some((user, info)) = joined {
                self.emit(|app| HubEvent::MemberJoined {
                    app,
                    channel: name,
                    user,
                    info,
                    union: subscribed.new_member,
                });
            }
        }
        Ok(Subscribed {
            occupied: occupied && !subscribed.duplicate,
            ..subscribed
        })
    }

    fn join(
        state: &mut ChannelState,
        channel: &str,
        conn: &Arc<ConnHandle>,
        member: Option<PresenceMember>,
        notify_count: bool,
        remote: Option<&RemoteMembers>,
    ) -> Result<(Subscribed, Option<Joined>), PresenceFull> {
        let duplicate = state.sockets.contains_key(&conn.socket_id);
        let mut new_member = false;
        let mut joined = None;
        let mut presence_data = None;
        if let Some(m) = member {
            let presence = state.presence.get_or_insert_with(Presence::default);
            let present =
                presence.has_user(&m.user_id) || remote.is_some_and(|r| r.contains_key(&m.user_id));
            if !duplicate && !present && presence.union_count(remote) >= m.max_members {
                return Err(PresenceFull { max: m.max_members });
            }
            let info = m.user_info;
            let added_frame = if duplicate || present {
                None
            } else {
                Some(Frame::from(frames::member_added(
                    channel, &m.user_id, &info,
                )))
            };
            let info_text: Arc<str> = Arc::from(info.get());
            let user = m.user_id.clone();
            if let Join::NewMember = presence.join(conn.socket_id, m.user_id, info) {
                joined = Some((user, info_text));
                if let Some(f) = &added_frame {
                    new_member = true;
                    state.broadcast(f, Some(conn.socket_id));
                }
            }
            presence_data = state.presence.as_ref().map(|p| p.subscription_data(remote));
        }
        state.sockets.insert(conn.socket_id, conn.clone());
        conn.send(&Frame::from(frames::subscription_succeeded(
            channel,
            presence_data.as_deref(),
        )));
        let count = state.sockets.len();
        if notify_count && !duplicate {
            state.broadcast(
                &Frame::from(frames::subscription_count(channel, count as u64)),
                None,
            );
        }
        Ok((
            Subscribed {
                subscription_count: count,
                occupied: false,
                new_member,
                duplicate,
            },
            joined,
        ))
    }

    /// Removes a socket from a channel (None when it was not subscribed).
    pub fn unsubscribe(
        &self,
        channel: &str,
        socket: SocketId,
        notify_count: bool,
    ) -> Option<Unsubscribed> {
        let mut channels = self.channels.write().expect("hub lock");
        let remote = self.remote.lock().expect("hub lock");
        let (name, _) = channels.get_key_value(channel)?;
        let name = name.clone();
        let state = channels.get_mut(&name)?;
        state.sockets.remove(&socket)?;
        let left = state.presence.as_mut().and_then(|p| p.leave(socket));
        let member_removed = left.clone().filter(|u| {
            !remote
                .get(channel)
                .is_some_and(|r| r.contains_key(u.as_ref()))
        });
        if let Some(user) = &member_removed {
            state.broadcast(&Frame::from(frames::member_removed(channel, user)), None);
        }
        let count = state.sockets.len();
        self.emit(|app| HubEvent::ChannelCount {
            app,
            channel: name.clone(),
            count,
        });
        if let Some(user) = left {
            let union = member_removed.is_some();
            self.emit(|app| HubEvent::MemberLeft {
                app,
                channel: name,
                user,
                union,
            });
        }
        if count == 0 {
            channels.remove(channel);
        } else if notify_count && self.observer.is_none() {
            state.broadcast(
                &Frame::from(frames::subscription_count(channel, count as u64)),
                None,
            );
        }
        Some(Unsubscribed {
            subscription_count: count,
            vacated: count == 0,
            member_removed,
        })
    }

    /// Records that `node` has (`info` is Some) or no longer has `user` in a presence channel,
    /// and tells this node's subscribers when the user appears in or disappears from the union
    /// of all nodes. Returns `Some(true)` / `Some(false)` on such a transition.
    pub fn remote_member(
        &self,
        channel: &str,
        node: &Arc<str>,
        user: &Arc<str>,
        info: Option<Box<RawValue>>,
    ) -> Option<bool> {
        // A read lock excludes local joins and leaves (writers); `remote` serialises updates.
        let channels = self.channels.read().expect("hub lock");
        let mut remote = self.remote.lock().expect("hub lock");
        let local = channels
            .get(channel)
            .and_then(|s| s.presence.as_ref())
            .is_some_and(|p| p.has_user(user));
        let before = local || remote.get(channel).is_some_and(|r| r.contains_key(user));
        match info {
            Some(info) => {
                remote
                    .entry(Arc::from(channel))
                    .or_default()
                    .entry(user.clone())
                    .or_insert_with(|| RemoteMember {
                        info,
                        nodes: Default::default(),
                    })
                    .nodes
                    .insert(node.clone());
            }
            None => {
                if let Some(r) = remote.get_mut(channel) {
                    if let Some(m) = r.get_mut(user) {
                        m.nodes.remove(node);
                        if m.nodes.is_empty() {
                            r.remove(user);
                        }
                    }
                    if r.is_empty() {
                        remote.remove(channel);
                    }
                }
            }
        }
        let remote_member = remote.get(channel).and_then(|r| r.get(user));
        let after = local || remote_member.is_some();
        if before == after {
            return None;
        }
        if let Some(state) = channels.get(channel) {
            let frame = match remote_member {
                Some(m) if after => frames::member_added(channel, user, &m.info),
                _ => frames::member_removed(channel, user),
            };
            state.broadcast(&Frame::from(frame), None);
        }
        Some(after)
    }

    /// This node's channels with their counts and presence members, for a state snapshot.
    pub fn local_snapshot(&self) -> Vec<LocalChannel> {
        let channels = self.channels.read().expect("hub lock");
        channels
            .iter()
            .map(|(name, s)| LocalChannel {
                name: name.clone(),
                subscription_count: s.sockets.len(),
                members: s
                    .presence
                    .as_ref()
                    .map(|p| {
                        p.members()
                            .map(|(u, info)| (u.clone(), Arc::from(info.get())))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// Presence members (id, info) on this node only.
    pub fn local_members(&self, channel: &str) -> Vec<(Arc<str>, Arc<str>)> {
        let channels = self.channels.read().expect("hub lock");
        channels
            .get(channel)
            .and_then(|s| s.presence.as_ref())
            .map(|p| {
                p.members()
                    .map(|(u, info)| (u.clone(), Arc::from(info.get())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Delivers one frame to every local subscriber of `channel` but `except`, applying the
    /// publish's delta decision (taken at the publishing node) if it has one.
    pub fn broadcast(
        &self,
        channel: &str,
        frame: &Frame,
        except: Option<SocketId>,
        delta: Option<&DeltaDecision>,
    ) -> usize {
        let channels = self.channels.read().expect("hub lock");
        channels.get(channel).map_or(0, |state| match delta {
            Some(d) => state.broadcast_event(channel, frame, except, d, &self.delta_metrics),
            None => state.broadcast(frame, except),
        })
    }

    pub fn is_subscribed(&self, channel: &str, socket: SocketId) -> bool {
        let channels = self.channels.read().expect("hub lock");
        channels
            .get(channel)
            .is_some_and(|s| s.sockets.contains_key(&socket))
    }

    pub fn channel_counts(&self, channel: &str) -> Option<ChannelCounts> {
        let channels = self.channels.read().expect("hub lock");
        channels.get(channel).map(|s| ChannelCounts {
            subscription_count: s.sockets.len(),
            user_count: s.presence.as_ref().map(Presence::user_count),
        })
    }

    /// Every occupied channel with its counts.
    pub fn channels(&self) -> Vec<(String, ChannelCounts)> {
        let channels = self.channels.read().expect("hub lock");
        channels
            .iter()
            .map(|(name, s)| {
                (
                    name.to_string(),
                    ChannelCounts {
                        subscription_count: s.sockets.len(),
                        user_count: s.presence.as_ref().map(Presence::user_count),
                    },
                )
            })
            .collect()
    }

    pub fn presence_user_ids(&self, channel: &str) -> Vec<String> {
        let channels = self.channels.read().expect("hub lock");
        channels
            .get(channel)
            .and_then(|s| s.presence.as_ref())
            .map(|p| p.user_ids().map(String::from).collect())
            .unwrap_or_default()
    }

    pub fn has_presence_user(&self, channel: &str, user_id: &str) -> bool {
        let channels = self.channels.read().expect("hub lock");
        channels
            .get(channel)
            .and_then(|s| s.presence.as_ref())
            .is_some_and(|p| p.has_user(user_id))
    }

    /// Registers a signed-in socket and its watchlist. Returns which watched users are online
    /// now (on any node); when this is the user's first socket anywhere, its watchers are told
    /// it came online. `replicate`: other nodes learn of the user (apps with watchlist events).
    pub fn sign_in(
        &self,
        user_id: &Arc<str>,
        conn: &Arc<ConnHandle>,
        watchlist: &[Arc<str>],
        replicate: bool,
    ) -> Vec<Arc<str>> {
        let mut users = self.users.write().expect("hub lock");
        let was_online = users.online(user_id);
        let sockets = users.signed_in.entry(user_id.clone()).or_default();
        let first = sockets.is_empty();
        sockets.insert(conn.socket_id, conn.clone());
        if !was_online {
            users.tell_watchers(user_id, true);
        }
        if first && replicate && users.replicated.insert(user_id.clone()) {
            // Under the users lock, so sign-in and sign-out reach the adapter in order.
            self.emit(|app| HubEvent::User {
                app,
                user: user_id.clone(),
                online: true,
            });
        }
        for watched in watchlist {
            users
                .watchers
                .entry(watched.clone())
                .or_default()
                .insert(conn.socket_id, conn.clone());
        }
        watchlist
            .iter()
            .filter(|w| users.online(w))
            .cloned()
            .collect()
    }

    /// Undoes [`AppHub::sign_in`] when the socket closes; watchers hear `offline` when the
    /// user's last socket anywhere left.
    pub fn sign_out(&self, user_id: &Arc<str>, socket: SocketId, watchlist: &[Arc<str>]) {
        let mut users = self.users.write().expect("hub lock");
        for watched in watchlist {
            if let Some(w) = users.watchers.get_mut(watched) {
                w.remove(&socket);
                if w.is_empty() {
                    users.watchers.remove(watched);
                }
            }
        }
        let Some(sockets) = users.signed_in.get_mut(user_id) else {
            return;
        };
        sockets.remove(&socket);
        if sockets.is_empty() {
            users.signed_in.remove(user_id);
            if users.replicated.remove(user_id) {
                self.emit(|app| HubEvent::User {
                    app,
                    user: user_id.clone(),
                    online: false,
                });
            }
            if !users.online(user_id) {
                users.tell_watchers(user_id, false);
            }
        }
    }

    /// Delivers to every socket signed in as `user_id`.
    pub fn send_to_user(&self, user_id: &str, frame: &Frame) -> usize {
        let users = self.users.read().expect("hub lock");
        users.signed_in.get(user_id).map_or(0, |sockets| {
            sockets.values().filter(|c| c.send(frame)).count()
        })
    }

    pub fn user_connections(&self, user_id: &str) -> Vec<Arc<ConnHandle>> {
        let users = self.users.read().expect("hub lock");
        users
            .signed_in
            .get(user_id)
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection and the same handle to read its queued frames from.
    fn conn() -> (Arc<ConnHandle>, Arc<ConnHandle>) {
        let c = Arc::new(ConnHandle::new(SocketId::random(), Arc::from("app"), 64));
        (c.clone(), c)
    }

    fn member(user: &str) -> PresenceMember {
        PresenceMember {
            user_id: Arc::from(user),
            user_info: RawValue::from_string("{}".into()).unwrap(),
            max_members: 2,
        }
    }

    fn events(rx: &mut Arc<ConnHandle>) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(f) = rx.outbox.pop() {
            let v: serde_json::Value = serde_json::from_str(f.as_str()).unwrap();
            out.push(v["event"].as_str().unwrap().to_string());
        }
        out
    }

    #[test]
    fn member_events_follow_the_union_of_nodes() {
        let (obs, mut hub_events) = tokio::sync::mpsc::unbounded_channel();
        let hub = LocalHub::new(Default::default(), Some(obs)).app("app");
        let node: Arc<str> = Arc::from("other");
        let (watcher, mut wrx) = conn();
        hub.subscribe("presence-c", &watcher, Some(member("w")), false)
            .unwrap();
        events(&mut wrx);
        // A user on another node appears: member_added once.
        let u: Arc<str> = Arc::from("u");
        let info = || Some(RawValue::from_string("{}".into()).unwrap());
        assert_eq!(
            hub.remote_member("presence-c", &node, &u, info()),
            Some(true)
        );
        assert_eq!(events(&mut wrx), ["pusher_internal:member_added"]);
        // The same user joins here too: already present, nothing announced, and it counts
        // once against the limit of 2 (w + u).
        let (local_u, _lrx) = conn();
        let s = hub
            .subscribe("presence-c", &local_u, Some(member("u")), false)
            .unwrap();
        assert!(!s.new_member);
        assert!(events(&mut wrx).is_empty());
        // A third user is over the limit across nodes.
        let (third, _trx) = conn();
        assert!(
            hub.subscribe("presence-c", &third, Some(member("x")), false)
                .is_err()
        );
        // The other node's copy leaves: still here locally, nothing announced.
        assert_eq!(hub.remote_member("presence-c", &node, &u, None), None);
        assert!(events(&mut wrx).is_empty());
        // The local socket leaves: gone everywhere, member_removed once.
        let left = hub
            .unsubscribe("presence-c", local_u.socket_id, false)
            .unwrap();
        assert_eq!(left.member_removed.as_deref(), Some("u"));
        assert_eq!(events(&mut wrx), ["pusher_internal:member_removed"]);
        // The observer saw this node's own changes, in order.
        let mut kinds = Vec::new();
        while let Ok(e) = hub_events.try_recv() {
            kinds.push(match e {
                HubEvent::ChannelCount { count, .. } => format!("count {count}"),
                HubEvent::MemberJoined { user, union, .. } => format!("join {user} {union}"),
                HubEvent::MemberLeft { user, union, .. } => format!("leave {user} {union}"),
                HubEvent::Connections { .. } => "connections".into(),
                HubEvent::User { .. } => "user".into(),
            });
        }
        assert_eq!(
            kinds,
            [
                "count 1",
                "join w true",
                "count 2",
                "join u false",
                "count 1",
                "leave u true"
            ]
        );
    }

    #[test]
    fn subscription_data_lists_members_of_every_node() {
        let hub = LocalHub::default().app("app");
        let node: Arc<str> = Arc::from("other");
        hub.remote_member(
            "presence-c",
            &node,
            &Arc::from("remote"),
            Some(RawValue::from_string(r#"{"n":1}"#.into()).unwrap()),
        );
        let (c, rx) = conn();
        hub.subscribe("presence-c", &c, Some(member("local")), false)
            .unwrap();
        let f = rx.outbox.pop().unwrap();
        let v: serde_json::Value = serde_json::from_str(f.as_str()).unwrap();
        let data: serde_json::Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        assert_eq!(data["presence"]["count"], 2);
        assert_eq!(data["presence"]["hash"]["remote"]["n"], 1);
    }
}
