//! Once-per-cluster webhooks.
//!
//! Every node keeps the same "announced" record per channel (occupied, subscription count,
//! presence members) and updates it from its converged view of all nodes whenever a channel
//! changes anywhere. Only the webhook leader, the live node with the oldest boot, sends the
//! differences. Because every node keeps the record, a new leader continues where the old
//! one stopped instead of announcing everything again; a node that joins never takes the
//! lead from an older one.
//!
//! Failover: transitions that happen after the leader died and before the others notice it
//! (up to `adapter.node_timeout_ms`) are recorded but not sent: webhooks may be lost in that
//! window, never duplicated. Removals (`member_removed`, `channel_vacated`) wait
//! `webhooks.vacate_delay_ms` and are re-checked, as on a single node.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::Cmd;

use crate::webhooks::ClusterEvent;

#[derive(Default)]
struct Announced {
    occupied: bool,
    count: usize,
    members: HashSet<Arc<str>>,
}

/// The record of what the cluster has announced.
#[derive(Default)]
pub struct Record {
    channels: HashMap<(String, String), Announced>,
}

/// What reconciling one channel produced.
pub struct Outcome {
    pub events: Vec<ClusterEvent>,
    /// Removals are pending until the vacate delay passes.
    pub recheck: bool,
}

impl Record {
    /// Brings the record of (app, channel) to the current view; `removals`: apply removals now
    /// (else they are reported as pending).
    pub fn reconcile(
        &mut self,
        app: &str,
        channel: &str,
        presence: bool,
        count: usize,
        members: &HashSet<Arc<str>>,
        removals: bool,
    ) -> Outcome {
        let key = (app.to_string(), channel.to_string());
        let a = self.channels.entry(key.clone()).or_default();
        let mut events = Vec::new();
        let mut recheck = false;
        if count > 0 && !a.occupied {
            a.occupied = true;
            events.push(ClusterEvent::Occupied);
        }
        for u in members {
            if a.members.insert(u.clone()) {
                events.push(ClusterEvent::MemberAdded(u.to_string()));
            }
        }
        let gone: Vec<Arc<str>> = a
            .members
            .iter()
            .filter(|u| !members.contains(*u))
            .cloned()
            .collect();
        if !gone.is_empty() {
            if removals {
                for u in gone {
                    a.members.remove(&u);
                    events.push(ClusterEvent::MemberRemoved(u.to_string()));
                }
            } else {
                recheck = true;
            }
        }
        if !presence && count != a.count {
            a.count = count;
            events.push(ClusterEvent::SubscriptionCount(count));
        }
        if count == 0 && a.occupied {
            if removals {
                a.occupied = false;
                events.push(ClusterEvent::Vacated);
            } else {
                recheck = true;
            }
        }
        if !a.occupied && a.members.is_empty() && a.count == 0 {
            self.channels.remove(&key);
        }
        Outcome { events, recheck }
    }
}

/// The leader logic on the core: who leads, and reconciling a channel's record.
impl super::Core {
    /// Connected for two heartbeats: long enough to have heard of older peers. Before that,
    /// at a cold start, every node knows no one and would think it leads.
    pub(super) fn settled(&self) -> bool {
        let settle = Duration::from_millis(self.config.heartbeat_interval_ms * 2);
        let up_since = *self.up_since.lock().expect("lock");
        up_since.is_some_and(|t| t.elapsed() >= settle)
    }

    /// Sends the events deferred while settling, if this node turned out to lead.
    pub(super) fn flush_deferred(&self) {
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

    pub(super) fn is_leader(&self) -> bool {
        // The webhook leader: the live node with the oldest boot.
        let peers = self.peers.lock().expect("lock");
        peers.map.values().all(|p| p.boot > self.me.boot)
    }

    /// A channel's subscription count and presence users over all nodes.
    pub(super) fn channel_view(&self, app: &str, channel: &str) -> (usize, HashSet<Arc<str>>) {
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
    pub(super) fn reconcile(&self, app: &str, channel: &str, removals: bool) {
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

    pub(super) fn reconcile_all(&self, touched: Vec<(String, String)>) {
        let unique: HashSet<(String, String)> = touched.into_iter().collect();
        self.counts_changed(&unique);
        for (app, channel) in unique {
            self.reconcile(&app, &channel, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(users: &[&str]) -> HashSet<Arc<str>> {
        users.iter().map(|u| Arc::from(*u)).collect()
    }

    #[test]
    fn occupied_members_and_delayed_removals_once() {
        let mut r = Record::default();
        let o = r.reconcile("a", "presence-x", true, 2, &set(&["u1", "u2"]), false);
        assert_eq!(
            o.events[0],
            ClusterEvent::Occupied,
            "occupied before members"
        );
        assert_eq!(o.events.len(), 3);
        // Same view again: nothing.
        assert!(
            r.reconcile("a", "presence-x", true, 2, &set(&["u1", "u2"]), false)
                .events
                .is_empty()
        );
        // u2 gone: pending until the delayed re-check.
        let o = r.reconcile("a", "presence-x", true, 1, &set(&["u1"]), false);
        assert!(o.events.is_empty() && o.recheck);
        let o = r.reconcile("a", "presence-x", true, 1, &set(&["u1"]), true);
        assert_eq!(o.events, vec![ClusterEvent::MemberRemoved("u2".into())]);
        let o = r.reconcile("a", "presence-x", true, 0, &set(&[]), true);
        assert_eq!(
            o.events,
            vec![
                ClusterEvent::MemberRemoved("u1".into()),
                ClusterEvent::Vacated
            ]
        );
        assert!(r.channels.is_empty());
    }

    #[test]
    fn a_quick_leave_and_rejoin_announces_nothing() {
        let mut r = Record::default();
        r.reconcile("a", "c", false, 1, &set(&[]), false);
        let o = r.reconcile("a", "c", false, 0, &set(&[]), false);
        assert_eq!(o.events, vec![ClusterEvent::SubscriptionCount(0)]);
        assert!(o.recheck);
        r.reconcile("a", "c", false, 1, &set(&[]), false);
        let o = r.reconcile("a", "c", false, 1, &set(&[]), true);
        assert!(o.events.is_empty(), "{:?}", o.events);
    }
}
