//! `crds/` is generated from the code; this fails when someone forgets to regenerate it.

use std::path::PathBuf;

use sockudo_operator::crd::generate::{CHART_CRD_PATH, CRD_PATH, REGENERATE, crd_yaml};

#[test]
fn crds_dir_and_chart_copy_match_the_code() {
    for file in [CRD_PATH, CHART_CRD_PATH] {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(file);
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == crd_yaml(),
            "{file} is out of date with the Rust types; regenerate it with:\n    {REGENERATE}"
        );
    }
}

#[test]
fn rbac_file_matches_the_code() {
    use sockudo_operator::rbac::{RBAC_PATH, cluster_role_yaml};
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(RBAC_PATH);
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == cluster_role_yaml(),
        "{RBAC_PATH} is out of date with the code; regenerate it with:\n    {REGENERATE}"
    );
}

/// Every kind any example produces can be applied, listed (pruning) and deleted under the rules.
#[test]
fn rbac_covers_every_child_kind() {
    use sockudo_operator::build::desired;
    use sockudo_operator::rbac::allows;
    let resource = |kind: &str| match kind {
        "ConfigMap" => ("", "configmaps"),
        "Secret" => ("", "secrets"),
        "Service" => ("", "services"),
        "Deployment" => ("apps", "deployments"),
        "StatefulSet" => ("apps", "statefulsets"),
        "Ingress" => ("networking.k8s.io", "ingresses"),
        "PodDisruptionBudget" => ("policy", "poddisruptionbudgets"),
        "HorizontalPodAutoscaler" => ("autoscaling", "horizontalpodautoscalers"),
        "ServiceMonitor" => ("monitoring.coreos.com", "servicemonitors"),
        other => panic!("no RBAC mapping for {other}"),
    };
    for name in super::support::example_names() {
        let example = super::support::Example::load(&name);
        for child in desired(&example.inputs()).children {
            let (group, plural) = resource(child.kind());
            for verb in ["get", "list", "watch", "create", "patch", "delete"] {
                assert!(allows(group, plural, verb), "{verb} {group}/{plural}");
            }
        }
    }
    assert!(allows("sockudo.io", "sockudoclusters/status", "patch"));
    assert!(
        allows("events.k8s.io", "events", "create") && allows("events.k8s.io", "events", "patch")
    );
    assert!(allows("coordination.k8s.io", "leases", "update"));
}
