//! Re-creating a StatefulSet whose immutable fields changed (its `volumeClaimTemplates`, e.g. the
//! storage size of a managed Redis; its `serviceName`, `selector` or `podManagementPolicy`).
//!
//! The API server refuses such an apply (422, "updates to statefulset spec for fields other
//! than ... are forbidden"). The operator then deletes the StatefulSet with `propagationPolicy:
//! Orphan`, so its pods and PersistentVolumeClaims stay and keep serving, and applies it again; the
//! new StatefulSet adopts the pods (same selector) and the claims (same names). Existing claims
//! keep their size: the template only shapes claims created from now on.
//!
//! At most once per change: each applied StatefulSet carries a hash of its immutable fields.
//! When the refused apply would not change them (the live object already has that hash), the
//! refusal has another cause and re-creating would only loop, so the error is reported instead.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::{DeleteParams, Preconditions, PropagationPolicy};
use kube::{Api, ResourceExt};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::error::Error;

/// StatefulSet annotation: the hash of the immutable fields it was applied with.
pub const IMMUTABLE_FIELDS_ANNOTATION: &str = "sockudo.io/immutable-fields-hash";
/// How long the orphaning delete may take (the garbage collector removes the `orphan`
/// finalizer once the pods are released). Longer: the next reconcile waits again.
const GONE_TIMEOUT: Duration = Duration::from_secs(60);

/// Hash of the fields of `set` the API server does not let an update change.
pub fn immutable_fields_hash(set: &StatefulSet) -> String {
    let spec = set.spec.as_ref();
    let fields = json!({
        "selector": spec.map(|s| &s.selector),
        "serviceName": spec.and_then(|s| s.service_name.as_ref()),
        "podManagementPolicy": spec.and_then(|s| s.pod_management_policy.as_ref()),
        "volumeClaimTemplates": spec.and_then(|s| s.volume_claim_templates.as_ref()),
    });
    let digest = Sha256::digest(fields.to_string().as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// True for the API server's refusal to change an immutable StatefulSet field.
pub fn is_immutable_field_change(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s)
        if s.code == 422 && s.message.contains("updates to statefulset spec for fields other than"))
}

/// Deletes the StatefulSet `name`, orphaning its pods and claims, and waits until it is gone.
/// Returns false (and deletes nothing) when the live StatefulSet was already applied with the
/// immutable fields `hash`: re-creating it would not get the apply through.
pub async fn delete_orphaning(
    api: &Api<StatefulSet>,
    name: &str,
    hash: &str,
) -> Result<bool, Error> {
    let Some(live) = api.get_opt(name).await? else {
        return Ok(true);
    };
    if live
        .annotations()
        .get(IMMUTABLE_FIELDS_ANNOTATION)
        .is_some_and(|h| h == hash)
    {
        return Ok(false);
    }
    let uid = live.uid();
    if live.metadata.deletion_timestamp.is_none() {
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Orphan),
            // Only the object we looked at, not one created meanwhile.
            preconditions: Some(Preconditions {
                uid: uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        api.delete(name, &params).await?;
    }
    let started = Instant::now();
    loop {
        match api.get_opt(name).await? {
            Some(s) if s.uid() == uid => {}
            _ => return Ok(true),
        }
        if started.elapsed() > GONE_TIMEOUT {
            return Err(Error::Recreate(format!(
                "StatefulSet {name} is still being deleted after {GONE_TIMEOUT:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn set(size: &str, service: &str) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "r"},
            "spec": {
                "serviceName": service,
                "selector": {"matchLabels": {"a": "b"}},
                "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"},
                    "spec": {"resources": {"requests": {"storage": size}}}}],
            }
        }))
        .unwrap()
    }

    #[test]
    fn the_hash_follows_the_immutable_fields_only() {
        let base = immutable_fields_hash(&set("1Gi", "r"));
        assert_ne!(base, immutable_fields_hash(&set("2Gi", "r")));
        assert_ne!(base, immutable_fields_hash(&set("1Gi", "other")));
        let mut replicas = set("1Gi", "r");
        replicas.spec.as_mut().unwrap().replicas = Some(5);
        replicas
            .spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .containers[0]
            .image = Some("j".into());
        assert_eq!(base, immutable_fields_hash(&replicas));
    }

    #[test]
    fn only_the_forbidden_update_is_an_immutable_field_change() {
        let api = |code: u16, message: &str| {
            let mut s = Status::failure(message, "Invalid");
            s.code = code;
            kube::Error::Api(Box::new(s))
        };
        assert!(is_immutable_field_change(&api(
            422,
            "StatefulSet.apps \"r\" is invalid: spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
        )));
        assert!(!is_immutable_field_change(&api(
            422,
            "spec.replicas: Invalid value: -1"
        )));
        assert!(!is_immutable_field_change(&api(409, "conflict")));
    }
}
