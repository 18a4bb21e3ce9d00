//! The shape every managed backend (Redis, Redis Cluster, NATS) shares: the official image run
//! non-root with a read-only root, an env var from the pod's name, named ports, and a StatefulSet
//! whose `data` volume is a claim template with storage and an emptyDir without.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, ObjectFieldSelector,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimStatus, PodSpec,
    PodTemplateSpec, ResourceRequirements, ServicePort, Volume, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::deployment::{
    image_reference, restricted_pod_security_context, restricted_security_context,
};
use super::inputs::Inputs;
use super::names;
use crate::crd::{ImageSpec, StorageSpec};

/// A TCP container port named `name`.
pub fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        protocol: Some("TCP".into()),
        name: Some(name.into()),
        container_port: port,
        ..ContainerPort::default()
    }
}

/// A TCP Service port `name` targeting the container port of the same name.
pub fn service_port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        protocol: Some("TCP".into()),
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(name.into())),
        ..ServicePort::default()
    }
}

/// An environment variable from a field of the pod (`metadata.name`, ...).
pub fn env_from_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// A backend container: `image` (or the pinned `repository:tag`) with its pull policy, the
/// resources asked for, and the restricted security context of user `uid`. The caller adds
/// command, ports, probes and mounts.
pub fn container(
    name: &str,
    image: Option<&ImageSpec>,
    (repository, tag): (&str, &str),
    uid: i64,
    resources: Option<ResourceRequirements>,
) -> Container {
    Container {
        name: name.into(),
        image: Some(image_reference(image, repository, tag)),
        image_pull_policy: image
            .and_then(|i| i.pull_policy)
            .map(|p| p.as_str().to_string()),
        resources,
        security_context: Some(restricted_security_context(uid)),
        ..Container::default()
    }
}

/// The `data` volume claim template of a managed backend's StatefulSet, with the values the API
/// server defaults spelled out (`volumeMode`, `status.phase`). `volumeClaimTemplates` is an atomic
/// list: applying it without them differs from the stored object on every server-side apply, so
/// every reconcile would write the StatefulSet (and its watch event trigger the next reconcile).
pub fn data_claim_template(storage: &StorageSpec) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".into()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: storage.storage_class_name.clone(),
            volume_mode: Some("Filesystem".into()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(storage.size.clone()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: Some(PersistentVolumeClaimStatus {
            phase: Some("Pending".into()),
            ..PersistentVolumeClaimStatus::default()
        }),
    }
}

/// A managed backend's StatefulSet.
pub struct BackendSet<'a> {
    pub inputs: &'a Inputs<'a>,
    /// StatefulSet name.
    pub name: String,
    /// The governing (headless or client) Service.
    pub service_name: String,
    pub app: &'a str,
    pub component: &'a str,
    pub replicas: i32,
    /// Start every pod at once (a cluster that must form a quorum or meet) instead of in order.
    pub parallel: bool,
    pub uid: i64,
    pub container: Container,
    /// Volumes besides `data`.
    pub volumes: Vec<Volume>,
    /// The `data` volume: a claim template, or an emptyDir when unset.
    pub storage: Option<&'a StorageSpec>,
    pub termination_grace_period_seconds: Option<i64>,
}

impl BackendSet<'_> {
    pub fn build(self) -> StatefulSet {
        let cluster = self.inputs.cluster;
        let selector = names::selector_labels(cluster, self.app, self.component);
        let mut pod_labels = names::labels(cluster, self.app, self.component);
        pod_labels.extend(selector.clone());
        let mut volumes = self.volumes;
        let claims = self.storage.map(|s| vec![data_claim_template(s)]);
        if claims.is_none() {
            volumes.push(Volume {
                name: "data".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            });
        }
        StatefulSet {
            metadata: names::child_meta(cluster, self.name, self.app, self.component),
            spec: Some(StatefulSetSpec {
                replicas: Some(self.replicas),
                service_name: Some(self.service_name),
                pod_management_policy: self.parallel.then(|| "Parallel".into()),
                selector: LabelSelector {
                    match_labels: Some(selector),
                    ..LabelSelector::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(pod_labels),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![self.container],
                        volumes: Some(volumes),
                        automount_service_account_token: Some(false),
                        security_context: Some(restricted_pod_security_context(self.uid)),
                        termination_grace_period_seconds: self.termination_grace_period_seconds,
                        ..PodSpec::default()
                    }),
                },
                volume_claim_templates: claims,
                persistent_volume_claim_retention_policy: self
                    .storage
                    .filter(|s| s.has_retention_policy() && self.inputs.capabilities.pvc_retention)
                    .map(|s| StatefulSetPersistentVolumeClaimRetentionPolicy {
                        when_deleted: s.when_deleted.map(|r| r.as_str().into()),
                        when_scaled: s.when_scaled.map(|r| r.as_str().into()),
                    }),
                ..StatefulSetSpec::default()
            }),
            ..StatefulSet::default()
        }
    }
}
