//! The local hub: which sockets of this node are in which channel, presence members, and
//! signed-in users. Delivery is synchronous and never blocks: frames go into per-socket queues.
//!
//! Frames that must stay ordered with membership changes (`subscription_succeeded`,
//! `member_added`/`member_removed`, `subscription_count`) are queued while the channel lock is
//! held, so no subscriber sees an event before its own `subscription_succeeded`.

pub mod presence;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde_json::value::RawValue;

use crate::connection::handle::{ConnHandle, Frame};
use crate::delta::{DeltaDecision, DeltaMetrics, FanOut};
use crate::protocol::server as frames;
use crate::socket_id::SocketId;
use presence::{Join, Presence};

/// All apps' hubs on this node.
#[derive(Default)]
pub struct LocalHub {
    apps: RwLock<HashMap<Arc<str>, Arc<AppHub>>>,
    connections: AtomicU64,
    delta_metrics: DeltaMetrics,
}

impl LocalHub {
    /// A hub whose delta fan-out counts into these (registered) metrics.
    pub fn with_delta_metrics(delta_metrics: DeltaMetrics) -> Self {
        LocalHub {
            delta_metrics,
            ..LocalHub::default()
        }
    }

    /// The app's hub, created on first use.
    pub fn app(&self, app_id: &str) -> Arc<AppHub> {
        if let Some(h) = self.existing(app_id) {
            return h;
        }
        let mut apps = self.apps.write().expect("hub lock");
        apps.entry(Arc::from(app_id))
            .or_insert_with(|| {
                Arc::new(AppHub {
                    delta_metrics: self.delta_metrics.clone(),
                    ..AppHub::default()
                })
            })
            .clone()
    }

    pub fn existing(&self, app_id: &str) -> Option<Arc<AppHub>> {
        self.apps.read().expect("hub lock").get(app_id).cloned()
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
}

impl ChannelState {
    fn broadcast(&self, frame: &Frame, except: Option<SocketId>) -> usize {
        let mut sent = 0;
        for (id, conn) in &self.sockets {
            if Some(*id) != except && conn.send(frame) {
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
        let mut sent = 0;
        for (id, conn) in &self.sockets {
            if Some(*id) == except {
                continue;
            }
            let ok = if conn.delta.is_active() {
                conn.send(&fan_out.frame_for(conn))
            } else {
                conn.send(frame)
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
}

/// One app's channels, members and users on this node.
#[derive(Default)]
pub struct AppHub {
    channels: RwLock<HashMap<Arc<str>, ChannelState>>,
    users: RwLock<Users>,
    connections: AtomicU64,
    delta_metrics: DeltaMetrics,
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
    pub fn try_add_connection(&self, max: u64) -> bool {
        try_increment(&self.connections, max)
    }

    pub fn remove_connection(&self) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
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
        let occupied = !channels.contains_key(channel);
        let state = channels.entry(Arc::from(channel)).or_default();
        let result = Self::join(state, channel, conn, member, notify_count);
        if state.sockets.is_empty() {
            channels.remove(channel);
        }
        result.map(|mut s| {
            s.occupied = occupied && !s.duplicate;
            s
        })
    }

    fn join(
        state: &mut ChannelState,
        channel: &str,
        conn: &Arc<ConnHandle>,
        member: Option<PresenceMember>,
        notify_count: bool,
    ) -> Result<Subscribed, PresenceFull> {
        let duplicate = state.sockets.contains_key(&conn.socket_id);
        let mut new_member = false;
        let mut presence_data = None;
        if let Some(m) = member {
            let presence = state.presence.get_or_insert_with(Presence::default);
            if !duplicate
                && !presence.has_user(&m.user_id)
                && presence.user_count() >= m.max_members
            {
                return Err(PresenceFull { max: m.max_members });
            }
            let info = m.user_info;
            let added_frame = if duplicate || presence.has_user(&m.user_id) {
                None
            } else {
                Some(Frame::from(frames::member_added(
                    channel, &m.user_id, &info,
                )))
            };
            if let Join::NewMember = presence.join(conn.socket_id, m.user_id, info) {
                new_member = true;
                if let Some(f) = &added_frame {
                    state.broadcast(f, Some(conn.socket_id));
                }
            }
            presence_data = state.presence.as_ref().map(Presence::subscription_data);
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
        Ok(Subscribed {
            subscription_count: count,
            occupied: false,
            new_member,
            duplicate,
        })
    }

    /// Removes a socket from a channel (None when it was not subscribed).
    pub fn unsubscribe(
        &self,
        channel: &str,
        socket: SocketId,
        notify_count: bool,
    ) -> Option<Unsubscribed> {
        let mut channels = self.channels.write().expect("hub lock");
        let state = channels.get_mut(channel)?;
        state.sockets.remove(&socket)?;
        let member_removed = state.presence.as_mut().and_then(|p| p.leave(socket));
        if let Some(user) = &member_removed {
            state.broadcast(&Frame::from(frames::member_removed(channel, user)), None);
        }
        let count = state.sockets.len();
        if count == 0 {
            channels.remove(channel);
        } else if notify_count {
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
    /// now; when this is the user's first socket, its watchers are told it came online.
    pub fn sign_in(
        &self,
        user_id: &Arc<str>,
        conn: &Arc<ConnHandle>,
        watchlist: &[Arc<str>],
    ) -> Vec<Arc<str>> {
        let mut users = self.users.write().expect("hub lock");
        let sockets = users.signed_in.entry(user_id.clone()).or_default();
        let first = sockets.is_empty();
        sockets.insert(conn.socket_id, conn.clone());
        if first && let Some(watchers) = users.watchers.get(user_id) {
            let frame = Frame::from(frames::watchlist_events(&[("online", vec![user_id])]));
            for w in watchers.values() {
                w.send(&frame);
            }
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
            .filter(|w| users.signed_in.contains_key(*w))
            .cloned()
            .collect()
    }

    /// Undoes [`AppHub::sign_in`] when the socket closes; watchers hear `offline` on the last one.
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
            if let Some(watchers) = users.watchers.get(user_id) {
                let frame = Frame::from(frames::watchlist_events(&[("offline", vec![user_id])]));
                for w in watchers.values() {
                    w.send(&frame);
                }
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
