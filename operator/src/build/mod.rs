//! Pure builders: from a SockudoCluster and its [`Inputs`] to every child object, with no IO.
//! One module per kind of child; [`desired`] puts them together.

pub mod backend_set;
pub mod configmap;
pub mod credentials;
pub mod deployment;
pub mod hash;
pub mod hpa;
pub mod ingress;
pub mod inputs;
pub mod interconnect;
pub mod names;
pub mod nats;
pub mod pdb;
pub mod redis;
pub mod redis_cluster_size;
pub mod references;
pub mod server_config;
pub mod service_monitor;
pub mod services;
pub mod topology;
pub mod warnings;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::DynamicObject;
use serde::Serialize;

pub use inputs::{Capabilities, Inputs, SecretData};

/// One child object of a SockudoCluster.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Child {
    ConfigMap(ConfigMap),
    Secret(Secret),
    Service(Service),
    Deployment(Deployment),
    StatefulSet(StatefulSet),
    Ingress(Ingress),
    PodDisruptionBudget(PodDisruptionBudget),
    HorizontalPodAutoscaler(HorizontalPodAutoscaler),
    /// A `monitoring.coreos.com/v1` ServiceMonitor (no typed struct: its CRD may be absent).
    ServiceMonitor(DynamicObject),
}

impl Child {
    pub fn kind(&self) -> &'static str {
        match self {
            Child::ConfigMap(_) => "ConfigMap",
            Child::Secret(_) => "Secret",
            Child::Service(_) => "Service",
            Child::Deployment(_) => "Deployment",
            Child::StatefulSet(_) => "StatefulSet",
            Child::Ingress(_) => "Ingress",
            Child::PodDisruptionBudget(_) => "PodDisruptionBudget",
            Child::HorizontalPodAutoscaler(_) => "HorizontalPodAutoscaler",
            Child::ServiceMonitor(_) => "ServiceMonitor",
        }
    }

    pub fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        match self {
            Child::ConfigMap(o) => &o.metadata,
            Child::Secret(o) => &o.metadata,
            Child::Service(o) => &o.metadata,
            Child::Deployment(o) => &o.metadata,
            Child::StatefulSet(o) => &o.metadata,
            Child::Ingress(o) => &o.metadata,
            Child::PodDisruptionBudget(o) => &o.metadata,
            Child::HorizontalPodAutoscaler(o) => &o.metadata,
            Child::ServiceMonitor(o) => &o.metadata,
        }
    }

    pub fn name(&self) -> &str {
        self.meta().name.as_deref().unwrap_or_default()
    }
}

/// Everything the operator wants to exist for one SockudoCluster, plus what it skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub children: Vec<Child>,
    /// Optional objects not built because their API is missing, e.g. `PodDisruptionBudget (policy/v1)`.
    pub skipped: Vec<String>,
    /// Decision-matrix warnings for status.
    pub warnings: Vec<String>,
    /// The pod-template hash (server settings and backend credentials).
    pub config_hash: String,
    /// How the pods reach each other ([`interconnect::interconnect`]).
    pub interconnect: String,
}

/// What `status.skipped` says when the API server is too old for a claim retention policy.
pub const RETENTION_SKIPPED: &str = "persistentVolumeClaimRetentionPolicy of the managed StatefulSets (Kubernetes 1.27+): their volumes are retained";

/// Builds every child. Pure: same inputs, same objects.
pub fn desired(inputs: &Inputs) -> Desired {
    let mut children = Vec::new();
    let mut skipped = Vec::new();
    let topology = topology::Topology::of(&inputs.cluster.spec);

    children.push(Child::ConfigMap(configmap::server_config(inputs)));
    children.push(Child::Secret(configmap::apps_secret(inputs)));
    let config_hash = hash::pod_template_hash(inputs);
    children.push(Child::Deployment(deployment::deployment(
        inputs,
        &config_hash,
    )));
    children.extend(services::services(inputs).into_iter().map(Child::Service));
    if let Some(ingress) = ingress::ingress(inputs) {
        children.push(Child::Ingress(ingress));
    }
    let managed_redis: Vec<_> = topology
        .used_redis()
        .into_iter()
        .filter(|i| i.is_managed())
        .collect();
    let managed_nats = topology.nats.filter(|n| n.managed.is_some());
    let budgets: Vec<_> = pdb::pdb(inputs)
        .into_iter()
        .chain(managed_redis.iter().filter_map(|i| redis::pdb(i, inputs)))
        .chain(managed_nats.and_then(|n| nats::pdb(inputs, n)))
        .collect();
    if !budgets.is_empty() && !inputs.capabilities.pdb_v1 {
        skipped.push(pdb::SKIPPED.into());
    } else {
        children.extend(budgets.into_iter().map(Child::PodDisruptionBudget));
    }
    match hpa::hpa(inputs) {
        Some(_) if !inputs.capabilities.hpa_v2 => {
            skipped.push("HorizontalPodAutoscaler (autoscaling/v2)".into())
        }
        Some(hpa) => children.push(Child::HorizontalPodAutoscaler(hpa)),
        None => {}
    }
    match service_monitor::service_monitor(inputs) {
        Some(_) if !inputs.capabilities.service_monitor => {
            skipped.push("ServiceMonitor (monitoring.coreos.com/v1)".into())
        }
        Some(sm) => children.push(Child::ServiceMonitor(sm)),
        None => {}
    }
    if !inputs.capabilities.native_sleep {
        skipped.push("preStop sleep hook (Kubernetes 1.29+)".into());
    }
    let storages = managed_redis
        .iter()
        .filter_map(|i| i.spec.managed.as_ref()?.storage.as_ref())
        .chain(managed_nats.and_then(|n| n.managed.as_ref()?.storage.as_ref()));
    if !inputs.capabilities.pvc_retention && storages.into_iter().any(|s| s.has_retention_policy())
    {
        skipped.push(RETENTION_SKIPPED.into());
    }
    for instance in &managed_redis {
        children.extend(redis::managed(instance, inputs));
    }
    if let Some(nats) = managed_nats {
        children.extend(nats::managed(nats, inputs));
    }
    Desired {
        children,
        skipped,
        warnings: warnings::warnings(&inputs.cluster.spec),
        config_hash,
        interconnect: interconnect::interconnect(&server_config::render_settings(inputs)),
    }
}
