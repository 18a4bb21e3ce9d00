//! `storage.whenDeleted` / `whenScaled` of a managed backend become its StatefulSet's
//! `persistentVolumeClaimRetentionPolicy`; unset, the StatefulSet has none (the API server's
//! default, Retain); on an API server older than 1.27 the policy is left out and reported.

use k8s_openapi::api::apps::v1::StatefulSetPersistentVolumeClaimRetentionPolicy as Policy;
use sockudo_operator::build::{Capabilities, Child, Desired, RETENTION_SKIPPED, desired};
use sockudo_operator::crd::ClaimRetention;

use super::support::Example;

fn policy(d: &Desired, name: &str) -> Option<Policy> {
    d.children
        .iter()
        .find_map(|c| match c {
            Child::StatefulSet(s) if c.name() == name => Some(s),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no StatefulSet {name}"))
        .spec
        .as_ref()
        .unwrap()
        .persistent_volume_claim_retention_policy
        .clone()
}

#[test]
fn unset_renders_no_policy() {
    let ex = Example::load("redis-managed.yaml");
    let d = desired(&ex.inputs());
    assert_eq!(policy(&d, "redis-managed-redis"), None);
    assert!(!d.skipped.iter().any(|s| s == RETENTION_SKIPPED));
}

#[test]
fn set_renders_the_policy_and_an_old_api_server_reports_it_skipped() {
    let mut ex = Example::load("redis-managed.yaml");
    let storage = ex.managed_redis().storage.as_mut().expect("storage");
    storage.when_deleted = Some(ClaimRetention::Delete);
    let d = desired(&ex.inputs());
    assert_eq!(
        policy(&d, "redis-managed-redis"),
        Some(Policy {
            when_deleted: Some("Delete".into()),
            when_scaled: None,
        })
    );
    assert!(!d.skipped.iter().any(|s| s == RETENTION_SKIPPED));

    let old = sockudo_operator::build::Inputs {
        capabilities: Capabilities {
            pvc_retention: false,
            ..Capabilities::ALL
        },
        ..ex.inputs()
    };
    let d = desired(&old);
    assert_eq!(policy(&d, "redis-managed-redis"), None);
    assert_eq!(
        d.skipped.iter().filter(|s| *s == RETENTION_SKIPPED).count(),
        1
    );
}

#[test]
fn the_field_names_are_the_kubernetes_ones() {
    let mut ex = Example::load("redis-managed.yaml");
    let storage = ex.managed_redis().storage.as_mut().expect("storage");
    storage.when_scaled = Some(ClaimRetention::Delete);
    let json = serde_json::to_value(&ex.cluster.spec).unwrap();
    assert_eq!(
        json["redis"]["managed"]["storage"]["whenScaled"],
        serde_json::json!("Delete")
    );
}
