//! Reading readiness off the live workloads returned by the apply.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::ResourceExt;

use super::apply::Applied;
use super::status::{Observed, Workload};
use crate::build::names::LABEL_NAME;
use crate::build::topology::Topology;
use crate::crd::{RedisMode, SockudoCluster};

pub fn deployment(d: &Deployment) -> Workload {
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = d.status.clone().unwrap_or_default();
    Workload {
        name: d.name_any(),
        desired,
        ready: status.ready_replicas.unwrap_or(0),
        updated: status.updated_replicas.unwrap_or(0),
        observed_current: status.observed_generation >= d.metadata.generation,
    }
}

pub fn stateful_set(s: &StatefulSet) -> Workload {
    let desired = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = s.status.clone().unwrap_or_default();
    Workload {
        name: s.name_any(),
        desired,
        ready: status.ready_replicas.unwrap_or(0),
        updated: status.updated_replicas.unwrap_or(0),
        observed_current: status.observed_generation >= s.metadata.generation,
    }
}

fn app_of(s: &StatefulSet) -> Option<&str> {
    s.metadata
        .labels
        .as_ref()?
        .get(LABEL_NAME)
        .map(String::as_str)
}

pub fn observed(cluster: &SockudoCluster, applied: &Applied) -> Observed {
    let topology = Topology::of(&cluster.spec);
    let redis: Vec<Workload> = applied
        .stateful_sets
        .iter()
        .filter(|s| app_of(s) == Some("redis"))
        .map(stateful_set)
        .collect();
    let managed_cluster = topology
        .used_redis()
        .iter()
        .any(|i| i.is_managed() && i.mode() == RedisMode::Cluster);
    Observed {
        server: applied.deployment.as_ref().map(deployment),
        nats: applied
            .stateful_sets
            .iter()
            .filter(|s| app_of(s) == Some("nats"))
            .map(stateful_set)
            .collect(),
        external_redis: topology.used_redis().iter().any(|i| !i.is_managed()),
        external_nats: topology.nats.is_some_and(|n| n.external.is_some()),
        // Until the bootstrap has run, a managed Redis Cluster is not ready however its pods are.
        redis_cluster: managed_cluster.then(|| {
            cluster
                .status
                .as_ref()
                .and_then(|s| s.redis_cluster.clone())
                .unwrap_or_default()
        }),
        redis,
        volumes: None,
    }
}
