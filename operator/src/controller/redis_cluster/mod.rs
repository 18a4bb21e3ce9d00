//! The managed Redis Cluster, one step at a time: formed (bootstrap), then kept at the spec's
//! shape as masters are added (slots rebalanced onto them) or removed (drained off them).
//!
//! Each call to [`step`] observes every node (`CLUSTER MYID`, `CLUSTER NODES`, `CLUSTER INFO`),
//! decides the single next action toward the goal with the pure [`plan`], takes it, and reports a
//! [`RedisClusterStatus`]. Nothing is remembered between calls: the observed cluster is the only
//! state, so a run interrupted anywhere (a migration half done included) resumes from what the
//! nodes say, and a slot that is already assigned is never assigned again.

mod client;
pub mod drain;
pub mod goal;
pub mod nodes;
pub mod plan;
pub mod rebalance;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use tracing::{debug, info};

use super::context::Config;
use crate::build::names;
use crate::build::redis::{REDIS_PORT, masters, replicas_per_master};
use crate::build::redis_cluster_size::{operated, stateful_set_pods};
use crate::crd::{RedisClusterPhase, RedisClusterStatus, SockudoCluster, UnreachablePod};

pub use goal::{Goal, SLOTS};
pub use nodes::{NodeEntry, NodeView, parse_nodes};
pub use plan::{Action, SlotMove, plan};

/// A node that does not answer within this is treated as not ready (Pending), not waited for.
const TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("Redis node {address}: {source}")]
    Redis {
        address: String,
        source: redis::RedisError,
    },
    #[error("Redis node {0} did not answer in time")]
    Timeout(String),
    #[error("Redis node address {0} is not host:port")]
    Address(String),
    #[error("cannot resolve Redis node {address}: {source}")]
    Resolve {
        address: String,
        source: std::io::Error,
    },
    #[error("unexpected CLUSTER NODES line from {address}: {line}")]
    Parse { address: String, line: String },
}

/// The status the views and the chosen action amount to.
pub fn status(views: &[NodeView], goal: Goal, action: &Action) -> RedisClusterStatus {
    let members = plan::members(views, goal);
    let masters = members.iter().filter(|&&p| views[p].owns_slots()).count();
    let replicas = members
        .iter()
        .filter(|&&p| views[p].myself().is_some_and(NodeEntry::is_replica))
        .count();
    let slots_to_move = rebalance::slots_to_move(views, goal);
    let drained = drain::drained(views, goal);
    let phase = match action {
        Action::None => RedisClusterPhase::Ready,
        _ if !drained && views.len() > goal.pods() => RedisClusterPhase::Draining,
        Action::Migrate { .. } | Action::Stabilize { .. } => RedisClusterPhase::Rebalancing,
        _ if slots_to_move > 0 => RedisClusterPhase::Rebalancing,
        _ => RedisClusterPhase::Bootstrapping,
    };
    // Until the departing nodes are gone from the cluster, the StatefulSet keeps their pods.
    let kept = if drained {
        goal.pods()
    } else {
        views.len().max(goal.pods())
    };
    RedisClusterStatus {
        phase,
        masters: masters as i32,
        replicas: replicas as i32,
        slots_assigned: plan::owned_slots(views).len() as i32,
        slots_to_move: slots_to_move as i32,
        stateful_set_masters: Some(goal.shards_in(kept) as i32),
        stateful_set_pods: Some(kept as i32),
        unreachable: Vec::new(),
        last_step: Some(action.describe()),
    }
}

/// The status while some pods do not answer (`failed`: pod and why): `Pending`, nothing done,
/// and every pod kept, since nothing is known to be drained. A departing pod among them blocks
/// the drain until it answers, which the `RedisClusterStalled` condition tells a human.
pub fn unreachable(pods: usize, goal: Goal, failed: &[(usize, String)]) -> Step {
    let kept = pods.max(goal.pods());
    let why: Vec<String> = failed.iter().map(|(_, e)| e.clone()).collect();
    let why = why.join("; ");
    Step {
        status: RedisClusterStatus {
            stateful_set_masters: Some(goal.shards_in(kept) as i32),
            stateful_set_pods: Some(kept as i32),
            unreachable: failed
                .iter()
                .map(|(p, error)| UnreachablePod {
                    ordinal: *p as i32,
                    departing: *p >= goal.pods(),
                    error: error.clone(),
                })
                .collect(),
            last_step: Some(format!("waiting for nodes: {why}")),
            ..RedisClusterStatus::default()
        },
        action: Action::Wait(why),
    }
}

/// How to reach the nodes: `host:port` per pod index, and the password (`requirepass`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nodes {
    pub addresses: Vec<String>,
    pub password: Option<String>,
}

/// The managed Redis Cluster of a SockudoCluster, as the operator bootstraps and scales it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The StatefulSet (and headless Service) name.
    pub name: String,
    pub goal: Goal,
    /// Every pod of the StatefulSet: the goal's, then departing ones not yet drained.
    pub nodes: Nodes,
    /// Every address is overridden in the [`Config`] (tests): no need to wait for the pods.
    pub overridden: bool,
}

/// What to bootstrap, if the SockudoCluster uses a managed Redis Cluster. Pods are reached by
/// their stable DNS names through the headless Service (or the test override); the password is
/// the generated one of the auth Secret (`requirepass`/`masterauth` in its `auth.conf`). The
/// pods are the StatefulSet's, sized as the builder sizes it (departing masters included).
pub fn target(
    cluster: &SockudoCluster,
    generated: &BTreeMap<String, String>,
    config: &Config,
) -> Option<Target> {
    let instance = operated(cluster)?;
    let managed = instance.spec.managed.clone().unwrap_or_default();
    let goal = Goal {
        masters: usize::try_from(masters(&managed)).ok()?.max(1),
        replicas_per_master: usize::try_from(replicas_per_master(&managed)).unwrap_or(0),
    };
    let kept = usize::try_from(stateful_set_pods(&instance, cluster))
        .unwrap_or(goal.pods())
        .max(goal.pods());
    let name = instance.managed_name(cluster);
    let ns = names::namespace(cluster);
    let in_cluster: Vec<String> = (0..kept)
        .map(|i| format!("{name}-{i}.{name}.{ns}.svc:{REDIS_PORT}"))
        .collect();
    let overridden = in_cluster
        .iter()
        .all(|a| config.backend_addresses.contains_key(a));
    Some(Target {
        nodes: Nodes {
            addresses: in_cluster
                .iter()
                .map(|a| config.backend_address(a))
                .collect(),
            password: generated.get(&instance.auth_secret(cluster)).cloned(),
        },
        name,
        goal,
        overridden,
    })
}

/// Observes every node, each on its own: pod `i`'s view or why it did not answer.
pub async fn observe_each(nodes: &Nodes) -> Vec<Result<NodeView, ClusterError>> {
    let password = nodes.password.as_deref();
    futures::future::join_all(nodes.addresses.iter().map(|a| async move {
        tokio::time::timeout(TIMEOUT * 2, client::observe(a, password))
            .await
            .map_err(|_| ClusterError::Timeout(a.clone()))?
    }))
    .await
}

/// Observes every node; the first that cannot be reached is the error.
pub async fn observe_all(nodes: &Nodes) -> Result<Vec<NodeView>, ClusterError> {
    observe_each(nodes).await.into_iter().collect()
}

/// An observed cluster and the action it calls for, not yet taken.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The cluster before the action, with the action as `lastStep`.
    pub status: RedisClusterStatus,
    pub action: Action,
}

impl Step {
    pub async fn take(&self, nodes: &Nodes) -> Result<(), ClusterError> {
        if !matches!(self.action, Action::None | Action::Wait(_)) {
            info!(step = %self.action.describe(), phase = ?self.status.phase, "Redis Cluster");
        }
        client::act(nodes, &self.action).await
    }

    /// The status to record when taking the action failed: what was observed, and why.
    pub fn failed(&self, error: &ClusterError) -> RedisClusterStatus {
        RedisClusterStatus {
            last_step: Some(format!("{} failed: {error}", self.action.describe())),
            ..self.status.clone()
        }
    }
}

/// Observes every node and plans. An unreachable node gives `Pending` (and no action) rather
/// than an error, since pods not being up yet is the normal start; `Pending` keeps every pod in
/// the StatefulSet, since nothing is known to be drained.
pub async fn next_step(nodes: &Nodes, goal: Goal) -> Step {
    let observed = observe_each(nodes).await;
    let failed: Vec<(usize, String)> = observed
        .iter()
        .enumerate()
        .filter_map(|(p, r)| r.as_ref().err().map(|e| (p, e.to_string())))
        .collect();
    if !failed.is_empty() {
        debug!(?failed, "Redis Cluster nodes not reachable yet");
        return unreachable(nodes.addresses.len(), goal, &failed);
    }
    let views: Vec<NodeView> = observed.into_iter().filter_map(Result::ok).collect();
    let action = plan(&views, goal);
    Step {
        status: status(&views, goal, &action),
        action,
    }
}

/// One step: observe, plan, act. The status describes the cluster before the action (with the
/// action as `lastStep`).
pub async fn step(nodes: &Nodes, goal: Goal) -> Result<RedisClusterStatus, ClusterError> {
    let next = next_step(nodes, goal).await;
    next.take(nodes).await?;
    Ok(next.status)
}

/// Steps until Ready or `max_steps` have been taken, pausing `pause` between steps; for tests
/// and tools (the controller takes one step per reconcile).
pub async fn run(
    nodes: &Nodes,
    goal: Goal,
    max_steps: usize,
    pause: Duration,
) -> Result<RedisClusterStatus, ClusterError> {
    let mut last = RedisClusterStatus::default();
    for _ in 0..max_steps {
        last = step(nodes, goal).await?;
        if last.phase == RedisClusterPhase::Ready {
            break;
        }
        tokio::time::sleep(pause).await;
    }
    Ok(last)
}
