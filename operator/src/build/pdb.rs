//! The PodDisruptionBudget: `maxUnavailable` (never `minAvailable`, which blocks node drains of a
//! single replica) and only when there is more than one replica.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::inputs::Inputs;
use super::names;

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
    Some(PodDisruptionBudget {
        metadata: names::child_meta(
            cluster,
            names::client_service(cluster),
            "sockudo",
            names::SERVER_COMPONENT,
        ),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(spec.max_unavailable.unwrap_or(1))),
            selector: Some(LabelSelector {
                match_labels: Some(names::selector_labels(
                    cluster,
                    "sockudo",
                    names::SERVER_COMPONENT,
                )),
                ..LabelSelector::default()
            }),
            // A crash-looping pod must not block a drain.
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}
