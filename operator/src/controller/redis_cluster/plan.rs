//! The single next action toward the goal, decided from every pod's view alone.
//!
//! In order: every node knows every other (MEET); a slot migration left open is finished;
//! unassigned slots go to their shard's master; replicas follow their shard's master; slots
//! move until every shard holds its quota (departing shards first); departing nodes are reset
//! and forgotten; then only gossip and `cluster_state:ok` are waited for.

use std::collections::BTreeSet;

use super::goal::{Goal, SLOTS};
use super::nodes::{NodeEntry, NodeView};
use super::{drain, rebalance};

/// One slot to move from pod `from` to pod `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMove {
    pub slot: u16,
    pub from: usize,
    pub from_id: String,
    pub to: usize,
    pub to_id: String,
    /// `SETSLOT IMPORTING` on `to` (not once `to` owns the slot).
    pub import: bool,
    /// `SETSLOT MIGRATING` on `from` (only while `from` owns the slot).
    pub migrate: bool,
    /// `from` is a master, so keys left in the slot are `MIGRATE`d (a replica refuses writes).
    pub keys: bool,
}

/// The single next action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `CLUSTER MEET` from pod `from` to each of the pods `to`.
    Meet { from: usize, to: Vec<usize> },
    /// `CLUSTER ADDSLOTSRANGE` on pod `pod`.
    AddSlots { pod: usize, ranges: Vec<(u16, u16)> },
    /// `CLUSTER REPLICATE master_id` on pod `pod`.
    Replicate {
        pod: usize,
        master_pod: usize,
        master_id: String,
    },
    /// Slots moved one at a time: IMPORTING on the target, MIGRATING on the source, the keys
    /// `MIGRATE`d in batches, then `SETSLOT NODE` on the target, the source and every other
    /// master in `masters`.
    Migrate {
        moves: Vec<SlotMove>,
        masters: Vec<usize>,
    },
    /// `CLUSTER SETSLOT slot STABLE` on `pod`: a migration whose other side is gone.
    Stabilize { pod: usize, slots: Vec<u16> },
    /// `CLUSTER RESET HARD` on departing pods that own no slot: they leave the cluster.
    Reset { pods: Vec<usize> },
    /// `CLUSTER RESET SOFT` on the primary of a shard that has no master (it replicates another
    /// shard's): it becomes an empty master, keeps its id, and is met again.
    Promote { pod: usize },
    /// `CLUSTER FORGET` of node ids no pod has any more, on each remaining pod.
    Forget { forget: Vec<(usize, Vec<String>)> },
    /// Nothing to do but wait for gossip (a node not yet knowing another, the state not yet ok).
    Wait(String),
    /// Done.
    None,
}

fn ranges_text(slots: impl IntoIterator<Item = u16>) -> String {
    let mut ranges: Vec<(u16, u16)> = Vec::new();
    for s in slots {
        match ranges.last_mut() {
            Some((_, b)) if *b + 1 == s => *b = s,
            _ => ranges.push((s, s)),
        }
    }
    let text: Vec<String> = ranges
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    text.join(" ")
}

impl Action {
    pub fn describe(&self) -> String {
        match self {
            Action::Meet { from, to } => format!("CLUSTER MEET from pod {from} to pods {to:?}"),
            Action::AddSlots { pod, ranges } => {
                let r: Vec<String> = ranges.iter().map(|(a, b)| format!("{a}-{b}")).collect();
                format!("CLUSTER ADDSLOTSRANGE {} on pod {pod}", r.join(" "))
            }
            Action::Replicate {
                pod, master_pod, ..
            } => format!("CLUSTER REPLICATE pod {master_pod} on pod {pod}"),
            Action::Migrate { moves, .. } => {
                let pairs: BTreeSet<(usize, usize)> =
                    moves.iter().map(|m| (m.from, m.to)).collect();
                let pairs: Vec<String> = pairs
                    .iter()
                    .map(|(f, t)| format!("pod {f} to pod {t}"))
                    .collect();
                format!(
                    "migrate {} slots ({}) from {}",
                    moves.len(),
                    ranges_text(moves.iter().map(|m| m.slot)),
                    pairs.join(", ")
                )
            }
            Action::Stabilize { pod, slots } => format!(
                "CLUSTER SETSLOT STABLE {} on pod {pod}",
                ranges_text(slots.iter().copied())
            ),
            Action::Reset { pods } => format!("CLUSTER RESET HARD on departing pods {pods:?}"),
            Action::Promote { pod } => {
                format!("CLUSTER RESET SOFT on pod {pod} to make it its shard's master")
            }
            Action::Forget { forget } => {
                let ids: BTreeSet<&str> = forget
                    .iter()
                    .flat_map(|(_, ids)| ids.iter().map(String::as_str))
                    .collect();
                format!(
                    "CLUSTER FORGET {} on pods {:?}",
                    ids.into_iter().collect::<Vec<_>>().join(" "),
                    forget.iter().map(|(p, _)| *p).collect::<Vec<_>>()
                )
            }
            Action::Wait(why) => format!("waiting: {why}"),
            Action::None => "cluster ready".to_string(),
        }
    }
}

/// Pods taking part: the goal's, and departing ones until they have left (been reset).
pub fn members(views: &[NodeView], goal: Goal) -> Vec<usize> {
    (0..views.len())
        .filter(|&p| p < goal.pods() || views[p].is_joined())
        .collect()
}

/// Slots each node owns by its own account (its `myself` line), so a stale view of another
/// node never makes us think a slot is free.
pub fn owned_slots(views: &[NodeView]) -> BTreeSet<u16> {
    views
        .iter()
        .filter_map(NodeView::myself)
        .flat_map(|m| m.slot_list().collect::<Vec<_>>())
        .collect()
}

/// Unowned sub-ranges of `start..=end`.
fn free_ranges(owned: &BTreeSet<u16>, start: u16, end: u16) -> Vec<(u16, u16)> {
    let mut out: Vec<(u16, u16)> = Vec::new();
    for s in start..=end {
        if owned.contains(&s) {
            continue;
        }
        match out.last_mut() {
            Some((_, b)) if *b + 1 == s => *b = s,
            _ => out.push((s, s)),
        }
    }
    out
}

/// The pod acting as shard `shard`'s master: the one owning slots (after a failover, the
/// promoted replica), else the primary while it is a master, else any master of the shard.
pub fn shard_master(views: &[NodeView], goal: Goal, shard: usize) -> Option<usize> {
    let all = goal.shard_pods(shard);
    let pods = all.start.min(views.len())..all.end.min(views.len());
    pods.clone()
        .find(|&p| views[p].owns_slots())
        .or_else(|| pods.clone().find(|&p| views[p].is_master()))
}

/// Every member must know every other; MEET is sent from the first node missing someone,
/// straight to the missing nodes (after all pods restart with new IPs this also repairs).
fn meet(views: &[NodeView], members: &[usize]) -> Option<Action> {
    for &from in members {
        let v = &views[from];
        let to: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&i| i != from && !v.knows(&views[i].id))
            .collect();
        if to.is_empty() {
            continue;
        }
        // A node still handshaking another is in progress, not unknown: wait for it.
        let handshaking = to.iter().all(|&i| {
            v.nodes
                .iter()
                .any(|n| n.id == views[i].id && n.is_handshake())
        });
        if handshaking {
            return Some(Action::Wait(format!(
                "pod {from} is handshaking pods {to:?}"
            )));
        }
        return Some(Action::Meet { from, to });
    }
    None
}

/// Unassigned slots of a shard's range go to the shard's master.
fn assign_free_slots(views: &[NodeView], goal: Goal) -> Option<Action> {
    let owned = owned_slots(views);
    for k in 0..goal.masters {
        let Some(pod) = shard_master(views, goal, k) else {
            continue;
        };
        let (start, end) = goal.range(k);
        let ranges = free_ranges(&owned, start, end);
        if !ranges.is_empty() {
            return Some(Action::AddSlots { pod, ranges });
        }
    }
    None
}

/// The other pods of a remaining shard replicate its master: an empty master (a new or reset
/// pod) and a replica of a node outside the shard (one that followed a departing master).
fn attach_replicas(views: &[NodeView], goal: Goal) -> Option<Action> {
    // A shard whose pods all replicate other shards (a cluster formed with another layout)
    // first gets a master of its own.
    for k in 0..goal.masters {
        let primary = goal.primary(k);
        if primary < views.len()
            && shard_master(views, goal, k).is_none()
            && views[primary].myself().is_some_and(NodeEntry::is_replica)
        {
            return Some(Action::Promote { pod: primary });
        }
    }
    for pod in 0..goal.pods().min(views.len()) {
        let shard = goal.shard_of(pod);
        let Some(master_pod) = shard_master(views, goal, shard) else {
            continue;
        };
        let Some(me) = views[pod].myself() else {
            continue;
        };
        if master_pod == pod {
            continue;
        }
        let in_shard = |id: &str| {
            goal.shard_pods(shard)
                .filter(|&p| p < views.len())
                .any(|p| views[p].id == id)
        };
        let misplaced = if me.is_replica() {
            !me.master_id.as_deref().is_some_and(in_shard)
        } else {
            me.slots.is_empty()
        };
        if !misplaced {
            continue;
        }
        let master_id = views[master_pod].id.clone();
        if !views[pod].knows(&master_id) {
            return Some(Action::Wait(format!(
                "pod {pod} does not know its master yet"
            )));
        }
        return Some(Action::Replicate {
            pod,
            master_pod,
            master_id,
        });
    }
    None
}

/// Ready means every member agrees with every other about roles and slots, not just that
/// each node says ok: clients discover the topology from any node.
fn settled(views: &[NodeView], members: &[usize]) -> Action {
    for &j in members {
        for &i in members {
            let truth = views[i].myself();
            let seen = views[j].nodes.iter().find(|n| n.id == views[i].id);
            let (Some(truth), Some(seen)) = (truth, seen) else {
                continue;
            };
            let differs = |a: &NodeEntry, b: &NodeEntry| {
                a.is_replica() != b.is_replica() || a.master_id != b.master_id || a.slots != b.slots
            };
            if differs(seen, truth) {
                return Action::Wait(format!("pod {j} does not yet see pod {i} as it is"));
            }
        }
    }
    // A MEET to a peer that was only reconnecting (all pods restarted) leaves a handshake entry
    // until the peer answers and Redis folds it into the known node: not settled yet, and a
    // client discovering the topology meanwhile would see a node too many.
    if let Some(&j) = members
        .iter()
        .find(|&&j| views[j].nodes.iter().any(NodeEntry::is_handshake))
    {
        return Action::Wait(format!("pod {j} is still handshaking a node"));
    }
    if let Some(&i) = members.iter().find(|&&i| !views[i].state_ok) {
        return Action::Wait(format!("pod {i} does not report cluster_state:ok"));
    }
    Action::None
}

/// Decides the next action from every pod's view (`views[i]` is pod `i`; pods from
/// `goal.pods()` on are departing).
pub fn plan(views: &[NodeView], goal: Goal) -> Action {
    let members = members(views, goal);
    if let Some(a) = meet(views, &members) {
        return a;
    }
    // A node serves keys of a slot (and accepts them by MIGRATE) only once it reports
    // cluster_state:ok, which a freshly met node does a few seconds later.
    let not_ok = |mut pods: Vec<usize>| {
        pods.retain(|&p| !views[p].state_ok);
        pods.first().copied()
    };
    let open = rebalance::unfinished(views, &members);
    let open_waits = match &open {
        Some(Action::Migrate { moves, .. }) => {
            not_ok(moves.iter().flat_map(|m| [m.from, m.to]).collect())
        }
        _ => None,
    };
    if let Some(a) = open.filter(|_| open_waits.is_none()) {
        return a;
    }
    if let Some(a) = assign_free_slots(views, goal) {
        return a;
    }
    if let Some(a) = attach_replicas(views, goal) {
        return a;
    }
    if let Some(p) = open_waits {
        return Action::Wait(format!(
            "an open migration waits for pod {p} to report cluster_state:ok"
        ));
    }
    let owned = owned_slots(views).len();
    if owned < usize::from(SLOTS) {
        return Action::Wait(format!("{owned} slots assigned"));
    }
    if let Some(p) = not_ok(members.clone()) {
        return Action::Wait(format!("pod {p} does not report cluster_state:ok"));
    }
    if let Some(a) = rebalance::next(views, goal, &members) {
        return a;
    }
    if let Some(a) = drain::next(views, goal) {
        return a;
    }
    settled(views, &members)
}
