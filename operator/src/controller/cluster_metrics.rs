//! `sockudo_operator_cluster_ready`: one series per SockudoCluster the operator watches, 1 when its
//! `Ready` condition is `True`. Rendered at scrape time from the controller's cache, so a deleted
//! cluster's series disappears with it (a counter kept by the reconciles would go stale).
//!
//! The labels are `sockudocluster` and `sockudocluster_namespace`, not `namespace`: Prometheus
//! sets `namespace` to the operator's own namespace when it scrapes the operator.

use std::fmt::Write;
use std::sync::Arc;

use kube::Resource;
use kube::core::DeserializeGuard;

use crate::crd::SockudoCluster;

pub fn render(clusters: &[Arc<DeserializeGuard<SockudoCluster>>]) -> String {
    let mut rows: Vec<(String, String, u8)> = clusters
        .iter()
        .map(|guard| {
            let meta = guard.meta();
            let ready = guard.0.as_ref().is_ok_and(is_ready);
            (
                meta.namespace.clone().unwrap_or_default(),
                meta.name.clone().unwrap_or_default(),
                u8::from(ready),
            )
        })
        .collect();
    rows.sort();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP sockudo_operator_cluster_ready 1 when the SockudoCluster's Ready condition is True \
         (an object the operator cannot read counts as not ready)."
    );
    let _ = writeln!(out, "# TYPE sockudo_operator_cluster_ready gauge");
    for (ns, name, ready) in rows {
        let _ = writeln!(
            out,
            "sockudo_operator_cluster_ready{{sockudocluster_namespace=\"{ns}\",sockudocluster=\"{name}\"}} {ready}"
        );
    }
    out
}

fn is_ready(cluster: &SockudoCluster) -> bool {
    let generation = cluster.meta().generation;
    cluster.status.as_ref().is_some_and(|s| {
        // A status about an older spec says nothing about this one.
        (generation.is_none() || s.observed_generation == generation) && s.is_ready()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{SockudoClusterSpec, SockudoClusterStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn cluster(
        name: &str,
        ready: Option<&str>,
        observed: i64,
    ) -> Arc<DeserializeGuard<SockudoCluster>> {
        let spec: SockudoClusterSpec = serde_json::from_value(serde_json::json!({
            "replicas": 1, "apps": [{"id": "1", "secretRef": {"name": "s"}}]
        }))
        .unwrap();
        let mut c = SockudoCluster::new(name, spec);
        c.metadata.namespace = Some("apps".into());
        c.metadata.generation = Some(2);
        c.status = ready.map(|status| SockudoClusterStatus {
            observed_generation: Some(observed),
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: status.into(),
                reason: "R".into(),
                message: String::new(),
                last_transition_time: Time("2026-01-01T00:00:00Z".parse().unwrap()),
                observed_generation: Some(observed),
            }],
            ..Default::default()
        });
        Arc::new(DeserializeGuard(Ok(c)))
    }

    #[test]
    fn one_series_per_cluster() {
        let text = render(&[
            cluster("b-ready", Some("True"), 2),
            cluster("a-not-ready", Some("False"), 2),
            cluster("c-no-status", None, 0),
            cluster("d-stale-status", Some("True"), 1),
        ]);
        let series: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            series,
            [
                r#"sockudo_operator_cluster_ready{sockudocluster_namespace="apps",sockudocluster="a-not-ready"} 0"#,
                r#"sockudo_operator_cluster_ready{sockudocluster_namespace="apps",sockudocluster="b-ready"} 1"#,
                r#"sockudo_operator_cluster_ready{sockudocluster_namespace="apps",sockudocluster="c-no-status"} 0"#,
                r#"sockudo_operator_cluster_ready{sockudocluster_namespace="apps",sockudocluster="d-stale-status"} 0"#,
            ]
        );
    }
}
