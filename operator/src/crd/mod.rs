//! The `SockudoCluster` API (`sockudo.io/v1alpha1`): what a user writes, and the status the
//! operator reports.
//!
//! Nothing here carries a schema default: defaults are applied in code (and shown in status), so a
//! manifest kept in Git is exactly what the API server stores and GitOps tools see no drift.

mod apps;
mod backends;
mod drivers;
pub mod generate;
pub mod rules;
mod status;
mod workload;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use apps::{AppFeaturesSpec, AppLimitsSpec, AppSecretRef, AppSpec, WebhookSpec};
pub use backends::{
    BackendSecretRef, ClaimRetention, ExternalNats, ExternalRedis, ManagedNats, ManagedRedis,
    NatsSpec, RedisMode, RedisSpec, StorageSpec, TlsSpec,
};
pub use drivers::{
    AdapterSpec, CacheSpec, DeltaCompressionSpec, RateLimitSpec, RateLimiterSpec, RateLimitsSpec,
};
pub use status::{
    ConditionType, Endpoints, RedisClusterPhase, RedisClusterStatus, SockudoClusterStatus,
    UnreachablePod,
};
pub use workload::{
    AutoscalingSpec, ImageSpec, IngressSpec, IngressTls, LogFormat, MetricsSpec,
    PodDisruptionBudgetSpec, PodSpec, PullPolicy, ServerSpec, ServiceMonitorSpec, ServiceSpec,
    ServiceType,
};

/// API group of every resource this operator serves.
pub const GROUP: &str = "sockudo.io";
/// The only served version.
pub const VERSION: &str = "v1alpha1";

/// A fleet of Pusher-compatible realtime servers (sockudo), with the Redis, Redis Cluster or NATS it
/// needs, either managed by the operator or external.
// Each `printcolumn(...)` repeats `type_`; clippy takes that for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "sockudo.io",
    version = "v1alpha1",
    kind = "SockudoCluster",
    plural = "sockudoclusters",
    shortname = "sockudo",
    category = "sockudo",
    namespaced,
    status = "SockudoClusterStatus",
    derive = "PartialEq",
    doc = "A fleet of Pusher-compatible realtime servers (sockudo) and the backends it needs.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the fleet and its backends are ready"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".spec.replicas",
        description = "Desired server pods"
    ),
    printcolumn(
        name = "Available",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Server pods ready to take connections"
    ),
    printcolumn(
        name = "Adapter",
        type_ = "string",
        json_path = ".spec.adapter.driver",
        description = "How the nodes reach each other"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        description = "Why the fleet is (not) ready",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = rules::spec_rules_json()))]
pub struct SockudoClusterSpec {
    /// Number of server pods. More than one needs an adapter other than `local`. Written by
    /// `kubectl scale` and by a HorizontalPodAutoscaler through the scale subresource.
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// The server image. Default: the sockudo image this operator release was tested with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSpec>,
    /// The Pusher apps this fleet serves. Their key and secret live only in Secrets; changing apps
    /// or rotating their Secrets reloads them in place without dropping connections.
    #[schemars(length(min = 1))]
    pub apps: Vec<AppSpec>,
    /// The shared Redis (or Redis Cluster) that the `redis` / `redis-cluster` adapter uses, and that
    /// the cache and rate limiter use unless they name their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisSpec>,
    /// The NATS cluster the `nats` adapter (and its delta coordination) uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<NatsSpec>,
    /// How the nodes reach each other. Default: `local` (a single node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<AdapterSpec>,
    /// The general cache. Default: `memory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheSpec>,
    /// Rate limiting of the HTTP API and of WebSocket connections. Default: enabled, `memory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limiter: Option<RateLimiterSpec>,
    /// Delta compression of channel messages. Default: offered to clients, node-local intervals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_compression: Option<DeltaCompressionSpec>,
    /// Server tunables (timeouts, connection limits, logging).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerSpec>,
    /// The client Service (WebSocket and HTTP API, port 6001 in the pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceSpec>,
    /// An Ingress for the client Service, with WebSocket-friendly timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSpec>,
    /// Prometheus metrics (port 9601) and an optional ServiceMonitor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsSpec>,
    /// The PodDisruptionBudget of the server pods (created when replicas > 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_disruption_budget: Option<PodDisruptionBudgetSpec>,
    /// A HorizontalPodAutoscaler that scales this SockudoCluster through its scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
    /// Scheduling, resources and extra metadata of the server pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodSpec>,
}

/// Annotation that pauses reconciliation: status is still updated, nothing is applied or deleted.
pub const PAUSE_ANNOTATION: &str = "sockudo.io/reconcile";
/// The value of [`PAUSE_ANNOTATION`] that pauses.
pub const PAUSE_VALUE: &str = "paused";

impl SockudoCluster {
    /// True when the user asked the operator to leave the children alone.
    pub fn is_paused(&self) -> bool {
        self.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PAUSE_ANNOTATION))
            .is_some_and(|v| v == PAUSE_VALUE)
    }
}
