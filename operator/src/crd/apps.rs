//! `spec.apps`: Pusher apps, with credentials only in Secrets.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sockudo_config::WebhookEvent;

/// One Pusher app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppSpec {
    /// The app id: a numeric string, so every official Pusher SDK accepts it.
    #[schemars(regex(pattern = r"^[0-9]+$"))]
    pub id: String,
    /// The Secret holding the app's key and secret.
    pub secret_ref: AppSecretRef,
    /// Whether the app accepts connections and API calls. Default: true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Per-app limits. Unset ones keep the server's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<AppLimitsSpec>,
    /// Per-app features, all off by default as on Pusher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<AppFeaturesSpec>,
    /// Webhook endpoints of this app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhooks: Option<Vec<WebhookSpec>>,
    /// Origins allowed to open WebSockets, matched on the `Origin` header. Unset or `*`: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_origins: Option<Vec<String>>,
}

/// Where an app's key and secret are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppSecretRef {
    /// Name of a Secret in the SockudoCluster's namespace.
    pub name: String,
    /// Key of the app key in that Secret. Default: `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_key: Option<String>,
    /// Key of the app secret in that Secret. Default: `secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
}

impl AppSecretRef {
    pub fn key_key(&self) -> &str {
        self.key_key.as_deref().unwrap_or("key")
    }
    pub fn secret_key(&self) -> &str {
        self.secret_key.as_deref().unwrap_or("secret")
    }
}

/// Per-app limits; each unset one keeps the server's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppLimitsSpec {
    /// Connections to this app across the fleet (close code 4004 beyond). Server default: 100000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_connections: Option<u64>,
    /// Client events one socket may send per second (4301 beyond). Server default: 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_client_events_per_second: Option<u32>,
    /// Members of one presence channel. Server default: 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_presence_members_per_channel: Option<u32>,
    /// Size of one presence member's data, in KiB. Server default: 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_presence_member_size_kb: Option<u32>,
    /// Length of a channel name. Server default: 200.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_channel_name_length: Option<u32>,
    /// Channels one HTTP publish may target. Server default: 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_event_channels_at_once: Option<u32>,
    /// Length of an event name. Server default: 200.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_event_name_length: Option<u32>,
    /// Size of one event's data, in KiB. Server default: 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_event_payload_kb: Option<u32>,
    /// Events in one batch publish. Server default: 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_event_batch_size: Option<u32>,
}

/// Per-app features; each unset one is off.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppFeaturesSpec {
    /// Allow `client-*` events on private and presence channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_messages: Option<bool>,
    /// Require `pusher:signin` (or a private/presence subscription) soon after connecting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_authentication: Option<bool>,
    /// Send watchlist online/offline events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watchlist_events: Option<bool>,
    /// Send `pusher_internal:subscription_count` to subscribers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_count: Option<bool>,
}

/// One webhook endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSpec {
    /// The endpoint URL (http or https).
    #[schemars(regex(pattern = r"^https?://"))]
    pub url: String,
    /// Events sent to this endpoint. Unset: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_types: Option<Vec<WebhookEvent>>,
    /// Only events of channels starting with this prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_prefix: Option<String>,
    /// Extra request headers (not secret: they are stored in the rendered ConfigMap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
}
