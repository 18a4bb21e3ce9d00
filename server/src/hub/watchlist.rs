//! Watchlist across nodes: users signed in on other nodes, so `online` / `offline` reach
//! watchers when a user's first socket anywhere signs in and when its last one anywhere leaves.

use std::sync::Arc;

use super::AppHub;

impl AppHub {
    /// Records that `node` has (`online`) or no longer has `user` signed in, and tells this
    /// node's watchers when the user appears or disappears cluster-wide.
    pub fn remote_user(&self, node: &Arc<str>, user: &Arc<str>, online: bool) {
        let mut users = self.users.write().expect("hub lock");
        let before = users.online(user);
        if online {
            users
                .remote
                .entry(user.clone())
                .or_default()
                .insert(node.clone());
        } else if let Some(nodes) = users.remote.get_mut(user) {
            nodes.remove(node);
            if nodes.is_empty() {
                users.remote.remove(user);
            }
        }
        if users.online(user) != before {
            users.tell_watchers(user, !before);
        }
    }

    /// Local users whose sign-in is replicated, for a state snapshot.
    pub fn replicated_users(&self) -> Vec<Arc<str>> {
        let users = self.users.read().expect("hub lock");
        users.replicated.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::mpsc;

    use crate::connection::handle::ConnHandle;
    use crate::hub::{HubEvent, LocalHub};
    use crate::socket_id::SocketId;

    /// A connection and the same handle to read its queued frames from.
    fn conn() -> (Arc<ConnHandle>, Arc<ConnHandle>) {
        let c = Arc::new(ConnHandle::new(SocketId::random(), Arc::from("app"), 64));
        (c.clone(), c)
    }

    fn names(rx: &mut Arc<ConnHandle>) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(f) = rx.outbox.pop() {
            let v: serde_json::Value = serde_json::from_str(f.as_str()).unwrap();
            out.push(v["data"]["events"][0]["name"].as_str().unwrap().to_string());
        }
        out
    }

    #[test]
    fn online_and_offline_follow_the_union_of_nodes() {
        let (obs, mut events) = mpsc::unbounded_channel();
        let hub = LocalHub::new(Default::default(), Some(obs)).app("app");
        let (w, mut wrx) = conn();
        let user: Arc<str> = Arc::from("u");
        let other: Arc<str> = Arc::from("other-node");
        assert!(
            hub.sign_in(&Arc::from("w"), &w, std::slice::from_ref(&user), true)
                .is_empty()
        );
        hub.remote_user(&other, &user, true);
        assert_eq!(names(&mut wrx), ["online"]);
        // Also signed in here: already online, nothing new; replicated to the other nodes.
        let (local, _lrx) = conn();
        hub.sign_in(&user, &local, &[], true);
        assert!(names(&mut wrx).is_empty());
        hub.remote_user(&other, &user, false);
        assert!(names(&mut wrx).is_empty());
        hub.sign_out(&user, local.socket_id, &[]);
        assert_eq!(names(&mut wrx), ["offline"]);
        let mut replicated = Vec::new();
        while let Ok(e) = events.try_recv() {
            if let HubEvent::User { user, online, .. } = e {
                replicated.push(format!("{user} {online}"));
            }
        }
        assert_eq!(replicated, ["w true", "u true", "u false"]);
    }
}
