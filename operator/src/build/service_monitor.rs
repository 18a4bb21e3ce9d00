//! The optional ServiceMonitor of the Prometheus Operator, built untyped since its CRD may be
//! absent (the controller only applies it when discovery finds the API).

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

use super::inputs::Inputs;
use super::names;

pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"),
        "servicemonitors",
    )
}

pub fn service_monitor(inputs: &Inputs) -> Option<DynamicObject> {
    let cluster = inputs.cluster;
    let metrics = cluster.spec.metrics.as_ref()?;
    let sm = metrics.service_monitor.as_ref()?;
    if !metrics.enabled.unwrap_or(true) || !sm.enabled.unwrap_or(true) {
        return None;
    }
    let mut meta = names::child_meta(
        cluster,
        names::metrics_service(cluster),
        "sockudo",
        "metrics",
    );
    if let Some(extra) = &sm.labels {
        meta.labels.get_or_insert_default().extend(extra.clone());
    }
    let mut endpoint = json!({"port": "metrics", "path": "/metrics"});
    if let Some(interval) = &sm.interval {
        endpoint["interval"] = json!(interval);
    }
    let mut obj = DynamicObject::new(&names::metrics_service(cluster), &api_resource());
    obj.metadata = meta;
    obj.data = json!({
        "spec": {
            "selector": {"matchLabels": names::selector_labels(cluster, "sockudo", "metrics")},
            "endpoints": [endpoint],
        }
    });
    Some(obj)
}
