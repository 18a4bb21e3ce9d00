//! The root of the schema.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::apps::AppConfig;
use crate::backends::{DatabaseConfig, NatsConfig};
use crate::drivers::{AdapterConfig, CacheConfig, DeltaCompressionConfig, RateLimiterConfig};

/// The whole server configuration. Unknown keys are errors at every level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    /// This node's name in the cluster (the operator passes the pod name; default: hostname).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Seconds of client silence before the server pings (sent to clients as `activity_timeout`).
    pub activity_timeout: u64,
    /// Seconds to wait for a pong before closing with 4201.
    pub pong_timeout: u64,
    /// Seconds a socket has to sign in when the app requires user authentication (4009 after).
    pub user_authentication_timeout: u64,
    /// Seconds between SIGTERM and closing sockets with 4200, while readiness already says 503.
    pub shutdown_grace_period: u64,
    /// Connections this node accepts (4100 beyond).
    pub max_connections: u64,
    pub websocket: WebSocketConfig,
    pub http_api: HttpApiConfig,
    pub adapter: AdapterConfig,
    pub cache: CacheConfig,
    pub rate_limiter: RateLimiterConfig,
    pub delta_compression: DeltaCompressionConfig,
    pub database: DatabaseConfig,
    pub nats: NatsConfig,
    pub metrics: MetricsConfig,
    pub webhooks: WebhooksConfig,
    pub logging: LoggingConfig,
    pub apps: Vec<AppConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "0.0.0.0".into(),
            port: 6001,
            node_id: None,
            activity_timeout: 120,
            pong_timeout: 30,
            user_authentication_timeout: 30,
            shutdown_grace_period: 10,
            max_connections: 20_000,
            websocket: WebSocketConfig::default(),
            http_api: HttpApiConfig::default(),
            adapter: AdapterConfig::default(),
            cache: CacheConfig::default(),
            rate_limiter: RateLimiterConfig::default(),
            delta_compression: DeltaCompressionConfig::default(),
            database: DatabaseConfig::default(),
            nats: NatsConfig::default(),
            metrics: MetricsConfig::default(),
            webhooks: WebhooksConfig::default(),
            logging: LoggingConfig::default(),
            apps: Vec::new(),
        }
    }
}

/// `websocket`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct WebSocketConfig {
    /// Largest inbound frame; a larger one closes the socket with 1009 (message too big).
    pub max_payload_kb: usize,
    /// Outbound messages queued for one slow socket before it is disconnected (4100).
    pub max_outbound_messages: usize,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        WebSocketConfig {
            max_payload_kb: 64,
            max_outbound_messages: 1000,
        }
    }
}

/// `http_api`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct HttpApiConfig {
    /// Largest request body (413 beyond).
    pub request_limit_kb: usize,
    /// Accepted distance between `auth_timestamp` and now.
    pub timestamp_window_secs: u64,
    /// Seconds a client has to send a whole request head, from its first byte (or from
    /// connecting, for the first request); the connection is closed after. 0: no limit.
    pub header_read_timeout_secs: u64,
    /// Seconds an idle keep-alive connection is kept between requests. Above the idle timeout of
    /// a load balancer in front (often 60 s), so the balancer closes first. 0: no limit.
    pub keep_alive_timeout_secs: u64,
    /// Seconds from a complete request head to the response (body upload and handler).
    /// 0: no limit.
    pub request_timeout_secs: u64,
}

impl Default for HttpApiConfig {
    fn default() -> Self {
        HttpApiConfig {
            request_limit_kb: 1024,
            timestamp_window_secs: 600,
            header_read_timeout_secs: 10,
            keep_alive_timeout_secs: 75,
            request_timeout_secs: 30,
        }
    }
}

/// `metrics`: Prometheus on its own port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub enabled: bool,
    pub host: String,
    pub port: u16,
    pub prefix: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            host: "0.0.0.0".into(),
            port: 9601,
            prefix: "sockudo_".into(),
        }
    }
}

/// `webhooks`: delivery policy shared by every app's endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Events of one app are collected this long and sent in one request.
    pub batch_duration_ms: u64,
    pub batch_size: usize,
    pub request_timeout_ms: u64,
    pub max_attempts: u32,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// `channel_vacated` / `member_removed` wait this long and are re-checked, as on Pusher.
    pub vacate_delay_ms: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            batch_duration_ms: 50,
            batch_size: 100,
            request_timeout_ms: 5000,
            max_attempts: 6,
            initial_backoff_ms: 500,
            max_backoff_ms: 30_000,
            vacate_delay_ms: 3000,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `logging`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    pub format: LogFormat,
    /// `tracing` filter, e.g. `info,sockudo=debug` (overridden by `RUST_LOG`).
    pub level: String,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}
