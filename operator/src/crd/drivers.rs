//! `spec.adapter`, `spec.cache`, `spec.rateLimiter`, `spec.deltaCompression`. Driver values are
//! the server's own enums, so they are exactly the seed's words.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sockudo_config::{AdapterDriver, CacheDriver, DeltaAlgorithm, FailureMode, RateLimiterDriver};

use super::backends::RedisSpec;

/// How the nodes reach each other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdapterSpec {
    /// `local` (one node), `redis` (pub/sub on spec.redis, standalone), `redis-cluster` (sharded
    /// pub/sub on spec.redis in cluster mode) or `nats` (spec.nats).
    pub driver: AdapterDriver,
    /// Prefix of every channel, subject and key the adapter uses, so several fleets can share one
    /// backend. Default: `sockudo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub prefix: Option<String>,
}

/// The general cache (channel data, cache channels).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CacheSpec {
    /// `memory` (per node), `redis`, `redis-cluster` (shared across nodes) or `none`.
    pub driver: CacheDriver,
    /// Lifetime of a cache channel's last event, in seconds. Server default: 3600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub ttl_seconds: Option<u64>,
    /// Key prefix in Redis. Server default: `sockudo_cache:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The cache's own Redis. Unset: spec.redis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisSpec>,
}

/// Rate limiting. With several replicas, `memory` counts per node, so a client can get up to
/// replicas times the limit; `redis` counts fleet-wide.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimiterSpec {
    /// Turn limiting on or off. Default: true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `memory`, `redis`, `redis-cluster` or `none`. Default: `memory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<RateLimiterDriver>,
    /// The limits. Unset ones keep the server's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<RateLimitsSpec>,
    /// How many reverse proxies in front of the server append to `X-Forwarded-For` (an ingress
    /// controller is one). Default: 0, the peer address is the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10))]
    pub trusted_proxy_hops: Option<u32>,
    /// While the limiter's Redis is unreachable: `open` lets requests through, `closed` answers
    /// 503. Default: `open`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_backend_failure: Option<FailureMode>,
    /// Key prefix in Redis. Server default: `sockudo_ratelimit:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The limiter's own Redis. Unset: spec.redis, else cache.redis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisSpec>,
}

/// The three limits of the server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitsSpec {
    /// HTTP API requests per client IP. Server default: 100 per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<RateLimitSpec>,
    /// HTTP API requests per app, whatever the IP. Server default: 1000 per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_api: Option<RateLimitSpec>,
    /// WebSocket connection attempts per client IP. Server default: 20 per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub websocket: Option<RateLimitSpec>,
}

/// At most `maxRequests` per `windowSeconds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitSpec {
    /// Requests allowed per window.
    #[schemars(range(min = 1))]
    pub max_requests: u64,
    /// Length of the window in seconds.
    #[schemars(range(min = 1))]
    pub window_seconds: u64,
}

/// Delta compression: clients that opt in get deltas against earlier messages of a channel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeltaCompressionSpec {
    /// Offer deltas to clients that opt in. Default: true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `fossil` or `xdelta3`. Default: `fossil`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<DeltaAlgorithm>,
    /// Every Nth message of a channel (or conflation key) is sent in full. Default: 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub full_message_interval: Option<u64>,
    /// Messages smaller than this many bytes are always sent in full. Default: 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_message_size: Option<u64>,
    /// JSON path in the event data whose value splits a channel into streams (e.g. `asset`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflation_key: Option<String>,
    /// Count full-message intervals fleet-wide on the adapter's backend (Redis, or NATS JetStream
    /// KV). Needs adapter.driver redis, redis-cluster or nats. Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_coordination: Option<bool>,
}
