//! The server's configuration: one schema that the server parses and the operator renders.
//!
//! Key names follow the seed document (`cache.driver`, `rate_limiter.redis.prefix`,
//! `delta_compression.cluster_coordination`, ...). Unknown keys are errors that name the key and
//! its line; defaults live on the types, so a rendered config and a hand-written one mean the same.

pub mod apps;
pub mod backends;
pub mod drivers;
pub mod env;
pub mod load;
pub mod resolve;
pub mod server;
pub mod validate;

use std::path::Path;

pub use apps::{AppConfig, AppFeatures, AppLimits, WebhookConfig, WebhookEvent};
pub use backends::{
    ClusterNode, ConsumerRedisConfig, DatabaseConfig, NatsConfig, NatsServers,
    RedisClusterConnection, RedisConnection, TlsConfig,
};
pub use drivers::{
    AdapterConfig, AdapterDriver, CacheConfig, CacheDriver, DeltaAlgorithm, DeltaCompressionConfig,
    FailureMode, RateLimit, RateLimiterConfig, RateLimiterDriver,
};
pub use load::{Format, load_file, parse_str};
pub use resolve::{RedisTarget, read_secret};
pub use server::{HttpApiConfig, LogFormat, ServerConfig};

/// Everything that can be wrong with a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{}line {line}, column {column}: {}{message}",
        file.as_deref().map(|f| format!("{f}: ")).unwrap_or_default(),
        if path.is_empty() || path == "." { String::new() } else { format!("at `{path}`: ") })]
    Parse {
        file: Option<String>,
        /// Dotted path of the key, e.g. `cache.redis.prefix`.
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("environment variable {name}={value:?}: {message}")]
    Env {
        name: String,
        value: String,
        message: String,
    },
    #[error("cannot read secret {key} from {path}: {source}")]
    Secret {
        key: String,
        path: String,
        source: std::io::Error,
    },
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

impl ConfigError {
    fn in_file(self, file: &Path) -> Self {
        match self {
            ConfigError::Parse {
                path,
                line,
                column,
                message,
                ..
            } => ConfigError::Parse {
                file: Some(file.display().to_string()),
                path,
                line,
                column,
                message,
            },
            other => other,
        }
    }
}

/// The full pipeline the server runs at startup: file (or defaults), environment, validation.
pub fn load(
    path: Option<&Path>,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<ServerConfig, ConfigError> {
    let mut config = match path {
        Some(p) => load_file(p)?,
        None => ServerConfig::default(),
    };
    env::apply_env(&mut config, lookup)?;
    let errors = config.validate();
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(errors))
    }
}

/// The JSON Schema of the config file, for editors and docs.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(ServerConfig)).expect("schema serialises")
}
