//! How many pods the managed Redis Cluster's StatefulSet holds: the spec's masters (and their
//! replicas), or more while departing masters are still being drained. The operator records the
//! masters it still needs pods for in `status.redisCluster.statefulSetMasters`; the StatefulSet
//! is sized from the spec and that status, so it never shrinks under nodes that still hold slots.

use super::redis::{masters, replicas_per_master};
use super::topology::{RedisInstance, Topology};
use crate::crd::{RedisMode, SockudoCluster};

/// The managed Redis Cluster the operator bootstraps and scales (the first one a consumer
/// uses); `status.redisCluster` describes this one.
pub fn operated(cluster: &SockudoCluster) -> Option<RedisInstance<'_>> {
    Topology::of(&cluster.spec)
        .used_redis()
        .into_iter()
        .find(|i| i.is_managed() && i.mode() == RedisMode::Cluster)
}

/// Masters the StatefulSet has pods for: the spec's, or the recorded ones while larger (a
/// scale-in not yet drained). Growing never waits: new pods are needed before anything moves.
pub fn stateful_set_masters(instance: &RedisInstance, cluster: &SockudoCluster) -> i32 {
    let spec = masters(&instance.spec.managed.clone().unwrap_or_default());
    let recorded = operated(cluster)
        .filter(|o| o.role == instance.role)
        .and(cluster.status.as_ref())
        .and_then(|s| s.redis_cluster.as_ref())
        .and_then(|c| c.stateful_set_masters);
    spec.max(recorded.unwrap_or(spec))
}

/// Pods of the StatefulSet: every master it holds and their replicas.
pub fn stateful_set_pods(instance: &RedisInstance, cluster: &SockudoCluster) -> i32 {
    let managed = instance.spec.managed.clone().unwrap_or_default();
    stateful_set_masters(instance, cluster) * (1 + replicas_per_master(&managed))
}
