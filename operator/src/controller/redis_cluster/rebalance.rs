//! Moving slots between masters: finishing a migration left open, and the next bounded batch
//! toward every shard holding its quota.
//!
//! Nothing is remembered between steps: an open migration shows in the nodes' `CLUSTER NODES`
//! as `[slot->-id]` / `[slot-<-id]`, and the balance is recomputed from the owners' own
//! accounts each time, so an operator that crashed mid-batch picks up where the nodes are.

use std::collections::BTreeMap;

use super::goal::Goal;
use super::nodes::NodeView;
use super::plan::{Action, SlotMove, shard_master};

/// Slots moved per step (per reconcile): large enough to finish a reshard in tens of steps,
/// small enough that one step stays short.
pub const SLOTS_PER_STEP: usize = 128;

/// Slots each shard holds, by its masters' own account (departing shards included).
pub fn shard_slots(views: &[NodeView], goal: Goal) -> Vec<usize> {
    let mut counts = vec![0; goal.shards_in(views.len()).max(goal.masters)];
    for (p, v) in views.iter().enumerate() {
        if v.owns_slots() {
            counts[goal.shard_of(p)] += v.slot_count();
        }
    }
    counts
}

/// Slots still to move before every shard holds its quota.
pub fn slots_to_move(views: &[NodeView], goal: Goal) -> usize {
    shard_slots(views, goal)
        .iter()
        .enumerate()
        .map(|(k, &c)| c.saturating_sub(goal.quota(k)))
        .sum()
}

/// Masters among the members, by their own account: they all learn each new slot owner.
fn masters(views: &[NodeView], members: &[usize]) -> Vec<usize> {
    members
        .iter()
        .copied()
        .filter(|&p| views[p].is_master())
        .collect()
}

/// A migration left open (by an interrupted step) is finished before anything else moves, in
/// the direction it was started. A marker whose other side is no member is cleared instead.
pub fn unfinished(views: &[NodeView], members: &[usize]) -> Option<Action> {
    let pod_of = |id: &str| members.iter().copied().find(|&p| views[p].id == id);
    let mut pairs: BTreeMap<u16, (usize, usize)> = BTreeMap::new();
    let mut orphans: BTreeMap<usize, Vec<u16>> = BTreeMap::new();
    // The source's marker first: it holds the keys, so its direction wins.
    for &p in members {
        let Some(me) = views[p].myself() else {
            continue;
        };
        for (slot, to) in &me.migrating {
            match pod_of(to) {
                Some(q) => {
                    pairs.entry(*slot).or_insert((p, q));
                }
                None => orphans.entry(p).or_default().push(*slot),
            }
        }
    }
    for &p in members {
        let Some(me) = views[p].myself() else {
            continue;
        };
        for (slot, from) in &me.importing {
            match pod_of(from) {
                Some(q) => {
                    pairs.entry(*slot).or_insert((q, p));
                }
                None => orphans.entry(p).or_default().push(*slot),
            }
        }
    }
    let mut moves = Vec::new();
    for (&slot, &(from, to)) in &pairs {
        let (from_owns, to_owns) = (views[from].owns(slot), views[to].owns(slot));
        if !from_owns && !to_owns {
            // A third node owns it (or nobody does): neither side's marker means anything.
            for p in [from, to] {
                let me = views[p].myself();
                let marked = me.is_some_and(|m| {
                    m.migrating.iter().any(|(s, _)| *s == slot)
                        || m.importing.iter().any(|(s, _)| *s == slot)
                });
                if marked {
                    orphans.entry(p).or_default().push(slot);
                }
            }
            continue;
        }
        moves.push(SlotMove {
            slot,
            from,
            from_id: views[from].id.clone(),
            to,
            to_id: views[to].id.clone(),
            import: !to_owns,
            migrate: from_owns,
            keys: views[from].is_master(),
        });
    }
    if let Some((pod, mut slots)) = orphans.into_iter().next() {
        slots.sort_unstable();
        slots.dedup();
        return Some(Action::Stabilize { pod, slots });
    }
    if moves.is_empty() {
        return None;
    }
    moves.truncate(SLOTS_PER_STEP);
    Some(Action::Migrate {
        moves,
        masters: masters(views, members),
    })
}

/// The next batch toward balance: from a departing shard while one holds slots (the highest
/// first), else from the shard most over its quota, to the shard most under it.
pub fn next(views: &[NodeView], goal: Goal, members: &[usize]) -> Option<Action> {
    let counts = shard_slots(views, goal);
    let excess = |k: usize| counts[k] as i64 - goal.quota(k) as i64;
    if counts.iter().enumerate().all(|(k, _)| excess(k) == 0) {
        return consolidate(views, goal, members);
    }
    let donor = (goal.masters..counts.len())
        .rev()
        .find(|&k| counts[k] > 0)
        .or_else(|| {
            (0..counts.len())
                .filter(|&k| excess(k) > 0)
                .max_by_key(|&k| (excess(k), k))
        })?;
    let recipient = (0..goal.masters)
        .filter(|&k| excess(k) < 0)
        .min_by_key(|&k| (excess(k), k))?;
    // A shard with slots on two masters (after `replicasPerMaster` grew, or another layout)
    // gives from the one that is not its master first, so that one empties and can replicate
    // instead of both shrinking to half and the rest then moving inside the shard.
    let all = goal.shard_pods(donor);
    let master = shard_master(views, goal, donor);
    let from = (all.start..all.end.min(views.len()))
        .filter(|&p| views[p].owns_slots())
        .max_by_key(|&p| (Some(p) != master, views[p].slot_count()))?;
    let Some(to) = shard_master(views, goal, recipient) else {
        return Some(Action::Wait(format!(
            "shard {recipient} has no master to take slots"
        )));
    };
    let n = excess(donor).min(-excess(recipient)).max(0) as usize;
    let n = n.min(SLOTS_PER_STEP).min(views[from].slot_count());
    let mine = views[from].myself()?;
    let mut slots: Vec<u16> = mine.slot_list().rev().take(n).collect();
    slots.reverse();
    Some(batch(views, members, from, to, slots))
}

/// Fresh moves of `slots` from `from` to `to`.
fn batch(views: &[NodeView], members: &[usize], from: usize, to: usize, slots: Vec<u16>) -> Action {
    let moves = slots
        .into_iter()
        .map(|slot| SlotMove {
            slot,
            from,
            from_id: views[from].id.clone(),
            to,
            to_id: views[to].id.clone(),
            import: true,
            migrate: true,
            keys: true,
        })
        .collect();
    Action::Migrate {
        moves,
        masters: masters(views, members),
    }
}

/// A balanced shard with slots on two of its masters (a cluster formed with another layout)
/// gathers them on its master; the emptied one then replicates it.
fn consolidate(views: &[NodeView], goal: Goal, members: &[usize]) -> Option<Action> {
    for k in 0..goal.masters {
        let Some(to) = shard_master(views, goal, k) else {
            continue;
        };
        let all = goal.shard_pods(k);
        let Some(from) =
            (all.start..all.end.min(views.len())).find(|&p| p != to && views[p].owns_slots())
        else {
            continue;
        };
        let slots = views[from]
            .myself()?
            .slot_list()
            .take(SLOTS_PER_STEP)
            .collect();
        return Some(batch(views, members, from, to, slots));
    }
    None
}
