//! `spec.redis`, `spec.nats` and the Redis sections of the cache and rate limiter: each either
//! managed by the operator or external.

use k8s_openapi::api::core::v1::ResourceRequirements;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::rules;
use super::workload::ImageSpec;

/// Standalone Redis or Redis Cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    #[default]
    Standalone,
    Cluster,
}

/// A Redis deployment: managed by the operator, or external. Exactly one of `managed` and
/// `external`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = rules::redis_rules_json()))]
pub struct RedisSpec {
    /// `standalone` (one server) or `cluster` (Redis Cluster). Default: `standalone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<RedisMode>,
    /// A Redis the operator runs (StatefulSet, Service, generated password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedRedis>,
    /// A Redis run elsewhere (a cloud service, another team's cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalRedis>,
}

impl RedisSpec {
    pub fn mode(&self) -> RedisMode {
        self.mode.unwrap_or_default()
    }
}

/// A Redis run by the operator with the official image.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedRedis {
    /// The Redis image. Default: the official `redis` image pinned by this operator release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSpec>,
    /// Cluster mode: number of masters (at least 3). Default: 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masters: Option<i32>,
    /// Cluster mode: replicas of each master. Default: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 5))]
    pub replicas_per_master: Option<i32>,
    /// CPU and memory of each Redis pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Persistent storage for the data. Unset: an emptyDir (data is lost with the pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
}

/// A PersistentVolumeClaim template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size of each volume, e.g. `1Gi`.
    pub size: String,
    /// StorageClass of the volumes. Default: the cluster's default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// What becomes of the volumes when the SockudoCluster (and so its StatefulSet) is deleted.
    /// Default: `Retain` (the data outlives the cluster). Needs Kubernetes 1.27+.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_deleted: Option<ClaimRetention>,
    /// What becomes of the volumes of pods removed by a scale-down (a Redis Cluster that shrinks,
    /// once its departing nodes are drained). Default: `Retain`. Needs Kubernetes 1.27+.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_scaled: Option<ClaimRetention>,
}

impl StorageSpec {
    /// Whether a retention policy is asked for (rendered only then, so clusters that do not ask
    /// for one keep their StatefulSets as they were).
    pub fn has_retention_policy(&self) -> bool {
        self.when_deleted.is_some() || self.when_scaled.is_some()
    }
}

/// A StatefulSet's `persistentVolumeClaimRetentionPolicy` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ClaimRetention {
    /// The claims (and so the data) stay.
    Retain,
    /// The claims are deleted with their pods.
    Delete,
}

impl ClaimRetention {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimRetention::Retain => "Retain",
            ClaimRetention::Delete => "Delete",
        }
    }
}

/// A Redis run elsewhere. Standalone: `url` or `host`/`port`; cluster: `nodes`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalRedis {
    /// `redis://host:port/db` or `rediss://...`, without credentials (they go in `secretRef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^rediss?://[^@]*$"))]
    pub url: Option<String>,
    /// Host name or address of the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Port of the server. Default: 6379.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Database number. Default: 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub db: Option<i32>,
    /// Cluster mode: seed nodes as `host:port`; the rest of the topology is discovered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub nodes: Option<Vec<String>>,
    /// The Secret with the username and password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<BackendSecretRef>,
    /// TLS to the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
}

/// Credentials of a backend in a Secret. Changing them (or the Secret's data) rolls the pods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackendSecretRef {
    /// Name of a Secret in the SockudoCluster's namespace.
    pub name: String,
    /// Key of the username. Unset: no username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_key: Option<String>,
    /// Key of the password. Default: `password` (NATS: unset means no password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_key: Option<String>,
    /// NATS only (refused on a Redis): key of an auth token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_key: Option<String>,
    /// NATS only (refused on a Redis): key of a `.creds` file (JWT and nkey seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_key: Option<String>,
}

/// TLS to a backend. Certificates come from Secrets, mounted as files.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// Connect with TLS. Default: true when this section is present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Secret with the CA certificate under `ca.crt`. Unset: the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret: Option<String>,
    /// Secret of type `kubernetes.io/tls` with a client certificate for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_secret: Option<String>,
    /// Skip certificate verification. Only for tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
}

impl TlsSpec {
    pub fn is_enabled(&self) -> bool {
        self.enabled.unwrap_or(true)
    }
}

/// A NATS cluster: managed by the operator, or external. Exactly one of `managed` and `external`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = rules::nats_rules_json()))]
pub struct NatsSpec {
    /// Subject and KV-bucket prefix, so several fleets can share one NATS. Default: `sockudo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub prefix: Option<String>,
    /// A NATS cluster the operator runs with the official image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedNats>,
    /// A NATS cluster run elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalNats>,
}

/// A NATS cluster run by the operator.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedNats {
    /// NATS servers in the cluster (1, or 3 and more for JetStream quorum). Default: 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub replicas: Option<i32>,
    /// Enable JetStream. Default: on exactly when delta compression's cluster coordination needs
    /// its key-value store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jetstream: Option<bool>,
    /// The NATS image. Default: the official `nats` image pinned by this operator release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSpec>,
    /// CPU and memory of each NATS pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Persistent storage for JetStream. Unset: an emptyDir (memory-backed KV is all sockudo needs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
}

/// A NATS cluster run elsewhere.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = rules::nats_external_rules_json()))]
pub struct ExternalNats {
    /// Server URLs, e.g. `nats://nats.example:4222`.
    #[schemars(length(min = 1))]
    pub servers: Vec<String>,
    /// The Secret with the credentials, in one mode: `usernameKey` (+ `passwordKey`), `tokenKey`,
    /// or `credentialsKey` (a `.creds` file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<BackendSecretRef>,
    /// TLS to the servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
}
