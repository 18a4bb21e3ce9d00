//! The sections that pick a driver: adapter, cache, rate limiter, delta compression.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::backends::ConsumerRedisConfig;

/// How nodes reach each other.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AdapterDriver {
    /// Single node: no cross-node traffic.
    #[default]
    Local,
    /// Pub/sub on one Redis (`database.redis`).
    Redis,
    /// Sharded pub/sub on a Redis Cluster (`database.redis_cluster`).
    RedisCluster,
    /// Core NATS subjects (`nats`).
    Nats,
}

impl AdapterDriver {
    pub fn as_str(self) -> &'static str {
        match self {
            AdapterDriver::Local => "local",
            AdapterDriver::Redis => "redis",
            AdapterDriver::RedisCluster => "redis-cluster",
            AdapterDriver::Nats => "nats",
        }
    }
}

/// `adapter`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AdapterConfig {
    pub driver: AdapterDriver,
    /// Prefix of every channel / subject / key the adapter uses, so several fleets can share one
    /// backend. Only `[A-Za-z0-9_-]`, valid in Redis keys and NATS subjects alike.
    pub prefix: String,
    /// How long a cluster-wide query waits for peers before answering "incomplete".
    pub request_timeout_ms: u64,
    /// How often a node announces it is alive.
    pub heartbeat_interval_ms: u64,
    /// A node silent for this long is dead: its presence members are removed.
    pub node_timeout_ms: u64,
    /// HTTP publishes held while the backend is unreachable (0: answer 503 at once).
    pub publish_buffer_size: usize,
    /// Redis Cluster: use SPUBLISH/SSUBSCRIBE so channels spread over the masters.
    pub sharded_pubsub: bool,
}

impl Default for AdapterConfig {
    fn default() -> Self {
        AdapterConfig {
            driver: AdapterDriver::Local,
            prefix: "sockudo".into(),
            request_timeout_ms: 1000,
            heartbeat_interval_ms: 2000,
            node_timeout_ms: 10_000,
            publish_buffer_size: 0,
            sharded_pubsub: true,
        }
    }
}

/// Where the general cache lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CacheDriver {
    #[default]
    Memory,
    Redis,
    RedisCluster,
    None,
}

impl CacheDriver {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheDriver::Memory => "memory",
            CacheDriver::Redis => "redis",
            CacheDriver::RedisCluster => "redis-cluster",
            CacheDriver::None => "none",
        }
    }
}

/// `cache.memory`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryCacheConfig {
    /// Bound on the number of entries.
    pub max_capacity: u64,
}

impl Default for MemoryCacheConfig {
    fn default() -> Self {
        MemoryCacheConfig {
            max_capacity: 10_000,
        }
    }
}

/// `cache`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    pub driver: CacheDriver,
    /// Lifetime of a cache channel's last event.
    pub cache_channel_ttl_seconds: u64,
    /// Lifetime of the `/channels` listing cache.
    pub channels_listing_ttl_ms: u64,
    pub memory: MemoryCacheConfig,
    pub redis: ConsumerRedisConfig,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            driver: CacheDriver::Memory,
            cache_channel_ttl_seconds: 3600,
            channels_listing_ttl_ms: 2000,
            memory: MemoryCacheConfig::default(),
            redis: ConsumerRedisConfig::default(),
        }
    }
}

/// Where rate-limit counters live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RateLimiterDriver {
    #[default]
    Memory,
    Redis,
    RedisCluster,
    /// No limiting (same meaning as `enabled: false`).
    None,
}

impl RateLimiterDriver {
    pub fn as_str(self) -> &'static str {
        match self {
            RateLimiterDriver::Memory => "memory",
            RateLimiterDriver::Redis => "redis",
            RateLimiterDriver::RedisCluster => "redis-cluster",
            RateLimiterDriver::None => "none",
        }
    }
}

/// One limit: at most `max_requests` per `window_seconds`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub max_requests: u64,
    pub window_seconds: u64,
}

/// What the limiter does while its backend is unreachable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FailureMode {
    /// Let requests through (reported in readiness and metrics).
    #[default]
    Open,
    /// Refuse requests with 503.
    Closed,
}

/// `rate_limiter`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimiterConfig {
    /// `false` disables limiting, as does `driver: none`.
    pub enabled: bool,
    pub driver: RateLimiterDriver,
    /// HTTP API requests per client IP.
    pub api_rate_limit: RateLimit,
    /// HTTP API requests per app, whatever the IP.
    pub app_api_rate_limit: RateLimit,
    /// WebSocket connection attempts per client IP.
    pub websocket_rate_limit: RateLimit,
    /// How many reverse proxies in front of the server append to `X-Forwarded-For`. 0 (the default)
    /// trusts no header: the peer address is the client.
    pub trusted_proxy_hops: u32,
    pub on_backend_failure: FailureMode,
    pub redis: ConsumerRedisConfig,
}

impl Default for RateLimiterConfig {
    fn default() -> Self {
        RateLimiterConfig {
            enabled: true,
            driver: RateLimiterDriver::Memory,
            api_rate_limit: RateLimit {
                max_requests: 100,
                window_seconds: 1,
            },
            app_api_rate_limit: RateLimit {
                max_requests: 1000,
                window_seconds: 1,
            },
            websocket_rate_limit: RateLimit {
                max_requests: 20,
                window_seconds: 1,
            },
            trusted_proxy_hops: 0,
            on_backend_failure: FailureMode::Open,
            redis: ConsumerRedisConfig::default(),
        }
    }
}

impl RateLimiterConfig {
    /// One meaning for the two ways of turning limiting off.
    pub fn is_active(&self) -> bool {
        self.enabled && self.driver != RateLimiterDriver::None
    }
}

/// Delta encoding algorithm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeltaAlgorithm {
    #[default]
    Fossil,
    Xdelta3,
}

/// `delta_compression`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DeltaCompressionConfig {
    /// Offer deltas to clients that opt in (plain clients are unaffected).
    pub enabled: bool,
    pub algorithm: DeltaAlgorithm,
    /// Every Nth message of a channel / conflation key is sent in full.
    pub full_message_interval: u64,
    /// Messages smaller than this are always sent in full.
    pub min_message_size: usize,
    /// JSON path in the event data whose value splits a channel into streams (e.g. `asset`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflation_key: Option<String>,
    /// Count full-message intervals cluster-wide on the adapter's backend.
    pub cluster_coordination: bool,
    /// Idle channel state (and coordination keys) expire after this long.
    pub max_state_age_secs: u64,
}

impl Default for DeltaCompressionConfig {
    fn default() -> Self {
        DeltaCompressionConfig {
            enabled: true,
            algorithm: DeltaAlgorithm::Fossil,
            full_message_interval: 10,
            min_message_size: 100,
            conflation_key: None,
            cluster_coordination: false,
            max_state_age_secs: 300,
        }
    }
}
