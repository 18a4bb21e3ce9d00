//! PodDisruptionBudgets: `maxUnavailable` (never `minAvailable`, which blocks node drains of a
//! single replica) and only when there is more than one pod. One for the server pods, one for
//! each managed backend StatefulSet with more than one pod (a Redis Cluster, a NATS cluster).

use std::collections::BTreeMap;

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::inputs::Inputs;
use super::names;

/// What [`Desired::skipped`](super::Desired) says when the cluster has no `policy/v1`.
pub const SKIPPED: &str = "PodDisruptionBudget (policy/v1)";

fn budget(
    metadata: ObjectMeta,
    selector: BTreeMap<String, String>,
    max_unavailable: i32,
) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata,
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(max_unavailable)),
            selector: Some(LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            }),
            // A crash-looping pod must not block a drain.
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

/// The server pods' budget.
pub fn pdb(inputs: &Inputs) -> Option<PodDisruptionBudget> {
    let cluster = inputs.cluster;
    let spec = cluster
        .spec
        .pod_disruption_budget
        .clone()
        .unwrap_or_default();
    let replicas = cluster
        .spec
        .autoscaling
        .as_ref()
        .map_or(cluster.spec.replicas, |a| {
            a.min_replicas.max(cluster.spec.replicas)
        });
    if !spec.enabled.unwrap_or(true) || replicas <= 1 {
        return None;
    }
    Some(budget(
        names::child_meta(
            cluster,
            names::client_service(cluster),
            "sockudo",
            names::SERVER_COMPONENT,
        ),
        names::selector_labels(cluster, "sockudo", names::SERVER_COMPONENT),
        spec.max_unavailable.unwrap_or(1),
    ))
}

/// The budget of a managed backend's StatefulSet `name` (same name, same selector): one pod at a
/// time, so a node drain never takes a Redis master and its replica, or a NATS quorum, at once.
/// None for a single pod (a standalone Redis), which a budget would only keep from draining.
pub fn backend_pdb(
    inputs: &Inputs,
    name: String,
    app: &str,
    component: &str,
    pods: i32,
) -> Option<PodDisruptionBudget> {
    (pods > 1).then(|| {
        budget(
            names::child_meta(inputs.cluster, name, app, component),
            names::selector_labels(inputs.cluster, app, component),
            1,
        )
    })
}
