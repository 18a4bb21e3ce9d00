//! The client Service (WebSocket and HTTP API) and the metrics Service.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::deployment::{HTTP_PORT, METRICS_PORT};
use super::inputs::Inputs;
use super::names;

fn port(name: &str, port: i32, target: &str) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(target.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

pub fn client_service(inputs: &Inputs) -> Service {
    let cluster = inputs.cluster;
    let spec = cluster.spec.service.clone().unwrap_or_default();
    let mut metadata = names::child_meta(
        cluster,
        names::client_service(cluster),
        "sockudo",
        names::SERVER_COMPONENT,
    );
    metadata.annotations = spec.annotations.clone();
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(spec.type_.map_or("ClusterIP", |t| t.as_str()).into()),
            selector: Some(names::selector_labels(
                cluster,
                "sockudo",
                names::SERVER_COMPONENT,
            )),
            ports: Some(vec![port("http", spec.port.unwrap_or(HTTP_PORT), "http")]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// Present when metrics are enabled; kept apart from the client Service so a public load
/// balancer never exposes metrics.
pub fn metrics_service(inputs: &Inputs) -> Option<Service> {
    let cluster = inputs.cluster;
    let enabled = cluster
        .spec
        .metrics
        .as_ref()
        .and_then(|m| m.enabled)
        .unwrap_or(true);
    enabled.then(|| Service {
        metadata: names::child_meta(
            cluster,
            names::metrics_service(cluster),
            "sockudo",
            "metrics",
        ),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(names::selector_labels(
                cluster,
                "sockudo",
                names::SERVER_COMPONENT,
            )),
            ports: Some(vec![port("metrics", METRICS_PORT, "metrics")]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

pub fn services(inputs: &Inputs) -> Vec<Service> {
    std::iter::once(client_service(inputs))
        .chain(metrics_service(inputs))
        .collect()
}
