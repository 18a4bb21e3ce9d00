//! Environment overrides, with the variable names Sockudo users already know.

use std::str::FromStr;

use crate::ConfigError;
use crate::apps::AppConfig;
use crate::backends::{ClusterNode, NatsServers, RedisConnection};
use crate::server::ServerConfig;

/// Every variable read by [`apply_env`], for `--help` and the docs.
pub const ENV_VARS: &[&str] = &[
    "HOST",
    "PORT",
    "METRICS_PORT",
    "NODE_ID",
    "ADAPTER_DRIVER",
    "CACHE_DRIVER",
    "RATE_LIMITER_ENABLED",
    "RATE_LIMITER_DRIVER",
    "REDIS_URL",
    "DATABASE_REDIS_HOST",
    "DATABASE_REDIS_PORT",
    "DATABASE_REDIS_DB",
    "DATABASE_REDIS_USERNAME",
    "DATABASE_REDIS_PASSWORD",
    "REDIS_CLUSTER_NODES",
    "NATS_SERVERS",
    "NATS_USERNAME",
    "NATS_PASSWORD",
    "NATS_TOKEN",
    "SOCKUDO_DEFAULT_APP_ID",
    "SOCKUDO_DEFAULT_APP_KEY",
    "SOCKUDO_DEFAULT_APP_SECRET",
];

fn parse<T: FromStr>(name: &str, value: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    value.trim().parse().map_err(|e: T::Err| ConfigError::Env {
        name: name.into(),
        value: value.into(),
        message: e.to_string(),
    })
}

/// Parses an enum the same way the config file does, so `ADAPTER_DRIVER=redis-cluster` and
/// `"driver": "redis-cluster"` accept exactly the same words.
fn parse_enum<T: serde::de::DeserializeOwned>(name: &str, value: &str) -> Result<T, ConfigError> {
    serde_json::from_value(serde_json::Value::String(value.trim().into())).map_err(|e| {
        ConfigError::Env {
            name: name.into(),
            value: value.into(),
            message: e.to_string(),
        }
    })
}

fn parse_bool(name: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::Env {
            name: name.into(),
            value: value.into(),
            message: "expected true or false".into(),
        }),
    }
}

/// Applies overrides from `lookup` (normally `std::env::var`). A malformed value is an error
/// naming the variable, never ignored.
pub fn apply_env(
    config: &mut ServerConfig,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    let get = |name: &str| lookup(name).filter(|v| !v.is_empty());

    if let Some(v) = get("HOST") {
        config.host = v;
    }
    if let Some(v) = get("PORT") {
        config.port = parse("PORT", &v)?;
    }
    if let Some(v) = get("METRICS_PORT") {
        config.metrics.port = parse("METRICS_PORT", &v)?;
    }
    if let Some(v) = get("NODE_ID") {
        config.node_id = Some(v);
    }
    if let Some(v) = get("ADAPTER_DRIVER") {
        config.adapter.driver = parse_enum("ADAPTER_DRIVER", &v)?;
    }
    if let Some(v) = get("CACHE_DRIVER") {
        config.cache.driver = parse_enum("CACHE_DRIVER", &v)?;
    }
    if let Some(v) = get("RATE_LIMITER_ENABLED") {
        config.rate_limiter.enabled = parse_bool("RATE_LIMITER_ENABLED", &v)?;
    }
    if let Some(v) = get("RATE_LIMITER_DRIVER") {
        config.rate_limiter.driver = parse_enum("RATE_LIMITER_DRIVER", &v)?;
    }

    if let Some(url) = get("REDIS_URL") {
        let redis = config
            .database
            .redis
            .get_or_insert_with(RedisConnection::default);
        redis.url = Some(url);
        redis.host = None;
        redis.port = None;
    }
    let redis_fields = [
        "DATABASE_REDIS_HOST",
        "DATABASE_REDIS_PORT",
        "DATABASE_REDIS_DB",
        "DATABASE_REDIS_USERNAME",
        "DATABASE_REDIS_PASSWORD",
    ];
    if redis_fields.iter().any(|n| get(n).is_some()) {
        let redis = config
            .database
            .redis
            .get_or_insert_with(RedisConnection::default);
        if let Some(v) = get("DATABASE_REDIS_HOST") {
            redis.host = Some(v);
            redis.url = None;
        }
        if let Some(v) = get("DATABASE_REDIS_PORT") {
            redis.port = Some(parse("DATABASE_REDIS_PORT", &v)?);
        }
        if let Some(v) = get("DATABASE_REDIS_DB") {
            redis.db = Some(parse("DATABASE_REDIS_DB", &v)?);
        }
        if let Some(v) = get("DATABASE_REDIS_USERNAME") {
            redis.username = Some(v);
        }
        if let Some(v) = get("DATABASE_REDIS_PASSWORD") {
            redis.password = Some(v);
            redis.password_file = None;
        }
    }
    if let Some(v) = get("REDIS_CLUSTER_NODES") {
        let cluster = config
            .database
            .redis_cluster
            .get_or_insert_with(Default::default);
        cluster.nodes = v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                if s.contains("://") {
                    ClusterNode::Url(s.into())
                } else {
                    ClusterNode::Url(format!("redis://{s}"))
                }
            })
            .collect();
    }

    if let Some(v) = get("NATS_SERVERS") {
        config.nats.servers = NatsServers::Csv(v);
    }
    if let Some(v) = get("NATS_USERNAME") {
        config.nats.username = Some(v);
    }
    if let Some(v) = get("NATS_PASSWORD") {
        config.nats.password = Some(v);
        config.nats.password_file = None;
    }
    if let Some(v) = get("NATS_TOKEN") {
        config.nats.token = Some(v);
        config.nats.token_file = None;
    }

    // The default app: all three or none, so a half-set app never starts with a blank secret.
    let (id, key, secret) = (
        get("SOCKUDO_DEFAULT_APP_ID"),
        get("SOCKUDO_DEFAULT_APP_KEY"),
        get("SOCKUDO_DEFAULT_APP_SECRET"),
    );
    match (id, key, secret) {
        (None, None, None) => {}
        (Some(id), Some(key), Some(secret)) => match config.apps.iter_mut().find(|a| a.id == id) {
            Some(app) => {
                app.key = Some(key);
                app.key_file = None;
                app.secret = Some(secret);
                app.secret_file = None;
            }
            None => config.apps.push(AppConfig::new(&id, &key, &secret)),
        },
        _ => {
            return Err(ConfigError::Env {
                name: "SOCKUDO_DEFAULT_APP_ID/KEY/SECRET".into(),
                value: String::new(),
                message: "set all three or none".into(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::{AdapterDriver, CacheDriver};
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn overrides_apply() {
        let mut c = ServerConfig::default();
        apply_env(
            &mut c,
            env(&[
                ("PORT", "7001"),
                ("ADAPTER_DRIVER", "redis-cluster"),
                ("CACHE_DRIVER", "none"),
                (
                    "REDIS_CLUSTER_NODES",
                    "127.0.0.1:7001,redis://127.0.0.1:7002",
                ),
                ("NATS_SERVERS", "nats://a:4222, nats://b:4222"),
                ("SOCKUDO_DEFAULT_APP_ID", "42"),
                ("SOCKUDO_DEFAULT_APP_KEY", "k"),
                ("SOCKUDO_DEFAULT_APP_SECRET", "s"),
            ]),
        )
        .unwrap();
        assert_eq!(c.port, 7001);
        assert_eq!(c.adapter.driver, AdapterDriver::RedisCluster);
        assert_eq!(c.cache.driver, CacheDriver::None);
        let nodes = &c.database.redis_cluster.as_ref().unwrap().nodes;
        assert_eq!(nodes[0].address(), "127.0.0.1:7001");
        assert_eq!(nodes[1].address(), "127.0.0.1:7002");
        assert_eq!(
            c.nats.servers.to_vec(),
            vec!["nats://a:4222", "nats://b:4222"]
        );
        assert_eq!(c.apps[0].key.as_deref(), Some("k"));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let mut c = ServerConfig::default();
        let err = apply_env(&mut c, env(&[("PORT", "abc")])).unwrap_err();
        assert!(err.to_string().contains("PORT"), "{err}");
        let err = apply_env(&mut c, env(&[("ADAPTER_DRIVER", "kafka")])).unwrap_err();
        assert!(err.to_string().contains("ADAPTER_DRIVER"), "{err}");
        let err = apply_env(&mut c, env(&[("SOCKUDO_DEFAULT_APP_ID", "1")])).unwrap_err();
        assert!(err.to_string().contains("all three"), "{err}");
    }

    /// NATS variables replace the file's secret of the same kind, so the result stays one
    /// credentials mode; a variable that adds a second mode is refused by validation, not merged.
    #[test]
    fn nats_overrides_stay_one_mode() {
        let file = |nats: &str| {
            crate::load::parse_str(
                &format!(r#"{{"adapter":{{"driver":"nats"}},"nats":{{{nats}}}}}"#),
                crate::load::Format::Json,
            )
            .unwrap()
        };
        let valid = [
            (r#""token_file":"/run/t""#, vec![("NATS_TOKEN", "t")]),
            (
                r#""username":"u","password_file":"/run/p""#,
                vec![("NATS_PASSWORD", "p")],
            ),
            ("", vec![("NATS_USERNAME", "u"), ("NATS_PASSWORD", "p")]),
            (
                r#""username":"file-user""#,
                vec![("NATS_USERNAME", "u"), ("NATS_PASSWORD", "p")],
            ),
        ];
        for (nats, vars) in valid {
            let mut c = file(nats);
            apply_env(&mut c, env(&vars)).unwrap();
            assert_eq!(c.validate(), Vec::<String>::new(), "{nats} + {vars:?}");
        }
        let mut c = file(r#""token_file":"/run/t""#);
        apply_env(&mut c, env(&[("NATS_TOKEN", "t")])).unwrap();
        assert_eq!(c.nats.token.as_deref(), Some("t"));
        assert_eq!(c.nats.token_file, None);

        let refused = [
            (
                r#""credentials_file":"/run/c""#,
                vec![("NATS_TOKEN", "t")],
                "nats.credentials_file",
            ),
            (
                r#""username":"u","password":"p""#,
                vec![("NATS_TOKEN", "t")],
                "nats.token",
            ),
            ("", vec![("NATS_PASSWORD", "p")], "nats.username"),
        ];
        for (nats, vars, key) in refused {
            let mut c = file(nats);
            apply_env(&mut c, env(&vars)).unwrap();
            let e = c.validate();
            assert_eq!(e.len(), 1, "{nats} + {vars:?}: {e:?}");
            assert!(e[0].contains(key), "{e:?}");
        }
    }
}
