//! How many pods the managed Redis Cluster's StatefulSet holds: the spec's masters and their
//! replicas, or more while departing pods are still being drained. The operator records the pods
//! it still needs in `status.redisCluster.statefulSetPods`; the StatefulSet is sized from the spec
//! and that status, so it never shrinks under nodes that still hold slots or are still known to
//! the cluster. Pods, not masters, because changing `replicasPerMaster` changes how many pods a
//! master stands for: 3 masters with 1 replica each are 6 pods, and going to 0 replicas must keep
//! those 6 until the last 3 are drained.

use super::redis::{cluster_pod_count, replicas_per_master};
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

/// Pods of the StatefulSet: the spec's, or the recorded ones while more (a scale-in not yet
/// drained). Growing never waits: new pods are needed before anything moves. A status written
/// before `statefulSetPods` existed records masters, counted in the current layout.
pub fn stateful_set_pods(instance: &RedisInstance, cluster: &SockudoCluster) -> i32 {
    let managed = instance.spec.managed.clone().unwrap_or_default();
    let spec = cluster_pod_count(&managed);
    let recorded = operated(cluster)
        .filter(|o| o.role == instance.role)
        .and(cluster.status.as_ref())
        .and_then(|s| s.redis_cluster.as_ref())
        .and_then(|c| {
            c.stateful_set_pods.or_else(|| {
                c.stateful_set_masters
                    .map(|m| m * (1 + replicas_per_master(&managed)))
            })
        });
    spec.max(recorded.unwrap_or(spec))
}
