//! Connections to the shared backends: Redis, Redis Cluster and NATS.
//!
//! Every consumer (adapter, cache, rate limiter, delta coordination) describes its backend with
//! these types, so credentials and TLS work the same way everywhere.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// TLS settings for a backend connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Connect with TLS.
    pub enabled: bool,
    /// PEM file with the CA that signed the server's certificate (default: system roots).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// PEM client certificate for mutual TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    /// PEM client key for mutual TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    /// Skip certificate verification. Only for tests.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
}

/// One standalone Redis server: `{url}` or `{host, port, db, username, password, tls}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConnection {
    /// `redis://[user:pass@]host:port/db` or `rediss://...`. Exclusive with `host`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Read the password from this file (a mounted Secret) instead of `password`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

impl RedisConnection {
    /// True when nothing locates a server: the section only carries defaults.
    pub fn is_unset(&self) -> bool {
        self.url.is_none() && self.host.is_none() && self.port.is_none()
    }
}

/// A Redis Cluster node, as `redis://host:port` or `{host, port}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ClusterNode {
    Url(String),
    HostPort { host: String, port: u16 },
}

impl ClusterNode {
    /// `host:port` of this node, whatever shape it was written in.
    pub fn address(&self) -> String {
        match self {
            ClusterNode::HostPort { host, port } => format!("{host}:{port}"),
            ClusterNode::Url(url) => {
                let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
                let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
                rest.trim_end_matches('/').to_string()
            }
        }
    }
}

/// A Redis Cluster: seed nodes plus credentials shared by every node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RedisClusterConnection {
    /// Seed nodes; the client discovers the rest of the topology from them.
    pub nodes: Vec<ClusterNode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

/// `database`: the shared connections that adapters (and, by default, cache and rate limiter) use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisConnection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_cluster: Option<RedisClusterConnection>,
}

/// The Redis section of a consumer (cache, rate limiter): its key prefix and, optionally, its own
/// server. When it names no server, the consumer uses `database.redis` / `database.redis_cluster`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerRedisConfig {
    /// Prepended to every key this consumer writes (default per consumer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Own standalone Redis as a URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_override: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// Own Redis Cluster seed nodes (for the `redis-cluster` driver).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<ClusterNode>>,
}

impl ConsumerRedisConfig {
    /// The standalone server this section names itself, if any.
    pub fn own_connection(&self) -> Option<RedisConnection> {
        if self.url_override.is_none() && self.host.is_none() && self.port.is_none() {
            return None;
        }
        Some(RedisConnection {
            url: self.url_override.clone(),
            host: self.host.clone(),
            port: self.port,
            db: self.db,
            username: self.username.clone(),
            password: self.password.clone(),
            password_file: self.password_file.clone(),
            tls: self.tls.clone(),
        })
    }

    /// The Redis Cluster this section names itself, if any.
    pub fn own_cluster(&self) -> Option<RedisClusterConnection> {
        self.nodes.as_ref().map(|nodes| RedisClusterConnection {
            nodes: nodes.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            password_file: self.password_file.clone(),
            tls: self.tls.clone(),
        })
    }
}

/// NATS servers, as one comma-separated string (the seed's form) or a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum NatsServers {
    Csv(String),
    List(Vec<String>),
}

impl Default for NatsServers {
    fn default() -> Self {
        NatsServers::List(vec!["nats://127.0.0.1:4222".into()])
    }
}

impl NatsServers {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            NatsServers::Csv(s) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            NatsServers::List(v) => v.clone(),
        }
    }
}

/// `nats`: the NATS cluster the `nats` adapter (and its delta coordination) uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    pub servers: NatsServers,
    /// Subject and KV-bucket prefix; only `[A-Za-z0-9_-]` so every derived name is valid NATS.
    pub prefix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    /// A `.creds` file (JWT + nkey seed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    pub connection_timeout_ms: u64,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            servers: NatsServers::default(),
            prefix: "sockudo".into(),
            username: None,
            password: None,
            password_file: None,
            token: None,
            token_file: None,
            credentials_file: None,
            tls: None,
            connection_timeout_ms: 5000,
        }
    }
}
