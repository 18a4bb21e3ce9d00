//! Presence members of one channel: one entry per user, counted over that user's sockets.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::socket_id::SocketId;

pub struct Member {
    pub info: Box<RawValue>,
    sockets: u32,
}

/// A member present on other nodes (horizontal adapters), with the nodes that have it.
pub struct RemoteMember {
    pub info: Box<RawValue>,
    pub nodes: HashSet<Arc<str>>,
}

/// One channel's members on other nodes.
pub type RemoteMembers = HashMap<Arc<str>, RemoteMember>;

#[derive(Default)]
pub struct Presence {
    /// Insertion-ordered ids are not needed by clients; a map keeps joins O(1).
    members: HashMap<Arc<str>, Member>,
    by_socket: HashMap<SocketId, Arc<str>>,
}

/// What a join did.
pub enum Join {
    /// First socket of this user in the channel: announce `member_added`.
    NewMember,
    /// Another socket of a user already present.
    ExistingMember,
    /// Already subscribed with this socket.
    Duplicate,
}

impl Presence {
    pub fn user_count(&self) -> usize {
        self.members.len()
    }

    pub fn has_user(&self, user_id: &str) -> bool {
        self.members.contains_key(user_id)
    }

    pub fn user_ids(&self) -> impl Iterator<Item = &str> {
        self.members.keys().map(|k| k.as_ref())
    }

    pub fn join(&mut self, socket: SocketId, user_id: Arc<str>, info: Box<RawValue>) -> Join {
        if self.by_socket.contains_key(&socket) {
            return Join::Duplicate;
        }
        self.by_socket.insert(socket, user_id.clone());
        match self.members.get_mut(&user_id) {
            Some(m) => {
                m.sockets += 1;
                Join::ExistingMember
            }
            None => {
                self.members.insert(user_id, Member { info, sockets: 1 });
                Join::NewMember
            }
        }
    }

    /// Removes a socket; returns the user id when it was that user's last socket here.
    pub fn leave(&mut self, socket: SocketId) -> Option<Arc<str>> {
        let user = self.by_socket.remove(&socket)?;
        let member = self.members.get_mut(&user)?;
        member.sockets -= 1;
        if member.sockets == 0 {
            self.members.remove(&user);
            Some(user)
        } else {
            None
        }
    }

    /// This node's members with their info.
    pub fn members(&self) -> impl Iterator<Item = (&Arc<str>, &RawValue)> {
        self.members.iter().map(|(k, m)| (k, m.info.as_ref()))
    }

    /// Users present here or on another node.
    pub fn union_count(&self, remote: Option<&RemoteMembers>) -> usize {
        self.members.len()
            + remote.map_or(0, |r| {
                r.keys().filter(|u| !self.members.contains_key(*u)).count()
            })
    }

    /// JSON text of `{"presence":{"ids":[..],"hash":{id:info},"count":n}}`, over this node's
    /// members and those of other nodes.
    pub fn subscription_data(&self, remote: Option<&RemoteMembers>) -> String {
        #[derive(Serialize)]
        struct P<'a> {
            ids: Vec<&'a str>,
            hash: HashMap<&'a str, &'a RawValue>,
            count: usize,
        }
        #[derive(Serialize)]
        struct D<'a> {
            presence: P<'a>,
        }
        let mut hash: HashMap<&str, &RawValue> = self
            .members
            .iter()
            .map(|(k, m)| (k.as_ref(), m.info.as_ref()))
            .collect();
        for (k, m) in remote.into_iter().flatten() {
            hash.entry(k.as_ref()).or_insert(m.info.as_ref());
        }
        let data = D {
            presence: P {
                ids: hash.keys().copied().collect(),
                count: hash.len(),
                hash,
            },
        };
        serde_json::to_string(&data).expect("presence data serialises")
    }
}
