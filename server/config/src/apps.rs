//! Apps: credentials, per-app limits, features and webhooks.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One app. `key` and `secret` may be read from files (mounted Secrets) with `*_file`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Numeric string, so every official SDK accepts it.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub limits: AppLimits,
    #[serde(default)]
    pub features: AppFeatures,
    /// Origins allowed to open WebSockets (`*` or empty: any). Matched on the `Origin` header.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<WebhookConfig>,
}

fn yes() -> bool {
    true
}

impl AppConfig {
    /// An app with inline credentials and default policy.
    pub fn new(id: &str, key: &str, secret: &str) -> Self {
        AppConfig {
            id: id.into(),
            key: Some(key.into()),
            key_file: None,
            secret: Some(secret.into()),
            secret_file: None,
            enabled: true,
            limits: AppLimits::default(),
            features: AppFeatures::default(),
            allowed_origins: Vec::new(),
            webhooks: Vec::new(),
        }
    }
}

/// Per-app limits. Defaults are safe, never "unlimited".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AppLimits {
    /// Connections to this app across the cluster (4004 beyond).
    pub max_connections: u64,
    /// Client events one socket may send per second (4301 beyond).
    pub max_client_events_per_second: u32,
    pub max_presence_members_per_channel: u32,
    pub max_presence_member_size_kb: u32,
    pub max_channel_name_length: usize,
    pub max_event_channels_at_once: usize,
    pub max_event_name_length: usize,
    pub max_event_payload_kb: usize,
    pub max_event_batch_size: usize,
}

impl Default for AppLimits {
    fn default() -> Self {
        AppLimits {
            max_connections: 100_000,
            max_client_events_per_second: 10,
            max_presence_members_per_channel: 100,
            max_presence_member_size_kb: 2,
            max_channel_name_length: 200,
            max_event_channels_at_once: 100,
            max_event_name_length: 200,
            max_event_payload_kb: 10,
            max_event_batch_size: 10,
        }
    }
}

/// Per-app features, all off by default as on Pusher.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AppFeatures {
    /// Allow `client-*` events on private and presence channels.
    pub enable_client_messages: bool,
    /// Require `pusher:signin` (or a private/presence subscription) within
    /// `user_authentication_timeout`, else close 4009.
    pub enable_user_authentication: bool,
    pub enable_watchlist_events: bool,
    /// Send `pusher_internal:subscription_count` to subscribers of public/private channels.
    pub enable_subscription_count: bool,
}

/// Webhook event types.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum WebhookEvent {
    ChannelOccupied,
    ChannelVacated,
    MemberAdded,
    MemberRemoved,
    ClientEvent,
    CacheMiss,
    SubscriptionCount,
}

/// One webhook endpoint of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// Events sent to this endpoint (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_types: Vec<WebhookEvent>,
    /// Only channels starting with this prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_prefix: Option<String>,
    /// Extra request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}
