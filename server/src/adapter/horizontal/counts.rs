//! Cluster-wide `pusher_internal:subscription_count` for clients.
//!
//! No request per subscribe: every node already replicates its per-channel local counts (the
//! `Count` changes of its deltas, batched by the publisher) and drops a peer's counts when the
//! peer leaves or is declared dead. Each node sums the latest per-node counts for the channels
//! a change touched, at most once per [`DEBOUNCE`], and its hub sends the total to the local
//! subscribers that asked for counts when it differs from the last total they got.

use std::collections::HashSet;
use std::time::Duration;

use super::{Cmd, Core};

/// Coalesces bursts of subscribes (anywhere in the cluster) into one announcement per channel.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

impl Core {
    /// Notes channels whose total may have changed; schedules one flush per burst.
    pub(super) fn counts_changed(&self, touched: &HashSet<(String, String)>) {
        if touched.is_empty() {
            return;
        }
        let mut dirty = self.counts_dirty.lock().expect("lock");
        let idle = dirty.is_empty();
        dirty.extend(touched.iter().cloned());
        drop(dirty);
        if idle {
            let cmds = self.cmds.clone();
            tokio::spawn(async move {
                tokio::time::sleep(DEBOUNCE).await;
                let _ = cmds.send(Cmd::FlushCounts);
            });
        }
    }

    /// Sends each dirty channel's cluster-wide total to its local subscribers.
    pub(super) fn flush_counts(&self) {
        let dirty = std::mem::take(&mut *self.counts_dirty.lock().expect("lock"));
        for (app, channel) in dirty {
            let Some(hub) = self.hub.existing(&app) else {
                continue;
            };
            if !hub.wants_count(&channel) {
                continue;
            }
            let total = self.cluster_count(&app, &channel);
            hub.announce_count(&channel, total);
        }
    }

    /// A channel's subscription count: this node's plus the latest of every live peer.
    fn cluster_count(&self, app: &str, channel: &str) -> usize {
        let local = self
            .hub
            .existing(app)
            .and_then(|h| h.channel_counts(channel))
            .map_or(0, |c| c.subscription_count);
        let peers = self.peers.lock().expect("lock");
        local
            + peers
                .map
                .values()
                .filter_map(|p| p.state.apps.get(app)?.channels.get(channel))
                .map(|c| c.count)
                .sum::<usize>()
    }
}
