//! Messages between nodes (JSON). Every message names its sender: node name (the pod name)
//! plus boot id, so a restarted pod with the same name replaces its previous incarnation.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A node incarnation. `boot` grows across restarts (milliseconds since the epoch, shifted,
/// plus random bits), so the newer incarnation of a name wins.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeRef {
    pub name: Arc<str>,
    pub boot: u64,
}

/// One node's own state: what its peers replicate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    pub apps: HashMap<String, AppState>,
}

impl NodeState {
    /// Every (app, channel) this state mentions.
    pub fn channel_keys(&self) -> Vec<(String, String)> {
        self.apps
            .iter()
            .flat_map(|(app, a)| a.channels.keys().map(|c| (app.clone(), c.clone())))
            .collect()
    }
}

impl Change {
    /// The (app, channel) a change is about, if any.
    pub fn channel_key(&self) -> Option<(String, String)> {
        match self {
            Change::Count { app, channel, .. }
            | Change::Join { app, channel, .. }
            | Change::Leave { app, channel, .. } => Some((app.clone(), channel.clone())),
            Change::Connections { .. } | Change::User { .. } | Change::Unknown => None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppState {
    pub connections: u64,
    pub channels: HashMap<String, ChannelState>,
    /// Signed-in users (apps with watchlist events only).
    #[serde(default, skip_serializing_if = "HashSet::is_empty")]
    pub users: HashSet<Arc<str>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelState {
    pub count: usize,
    /// Presence: user id -> user_info JSON text.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub members: HashMap<Arc<str>, Arc<str>>,
}

/// One change of a node's state. Each is an absolute "set", so applying one twice is harmless.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "c", rename_all = "snake_case")]
pub enum Change {
    Count {
        app: String,
        channel: String,
        count: usize,
    },
    Join {
        app: String,
        channel: String,
        user: Arc<str>,
        info: Arc<str>,
    },
    Leave {
        app: String,
        channel: String,
        user: Arc<str>,
    },
    Connections {
        app: String,
        count: u64,
    },
    /// A user signed in on the node (first socket) or signed out (last socket).
    User {
        app: String,
        user: Arc<str>,
        online: bool,
    },
    /// A kind added by a newer version: skipped, so a rolling upgrade can add kinds without
    /// older nodes dropping the whole delta (and falling back to full state syncs).
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "q", rename_all = "snake_case")]
pub enum Request {
    TerminateUser {
        app: String,
        user: String,
    },
    /// A request added by a newer version: answered with a count of 0 (nothing done here).
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Envelope {
    /// A frame for a channel's subscribers, or for a signed-in user's sockets.
    Event {
        from: NodeRef,
        app: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        except: Option<String>,
        frame: String,
        /// The publishing node's delta decision; receivers apply it, never re-decide.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delta: Option<crate::delta::DeltaDecision>,
    },
    /// Alive; `seq` is the sender's last change sequence, so a missed delta is noticed.
    Heartbeat { from: NodeRef, seq: u64 },
    /// A node (re)joins: here is my full state, send me yours.
    Hello {
        from: NodeRef,
        seq: u64,
        state: NodeState,
    },
    /// A full state, for the node `to` (others ignore it).
    State {
        from: NodeRef,
        to: Arc<str>,
        seq: u64,
        state: NodeState,
    },
    /// `from` missed some of `to`'s changes: `to` answers with a State.
    SyncRequest { from: NodeRef, to: Arc<str> },
    Delta {
        from: NodeRef,
        seq: u64,
        changes: Vec<Change>,
    },
    /// Graceful stop.
    Bye { from: NodeRef },
    Request {
        from: NodeRef,
        id: u64,
        request: Request,
    },
    Reply {
        from: NodeRef,
        id: u64,
        count: usize,
    },
}

impl Envelope {
    pub fn from(&self) -> &NodeRef {
        match self {
            Envelope::Event { from, .. }
            | Envelope::Heartbeat { from, .. }
            | Envelope::Hello { from, .. }
            | Envelope::State { from, .. }
            | Envelope::SyncRequest { from, .. }
            | Envelope::Delta { from, .. }
            | Envelope::Bye { from }
            | Envelope::Request { from, .. }
            | Envelope::Reply { from, .. } => from,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node of a newer version may send change and request kinds this one does not know:
    /// the known changes of the same delta still apply.
    #[test]
    fn unknown_kinds_from_a_newer_version_are_skipped() {
        let json = r#"{"t":"delta","from":{"name":"n2","boot":7},"seq":3,"changes":[
            {"c":"count","app":"1","channel":"c","count":2},
            {"c":"presence_v2","app":"1","channel":"c","whatever":[1,2]},
            {"c":"connections","app":"1","count":5}]}"#;
        let Envelope::Delta { changes, seq, .. } = serde_json::from_str(json).unwrap() else {
            panic!("a delta");
        };
        assert_eq!(seq, 3);
        assert_eq!(
            changes,
            vec![
                Change::Count {
                    app: "1".into(),
                    channel: "c".into(),
                    count: 2
                },
                Change::Unknown,
                Change::Connections {
                    app: "1".into(),
                    count: 5
                },
            ]
        );
        let json = r#"{"t":"request","from":{"name":"n2","boot":7},"id":9,"request":{"q":"kick_everyone","app":"1"}}"#;
        let Envelope::Request { request, id, .. } = serde_json::from_str(json).unwrap() else {
            panic!("a request");
        };
        assert_eq!((id, request), (9, Request::Unknown));
    }

    /// Fields added since the first format are optional, so messages of a node that predates
    /// them still decode.
    #[test]
    fn messages_without_later_fields_decode() {
        let json = r#"{"t":"hello","from":{"name":"n1","boot":1},"seq":0,"state":{"apps":{"1":{"connections":2,"channels":{"presence-a":{"count":1}}}}}}"#;
        let Envelope::Hello { state, .. } = serde_json::from_str(json).unwrap() else {
            panic!("a hello");
        };
        let app = &state.apps["1"];
        assert!(app.users.is_empty());
        assert!(app.channels["presence-a"].members.is_empty());
        let json =
            r#"{"t":"event","from":{"name":"n1","boot":1},"app":"1","channel":"c","frame":"{}"}"#;
        let Envelope::Event { delta, user, .. } = serde_json::from_str(json).unwrap() else {
            panic!("an event");
        };
        assert!(delta.is_none() && user.is_none());
    }
}
