//! Removing departing nodes once their slots have moved: they are reset (so they forget the
//! cluster and stop gossiping it), then every remaining node forgets their old ids. Only then is
//! the cluster drained and the StatefulSet allowed to shrink.

use std::collections::BTreeSet;

use super::goal::Goal;
use super::nodes::NodeView;
use super::plan::Action;

/// Departing pods (past the goal's shards) still part of the cluster.
pub fn departing(views: &[NodeView], goal: Goal) -> Vec<usize> {
    (goal.pods()..views.len())
        .filter(|&p| views[p].is_joined())
        .collect()
}

/// Per remaining pod, the ids it knows that no pod has: departed (reset) nodes, or a pod that
/// lost its nodes.conf and came back under a new id. Handshakes are transient and skipped; a
/// node holding slots in that view, or the pod's own master, is never forgotten.
pub fn strangers(views: &[NodeView], goal: Goal) -> Vec<(usize, Vec<String>)> {
    let ids: BTreeSet<&str> = views.iter().map(|v| v.id.as_str()).collect();
    (0..goal.pods().min(views.len()))
        .filter_map(|p| {
            let master = views[p].myself().and_then(|m| m.master_id.as_deref());
            let forget: Vec<String> = views[p]
                .nodes
                .iter()
                .filter(|n| {
                    !n.is_myself()
                        && !n.is_handshake()
                        && !ids.contains(n.id.as_str())
                        && n.slots.is_empty()
                        && master != Some(n.id.as_str())
                })
                .map(|n| n.id.clone())
                .collect();
            (!forget.is_empty()).then_some((p, forget))
        })
        .collect()
}

/// No departing pod is in the cluster and no remaining node remembers one.
pub fn drained(views: &[NodeView], goal: Goal) -> bool {
    departing(views, goal).is_empty() && strangers(views, goal).is_empty()
}

/// Reset the departing pods (once none owns a slot), then forget them.
pub fn next(views: &[NodeView], goal: Goal) -> Option<Action> {
    let departing = departing(views, goal);
    if !departing.is_empty() {
        if let Some(p) = departing.iter().find(|&&p| views[p].owns_slots()) {
            return Some(Action::Wait(format!("departing pod {p} still owns slots")));
        }
        return Some(Action::Reset { pods: departing });
    }
    let forget = strangers(views, goal);
    (!forget.is_empty()).then_some(Action::Forget { forget })
}
