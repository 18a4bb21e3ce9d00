//! `status`: what the operator observed and decided.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The observed state of a SockudoCluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SockudoClusterStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing`, `Degraded`, `ReconciliationPaused` and one per dependency
    /// (`RedisReady`, `NatsReady`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Server pods that exist (the scale subresource's status replicas).
    #[serde(default)]
    pub replicas: i32,
    /// Server pods ready to take connections.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the server pods (the scale subresource's selector, used by an HPA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Where clients and Prometheus reach the fleet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Endpoints>,
    /// Configuration that works but is probably not what is wanted (e.g. a memory rate limiter
    /// with several replicas lets a client get replicas times the limit).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Optional objects not created because the cluster lacks their API (e.g.
    /// `ServiceMonitor (monitoring.coreos.com/v1)`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    /// Hash of the server settings and backend credentials the pods run with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// How the pods of the last completed rollout reach each other (adapter driver, backend,
    /// prefix). While a rollout changes it, `warnings` says the fleet is split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interconnect: Option<String>,
    /// The managed Redis Cluster's bootstrap and slot state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_cluster: Option<RedisClusterStatus>,
}

impl SockudoClusterStatus {
    /// The `Ready` condition is `True`.
    pub fn is_ready(&self) -> bool {
        self.conditions
            .iter()
            .any(|c| c.type_ == ConditionType::Ready.as_str() && c.status == "True")
    }
}

/// Addresses of the fleet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    /// In-cluster WebSocket / HTTP API address, `host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// In-cluster Prometheus address, `host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
    /// Public URL through the Ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<String>,
}

/// Where the managed Redis Cluster is: formed, then kept at the spec's shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RedisClusterPhase {
    /// Waiting for every node to answer.
    #[default]
    Pending,
    /// Nodes meet, slots are assigned, replicas attached: one step per reconcile.
    Bootstrapping,
    /// Slots are moved between masters (after masters were added, or to finish an interrupted
    /// migration), a bounded batch per reconcile; `slotsToMove` shows what is left.
    Rebalancing,
    /// Masters were removed from the spec: their slots move to the remaining masters, then the
    /// departing nodes are reset and forgotten; the StatefulSet keeps them until then.
    Draining,
    /// `cluster_state:ok`, all 16384 slots covered, and the shape matches the spec.
    Ready,
}

/// The managed Redis Cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisClusterStatus {
    /// Bootstrap phase.
    pub phase: RedisClusterPhase,
    /// Masters that own slots.
    #[serde(default)]
    pub masters: i32,
    /// Nodes replicating a master.
    #[serde(default)]
    pub replicas: i32,
    /// Slots covered by a master (16384 when complete).
    #[serde(default)]
    pub slots_assigned: i32,
    /// Slots still to move before every master holds its even share (0 when balanced).
    #[serde(default)]
    pub slots_to_move: i32,
    /// Masters (shards of the spec's layout) the pods the StatefulSet keeps make up. Above
    /// `spec...managed.masters` while departing masters are drained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stateful_set_masters: Option<i32>,
    /// Pods the StatefulSet keeps. Above the spec's `masters * (1 + replicasPerMaster)` while
    /// departing pods are drained (fewer masters, or fewer replicas per master): the StatefulSet
    /// shrinks only once their slots have moved and the remaining nodes have forgotten them.
    /// Counted in pods, not masters, so that a change of `replicasPerMaster` (which changes how
    /// many pods a master stands for) never shrinks it early.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stateful_set_pods: Option<i32>,
    /// Pods that did not answer the last observation; the cluster is `Pending` until they do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreachable: Vec<UnreachablePod>,
    /// The last step taken, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_step: Option<String>,
}

/// A pod of the managed Redis Cluster that did not answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnreachablePod {
    /// The pod's StatefulSet ordinal.
    pub ordinal: i32,
    /// Past the spec's pods: it is being drained, and the StatefulSet keeps it until then.
    #[serde(default)]
    pub departing: bool,
    /// Why it did not answer.
    pub error: String,
}

/// The condition types this operator sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConditionType {
    Ready,
    Progressing,
    Degraded,
    ReconciliationPaused,
    RedisReady,
    NatsReady,
    /// The managed Redis Cluster cannot make progress without a human (True).
    RedisClusterStalled,
    /// Every existing claim of a managed backend requests the spec's storage size.
    VolumesResized,
}

impl ConditionType {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::Ready => "Ready",
            ConditionType::Progressing => "Progressing",
            ConditionType::Degraded => "Degraded",
            ConditionType::ReconciliationPaused => "ReconciliationPaused",
            ConditionType::RedisReady => "RedisReady",
            ConditionType::NatsReady => "NatsReady",
            ConditionType::RedisClusterStalled => "RedisClusterStalled",
            ConditionType::VolumesResized => "VolumesResized",
        }
    }
}
