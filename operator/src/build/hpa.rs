//! The HorizontalPodAutoscaler. It scales the SockudoCluster through its scale subresource, so the
//! operator stays the only writer of the Deployment's replicas (no tug of war with the HPA).

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use kube::ResourceExt;

use super::inputs::Inputs;
use super::names;
use crate::crd::{GROUP, VERSION};

/// CPU target when the user sets none.
pub const DEFAULT_CPU_UTILIZATION: i32 = 70;

fn resource_metric(name: &str, utilization: i32) -> MetricSpec {
    MetricSpec {
        type_: "Resource".into(),
        resource: Some(ResourceMetricSource {
            name: name.into(),
            target: MetricTarget {
                type_: "Utilization".into(),
                average_utilization: Some(utilization),
                ..MetricTarget::default()
            },
        }),
        ..MetricSpec::default()
    }
}

pub fn hpa(inputs: &Inputs) -> Option<HorizontalPodAutoscaler> {
    let cluster = inputs.cluster;
    let spec = cluster.spec.autoscaling.as_ref()?;
    let mut metrics = Vec::new();
    let cpu = match (spec.target_cpu_utilization, spec.target_memory_utilization) {
        (None, None) => Some(DEFAULT_CPU_UTILIZATION),
        (cpu, _) => cpu,
    };
    if let Some(cpu) = cpu {
        metrics.push(resource_metric("cpu", cpu));
    }
    if let Some(memory) = spec.target_memory_utilization {
        metrics.push(resource_metric("memory", memory));
    }
    Some(HorizontalPodAutoscaler {
        metadata: names::child_meta(
            cluster,
            names::client_service(cluster),
            "sockudo",
            names::SERVER_COMPONENT,
        ),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some(format!("{GROUP}/{VERSION}")),
                kind: "SockudoCluster".into(),
                name: cluster.name_any(),
            },
            min_replicas: Some(spec.min_replicas),
            max_replicas: spec.max_replicas,
            metrics: Some(metrics),
            ..HorizontalPodAutoscalerSpec::default()
        }),
        ..HorizontalPodAutoscaler::default()
    })
}
