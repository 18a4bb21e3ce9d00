//! The replicated view of the other nodes: their channel counts, presence members and
//! connection counts, kept per node incarnation and mirrored into the hub's presence union.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::value::RawValue;

use super::envelope::{Change, NodeRef, NodeState};
use crate::hub::LocalHub;

pub struct Peer {
    pub boot: u64,
    pub last_seen: Instant,
    /// Last change sequence applied.
    pub seq: u64,
    /// A full state was received and no change was missed since.
    pub synced: bool,
    /// When a SyncRequest was last sent (rate limit: one per heartbeat).
    pub sync_asked: Option<Instant>,
    pub state: NodeState,
}

/// What happened when a message from a node was accounted for.
pub enum Seen {
    /// Known incarnation (or a new one, already registered).
    Current,
    /// A message from an older incarnation of a node that restarted: ignore it.
    Stale,
}

#[derive(Default)]
pub struct Peers {
    pub map: HashMap<Arc<str>, Peer>,
}

impl Peers {
    /// Registers a message from `from`; a newer boot of a known name replaces the old one
    /// (whose members are removed at once: no ghosts).
    /// `touched` gets the channels of a replaced incarnation.
    pub fn seen(
        &mut self,
        hub: &LocalHub,
        from: &NodeRef,
        touched: &mut Vec<(String, String)>,
    ) -> Seen {
        if let Some(p) = self.map.get(&from.name) {
            if p.boot > from.boot {
                return Seen::Stale;
            }
            if p.boot < from.boot {
                tracing::info!(node = %from.name, old_boot = p.boot, boot = from.boot, "node restarted; replacing its previous incarnation");
                touched.extend(self.remove(hub, &from.name));
            }
        }
        let p = self.map.entry(from.name.clone()).or_insert_with(|| {
            tracing::info!(node = %from.name, boot = from.boot, "node joined");
            Peer {
                boot: from.boot,
                last_seen: Instant::now(),
                seq: 0,
                synced: false,
                sync_asked: None,
                state: NodeState::default(),
            }
        });
        p.last_seen = Instant::now();
        Seen::Current
    }

    /// Forgets a node and removes its members from the hub's union; returns its channels.
    pub fn remove(&mut self, hub: &LocalHub, name: &Arc<str>) -> Vec<(String, String)> {
        match self.map.remove(name) {
            Some(p) => {
                mirror(hub, name, &p.state, &NodeState::default());
                p.state.channel_keys()
            }
            None => Vec::new(),
        }
    }

    /// Replaces a node's whole state; returns the channels of the old and new state.
    pub fn replace(
        &mut self,
        hub: &LocalHub,
        name: &Arc<str>,
        seq: u64,
        state: NodeState,
    ) -> Vec<(String, String)> {
        let mut touched = Vec::new();
        if let Some(p) = self.map.get_mut(name) {
            touched = p.state.channel_keys();
            touched.extend(state.channel_keys());
            mirror(hub, name, &p.state, &state);
            p.state = state;
            p.seq = seq;
            p.synced = true;
            p.sync_asked = None;
        }
        touched
    }

    /// Applies changes in order.
    pub fn apply(&mut self, hub: &LocalHub, name: &Arc<str>, changes: Vec<Change>) {
        let Some(p) = self.map.get_mut(name) else {
            return;
        };
        for change in changes {
            match change {
                Change::Count {
                    app,
                    channel,
                    count,
                } => {
                    let a = p.state.apps.entry(app).or_default();
                    if count == 0 {
                        // Members leave before the count drops; drop the entry only when empty.
                        if a.channels
                            .get(&channel)
                            .is_some_and(|c| c.members.is_empty())
                        {
                            a.channels.remove(&channel);
                        } else if let Some(c) = a.channels.get_mut(&channel) {
                            c.count = 0;
                        }
                    } else {
                        a.channels.entry(channel).or_default().count = count;
                    }
                }
                Change::Join {
                    app,
                    channel,
                    user,
                    info,
                } => {
                    set_member(hub, &app, &channel, name, &user, Some(&info));
                    let c = p
                        .state
                        .apps
                        .entry(app)
                        .or_default()
                        .channels
                        .entry(channel)
                        .or_default();
                    c.members.insert(user, info);
                }
                Change::Leave { app, channel, user } => {
                    set_member(hub, &app, &channel, name, &user, None);
                    if let Some(a) = p.state.apps.get_mut(&app)
                        && let Some(c) = a.channels.get_mut(&channel)
                    {
                        c.members.remove(&user);
                        if c.count == 0 && c.members.is_empty() {
                            a.channels.remove(&channel);
                        }
                    }
                }
                Change::Connections { app, count } => {
                    p.state.apps.entry(app).or_default().connections = count;
                }
                Change::Unknown => {}
                Change::User { app, user, online } => {
                    hub.app(&app).remote_user(name, &user, online);
                    let users = &mut p.state.apps.entry(app).or_default().users;
                    if online {
                        users.insert(user);
                    } else {
                        users.remove(&user);
                    }
                }
            }
        }
    }
}

fn set_member(
    hub: &LocalHub,
    app: &str,
    channel: &str,
    node: &Arc<str>,
    user: &Arc<str>,
    info: Option<&str>,
) {
    let info = info.map(|i| {
        RawValue::from_string(i.to_string())
            .unwrap_or_else(|_| RawValue::from_string("{}".into()).expect("{} is JSON"))
    });
    hub.app(app).remote_member(channel, node, user, info);
}

/// Brings the hub's record of `node`'s members and signed-in users from `old` to `new`.
fn mirror(hub: &LocalHub, node: &Arc<str>, old: &NodeState, new: &NodeState) {
    for (app, a) in &old.apps {
        let kept = new.apps.get(app);
        for user in &a.users {
            if !kept.is_some_and(|k| k.users.contains(user)) {
                hub.app(app).remote_user(node, user, false);
            }
        }
    }
    for (app, a) in &new.apps {
        let had = old.apps.get(app);
        for user in &a.users {
            if !had.is_some_and(|h| h.users.contains(user)) {
                hub.app(app).remote_user(node, user, true);
            }
        }
    }
    for (app, a) in &old.apps {
        for (channel, c) in &a.channels {
            for user in c.members.keys() {
                let kept = new
                    .apps
                    .get(app)
                    .and_then(|a| a.channels.get(channel))
                    .is_some_and(|c| c.members.contains_key(user));
                if !kept {
                    set_member(hub, app, channel, node, user, None);
                }
            }
        }
    }
    for (app, a) in &new.apps {
        for (channel, c) in &a.channels {
            for (user, info) in &c.members {
                let had = old
                    .apps
                    .get(app)
                    .and_then(|a| a.channels.get(channel))
                    .is_some_and(|c| c.members.contains_key(user));
                if !had {
                    set_member(hub, app, channel, node, user, Some(info));
                }
            }
        }
    }
}
