//! Cluster-wide `pusher_internal:subscription_count` (horizontal adapters).
//!
//! The hub does not send its local count then: the adapter sums every node's replicated
//! per-channel counts and calls [`AppHub::announce_count`] (debounced) for channels whose
//! total may have changed. The channel remembers the total last sent, so an unchanged total
//! is not sent again, except to a channel that gained a local subscriber since.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::AppHub;
use crate::connection::handle::Frame;
use crate::protocol::server as frames;

/// No total sent yet (or a new subscriber needs one).
const NONE: usize = usize::MAX;

pub(super) struct Announced {
    /// Some subscriber asked for counts (the app enables `subscription_count`).
    wanted: AtomicBool,
    last: AtomicUsize,
}

impl Default for Announced {
    fn default() -> Self {
        Announced {
            wanted: AtomicBool::new(false),
            last: AtomicUsize::new(NONE),
        }
    }
}

impl Announced {
    /// A subscriber that wants counts joined: the next announcement goes out even if the total
    /// did not change (a join here and a leave elsewhere).
    pub(super) fn want(&self) {
        self.wanted.store(true, Ordering::Release);
        self.last.store(NONE, Ordering::Release);
    }
}

impl AppHub {
    /// Whether `channel` has local subscribers that want cluster-wide counts.
    pub fn wants_count(&self, channel: &str) -> bool {
        let channels = self.channels.read().expect("hub lock");
        channels
            .get(channel)
            .is_some_and(|s| s.counts.wanted.load(Ordering::Acquire))
    }

    /// Sends `total` (the cluster-wide count) to the channel's local subscribers unless it was
    /// the last total sent. Returns whether it was sent.
    pub fn announce_count(&self, channel: &str, total: usize) -> bool {
        let channels = self.channels.read().expect("hub lock");
        let Some(state) = channels.get(channel) else {
            return false;
        };
        if !state.counts.wanted.load(Ordering::Acquire)
            || state.counts.last.swap(total, Ordering::AcqRel) == total
        {
            return false;
        }
        state.broadcast(
            &Frame::from(frames::subscription_count(channel, total as u64)),
            None,
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::mpsc;

    use crate::connection::handle::ConnHandle;
    use crate::hub::LocalHub;
    use crate::socket_id::SocketId;

    #[test]
    fn clustered_hub_leaves_counts_to_the_adapter() {
        let (obs, _events) = mpsc::unbounded_channel();
        let hub = LocalHub::new(Default::default(), Some(obs)).app("app");
        let c = Arc::new(ConnHandle::new(SocketId::random(), Arc::from("app"), 64));
        hub.subscribe("ch", &c, None, true).unwrap();
        let first: serde_json::Value =
            serde_json::from_str(c.outbox.pop().unwrap().as_str()).unwrap();
        assert_eq!(first["event"], "pusher_internal:subscription_succeeded");
        assert!(c.outbox.pop().is_none(), "no local count");
        assert!(hub.wants_count("ch"));
        assert!(hub.announce_count("ch", 5));
        assert!(!hub.announce_count("ch", 5), "unchanged total not repeated");
        let f: serde_json::Value = serde_json::from_str(c.outbox.pop().unwrap().as_str()).unwrap();
        assert_eq!(f["data"], r#"{"subscription_count":5}"#);
        // A new local subscriber gets the total even when it did not change.
        let c2 = Arc::new(ConnHandle::new(SocketId::random(), Arc::from("app"), 64));
        hub.subscribe("ch", &c2, None, true).unwrap();
        assert!(hub.announce_count("ch", 5));
    }
}
