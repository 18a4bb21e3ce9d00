//! Conditions with Kubernetes semantics: `lastTransitionTime` moves only when a condition's status
//! flips, so a reconcile that changes nothing produces an identical status (and writes nothing).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::ConditionType;

/// A condition as decided by one reconcile, before timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub type_: ConditionType,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Wanted {
    pub fn new(
        type_: ConditionType,
        status: bool,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Wanted {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

fn status_str(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

/// The new condition list: `wanted` in order, each keeping its old `lastTransitionTime` unless its
/// status flipped. Conditions not wanted any more are dropped.
pub fn merge(
    old: &[Condition],
    wanted: &[Wanted],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    wanted
        .iter()
        .map(|w| {
            let previous = old.iter().find(|c| c.type_ == w.type_.as_str());
            let status = status_str(w.status);
            let last_transition_time = match previous {
                Some(p) if p.status == status => p.last_transition_time.clone(),
                _ => now.clone(),
            };
            Condition {
                type_: w.type_.as_str().into(),
                status: status.into(),
                reason: w.reason.into(),
                message: w.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// Conditions whose status differs between two lists (new ones included): what deserves an Event.
pub fn flipped<'a>(old: &[Condition], new: &'a [Condition]) -> Vec<&'a Condition> {
    new.iter()
        .filter(|n| {
            old.iter()
                .find(|o| o.type_ == n.type_)
                .is_none_or(|o| o.status != n.status || o.reason != n.reason)
        })
        .collect()
}

/// A condition that flipped to this deserves a Warning Event (a human may have to act), not a
/// Normal one: `Degraded`, the cluster not `Ready` for a reason other than starting up, the
/// managed Redis Cluster stalled, or volumes not grown for a reason other than waiting to be bound.
pub fn is_warning(c: &Condition) -> bool {
    let is = |t: ConditionType, status: &str| c.type_ == t.as_str() && c.status == status;
    is(ConditionType::Degraded, "True")
        || is(ConditionType::RedisClusterStalled, "True")
        || (is(ConditionType::VolumesResized, "False") && c.reason != "ClaimNotBound")
        || (is(ConditionType::Ready, "False")
            && c.reason != "Pending"
            && c.reason != "PodsNotReady")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    #[test]
    fn transition_time_moves_only_on_flips() {
        let t0 = time("2024-01-01T00:00:00Z");
        let t1 = time("2024-01-01T01:00:00Z");
        let ready = |b| Wanted::new(ConditionType::Ready, b, "R", "m");
        let first = merge(&[], &[ready(false)], Some(1), &t0);
        assert_eq!(first[0].last_transition_time, t0);
        let same = merge(&first, &[ready(false)], Some(1), &t1);
        assert_eq!(same, first, "no flip, no change");
        let flipped_ = merge(&first, &[ready(true)], Some(1), &t1);
        assert_eq!(flipped_[0].last_transition_time, t1);
        assert_eq!(flipped(&first, &flipped_).len(), 1);
        assert!(flipped(&first, &same).is_empty());
    }

    #[test]
    fn warnings_are_what_a_human_may_have_to_act_on() {
        let c = |type_: &str, status: &str, reason: &str| Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: "m".into(),
            observed_generation: None,
            last_transition_time: time("2024-01-01T00:00:00Z"),
        };
        assert!(is_warning(&c("Degraded", "True", "InvalidSpec")));
        assert!(is_warning(&c("Ready", "False", "ApplyFailed")));
        assert!(is_warning(&c(
            "RedisClusterStalled",
            "True",
            "DepartingPodUnreachable"
        )));
        assert!(!is_warning(&c("Ready", "False", "PodsNotReady")));
        assert!(!is_warning(&c(
            "RedisClusterStalled",
            "False",
            "AsExpected"
        )));
        assert!(!is_warning(&c("RedisReady", "False", "ClusterDraining")));
    }
}
