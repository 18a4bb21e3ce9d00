//! Renders the `sockudo_config::ServerConfig` the server pods load: the contract with the server.
//! Secrets appear only as `*_file` paths of mounted Secrets.

use sockudo_config::{
    AppConfig, AppFeatures, AppLimits, ClusterNode, ConsumerRedisConfig, NatsServers, RateLimit,
    RedisClusterConnection, RedisConnection, ServerConfig, WebhookConfig,
};

use super::credentials::{self, Credentials};
use super::inputs::Inputs;
use super::names;
use super::redis::{REDIS_PORT, cluster_pod_count};
use super::topology::{RedisInstance, RedisRole, Topology};
use crate::crd::{AppSpec, RateLimitSpec, RedisMode, SockudoClusterSpec};

/// Where the apps Secret is mounted; each app's key and secret are files in it.
pub const APPS_DIR: &str = "/etc/sockudo/apps";
/// Where the ConfigMap is mounted.
pub const CONFIG_DIR: &str = "/etc/sockudo/config";
/// The config file's name in the ConfigMap.
pub const CONFIG_FILE: &str = "config.json";
/// Client port of the NATS servers.
pub const NATS_CLIENT_PORT: u16 = 4222;

pub fn app_key_file(id: &str) -> String {
    format!("{APPS_DIR}/{id}.key")
}

pub fn app_secret_file(id: &str) -> String {
    format!("{APPS_DIR}/{id}.secret")
}

/// Where a Redis section is, as the server's config types.
enum RedisAddress {
    Standalone(RedisConnection),
    Cluster(RedisClusterConnection),
}

fn redis_address(instance: &RedisInstance, inputs: &Inputs) -> RedisAddress {
    let creds = credentials::redis(instance, inputs);
    let ns = names::namespace(inputs.cluster);
    let service = instance.managed_name(inputs.cluster);
    let Credentials {
        username,
        password_file,
        tls,
        ..
    } = creds;
    match (
        instance.mode(),
        &instance.spec.managed,
        &instance.spec.external,
    ) {
        (RedisMode::Standalone, Some(_), _) => RedisAddress::Standalone(RedisConnection {
            host: Some(format!("{service}.{ns}.svc")),
            port: Some(REDIS_PORT),
            password_file,
            ..RedisConnection::default()
        }),
        (RedisMode::Cluster, Some(managed), _) => RedisAddress::Cluster(RedisClusterConnection {
            nodes: (0..cluster_pod_count(managed))
                .map(|i| {
                    ClusterNode::Url(format!(
                        "redis://{service}-{i}.{service}.{ns}.svc:{REDIS_PORT}"
                    ))
                })
                .collect(),
            password_file,
            ..RedisClusterConnection::default()
        }),
        (RedisMode::Standalone, None, external) => {
            let e = external.clone().unwrap_or_default();
            RedisAddress::Standalone(RedisConnection {
                url: e.url,
                port: e
                    .host
                    .as_ref()
                    .and(e.port.and_then(|p| u16::try_from(p).ok())),
                host: e.host,
                db: e.db.and_then(|d| u32::try_from(d).ok()),
                username,
                password_file,
                tls,
                ..RedisConnection::default()
            })
        }
        (RedisMode::Cluster, None, external) => {
            let e = external.clone().unwrap_or_default();
            RedisAddress::Cluster(RedisClusterConnection {
                nodes: e
                    .nodes
                    .unwrap_or_default()
                    .into_iter()
                    .map(|n| {
                        if n.contains("://") {
                            ClusterNode::Url(n)
                        } else {
                            ClusterNode::Url(format!("redis://{n}"))
                        }
                    })
                    .collect(),
                username,
                password_file,
                tls,
                ..RedisClusterConnection::default()
            })
        }
    }
}

/// A consumer's own Redis, in the consumer section's shape.
fn consumer_section(
    instance: &RedisInstance,
    inputs: &Inputs,
    prefix: Option<String>,
) -> ConsumerRedisConfig {
    let mut section = ConsumerRedisConfig {
        prefix,
        ..ConsumerRedisConfig::default()
    };
    match redis_address(instance, inputs) {
        RedisAddress::Standalone(c) => {
            section.url_override = c.url;
            section.host = c.host;
            section.port = c.port;
            section.db = c.db;
            section.username = c.username;
            section.password_file = c.password_file;
            section.tls = c.tls;
        }
        RedisAddress::Cluster(c) => {
            section.nodes = Some(c.nodes);
            section.username = c.username;
            section.password_file = c.password_file;
            section.tls = c.tls;
        }
    }
    section
}

fn limit(spec: Option<&RateLimitSpec>, default: RateLimit) -> RateLimit {
    spec.map_or(default, |s| RateLimit {
        max_requests: s.max_requests,
        window_seconds: s.window_seconds,
    })
}

fn app(spec: &AppSpec) -> AppConfig {
    let d = AppLimits::default();
    let limits = spec.limits.clone().unwrap_or_default();
    let to_usize = |v: Option<u32>, default: usize| v.map_or(default, |v| v as usize);
    let features = spec.features.clone().unwrap_or_default();
    AppConfig {
        id: spec.id.clone(),
        key: None,
        key_file: Some(app_key_file(&spec.id)),
        secret: None,
        secret_file: Some(app_secret_file(&spec.id)),
        enabled: spec.enabled.unwrap_or(true),
        limits: AppLimits {
            max_connections: limits.max_connections.unwrap_or(d.max_connections),
            max_client_events_per_second: limits
                .max_client_events_per_second
                .unwrap_or(d.max_client_events_per_second),
            max_presence_members_per_channel: limits
                .max_presence_members_per_channel
                .unwrap_or(d.max_presence_members_per_channel),
            max_presence_member_size_kb: limits
                .max_presence_member_size_kb
                .unwrap_or(d.max_presence_member_size_kb),
            max_channel_name_length: to_usize(
                limits.max_channel_name_length,
                d.max_channel_name_length,
            ),
            max_event_channels_at_once: to_usize(
                limits.max_event_channels_at_once,
                d.max_event_channels_at_once,
            ),
            max_event_name_length: to_usize(limits.max_event_name_length, d.max_event_name_length),
            max_event_payload_kb: to_usize(limits.max_event_payload_kb, d.max_event_payload_kb),
            max_event_batch_size: to_usize(limits.max_event_batch_size, d.max_event_batch_size),
        },
        features: AppFeatures {
            enable_client_messages: features.client_messages.unwrap_or(false),
            enable_user_authentication: features.user_authentication.unwrap_or(false),
            enable_watchlist_events: features.watchlist_events.unwrap_or(false),
            enable_subscription_count: features.subscription_count.unwrap_or(false),
        },
        allowed_origins: spec.allowed_origins.clone().unwrap_or_default(),
        webhooks: spec
            .webhooks
            .iter()
            .flatten()
            .map(|w| WebhookConfig {
                url: w.url.clone(),
                event_types: w.event_types.clone().unwrap_or_default(),
                channel_prefix: w.channel_prefix.clone(),
                headers: w.headers.clone().unwrap_or_default(),
            })
            .collect(),
    }
}

/// The server settings (everything but the apps): what the pod-template hash covers.
pub fn render_settings(inputs: &Inputs) -> ServerConfig {
    let spec: &SockudoClusterSpec = &inputs.cluster.spec;
    let topology = Topology::of(spec);
    let mut c = ServerConfig::default();

    if let Some(server) = &spec.server {
        c.activity_timeout = server
            .activity_timeout_seconds
            .unwrap_or(c.activity_timeout);
        c.shutdown_grace_period = server
            .shutdown_grace_period_seconds
            .unwrap_or(c.shutdown_grace_period);
        c.max_connections = server.max_connections.unwrap_or(c.max_connections);
        if let Some(kb) = server.max_payload_kb {
            c.websocket.max_payload_kb = kb as usize;
        }
        let http = &mut c.http_api;
        http.keep_alive_timeout_secs = server
            .http_keep_alive_timeout_seconds
            .unwrap_or(http.keep_alive_timeout_secs);
        http.header_read_timeout_secs = server
            .http_header_read_timeout_seconds
            .unwrap_or(http.header_read_timeout_secs);
        http.request_timeout_secs = server
            .http_request_timeout_seconds
            .unwrap_or(http.request_timeout_secs);
        c.logging.format = server.log_format.unwrap_or(c.logging.format);
        if let Some(level) = &server.log_level {
            c.logging.level = level.clone();
        }
    }

    if let Some(adapter) = &spec.adapter {
        c.adapter.driver = adapter.driver;
        if let Some(prefix) = &adapter.prefix {
            c.adapter.prefix = prefix.clone();
        }
    }
    // `database` holds spec.redis only when some consumer uses it.
    if let Some(shared) = topology
        .used_redis()
        .into_iter()
        .find(|i| i.role == RedisRole::Shared)
    {
        match redis_address(&shared, inputs) {
            RedisAddress::Standalone(r) => c.database.redis = Some(r),
            RedisAddress::Cluster(r) => c.database.redis_cluster = Some(r),
        }
    }

    if let Some(cache) = &spec.cache {
        c.cache.driver = cache.driver;
        c.cache.cache_channel_ttl_seconds = cache
            .ttl_seconds
            .unwrap_or(c.cache.cache_channel_ttl_seconds);
        c.cache.redis = match topology.cache_redis.filter(|i| i.role == RedisRole::Cache) {
            Some(own) => consumer_section(&own, inputs, cache.prefix.clone()),
            None => ConsumerRedisConfig {
                prefix: cache.prefix.clone(),
                ..ConsumerRedisConfig::default()
            },
        };
    }

    if let Some(limiter) = &spec.rate_limiter {
        let r = &mut c.rate_limiter;
        r.enabled = limiter.enabled.unwrap_or(true);
        r.driver = limiter.driver.unwrap_or(r.driver);
        let limits = limiter.limits.clone().unwrap_or_default();
        r.api_rate_limit = limit(limits.api.as_ref(), r.api_rate_limit.clone());
        r.app_api_rate_limit = limit(limits.app_api.as_ref(), r.app_api_rate_limit.clone());
        r.websocket_rate_limit = limit(limits.websocket.as_ref(), r.websocket_rate_limit.clone());
        r.trusted_proxy_hops = limiter.trusted_proxy_hops.unwrap_or(r.trusted_proxy_hops);
        r.on_backend_failure = limiter.on_backend_failure.unwrap_or(r.on_backend_failure);
        r.redis = match topology
            .limiter_redis
            .filter(|i| i.role == RedisRole::RateLimiter)
        {
            Some(own) => consumer_section(&own, inputs, limiter.prefix.clone()),
            None => ConsumerRedisConfig {
                prefix: limiter.prefix.clone(),
                ..ConsumerRedisConfig::default()
            },
        };
    }

    if let Some(delta) = &spec.delta_compression {
        let d = &mut c.delta_compression;
        d.enabled = delta.enabled.unwrap_or(d.enabled);
        d.algorithm = delta.algorithm.unwrap_or(d.algorithm);
        d.full_message_interval = delta
            .full_message_interval
            .unwrap_or(d.full_message_interval);
        if let Some(size) = delta.min_message_size {
            d.min_message_size = size as usize;
        }
        d.conflation_key = delta.conflation_key.clone();
        d.cluster_coordination = delta.cluster_coordination.unwrap_or(false);
    }

    if let Some(nats) = topology.nats {
        let creds = credentials::nats(nats, inputs);
        let ns = names::namespace(inputs.cluster);
        c.nats.servers = match (&nats.managed, &nats.external) {
            (Some(_), _) => NatsServers::List(vec![format!(
                "nats://{}.{ns}.svc:{NATS_CLIENT_PORT}",
                super::nats::client_service(inputs.cluster)
            )]),
            (None, Some(e)) => NatsServers::List(e.servers.clone()),
            (None, None) => NatsServers::default(),
        };
        if let Some(prefix) = &nats.prefix {
            c.nats.prefix = prefix.clone();
        }
        c.nats.username = creds.username;
        c.nats.password_file = creds.password_file;
        c.nats.token_file = creds.token_file;
        c.nats.credentials_file = creds.credentials_file;
        c.nats.tls = creds.tls;
    }

    c.metrics.enabled = spec
        .metrics
        .as_ref()
        .and_then(|m| m.enabled)
        .unwrap_or(true);
    c
}

/// The whole config: settings plus apps.
pub fn render(inputs: &Inputs) -> ServerConfig {
    let mut c = render_settings(inputs);
    c.apps = inputs.cluster.spec.apps.iter().map(app).collect();
    c
}
