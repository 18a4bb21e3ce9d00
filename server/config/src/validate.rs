//! Rules that span several keys. Pure: reads no files and opens no connections.

use std::collections::HashSet;

use crate::backends::{NatsConfig, RedisConnection};
use crate::drivers::{AdapterDriver, CacheDriver, RateLimit, RateLimiterDriver};
use crate::server::ServerConfig;

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn check_connection(errors: &mut Vec<String>, key: &str, conn: &RedisConnection) {
    if conn.url.is_some() && conn.host.is_some() {
        errors.push(format!(
            "`{key}.url` and `{key}.host` are both set; use one"
        ));
    }
    if conn.password.is_some() && conn.password_file.is_some() {
        errors.push(format!(
            "`{key}.password` and `{key}.password_file` are both set; use one"
        ));
    }
}

/// NATS takes one credentials mode: user and password, a token, or a `.creds` file. The client
/// would otherwise send all of them, and the server's refusal would not say which one it used.
fn check_nats_credentials(errors: &mut Vec<String>, n: &NatsConfig) {
    let set = |name: &'static str, v: &Option<String>| v.as_ref().map(|_| name);
    let password =
        set("nats.password", &n.password).or(set("nats.password_file", &n.password_file));
    let token = set("nats.token", &n.token).or(set("nats.token_file", &n.token_file));
    let username = set("nats.username", &n.username);
    if n.password.is_some() && n.password_file.is_some() {
        errors.push("`nats.password` and `nats.password_file` are both set; use one".into());
    }
    if n.token.is_some() && n.token_file.is_some() {
        errors.push("`nats.token` and `nats.token_file` are both set; use one".into());
    }
    if let (Some(p), None) = (password, username) {
        errors.push(format!(
            "`{p}` is set without `nats.username`: NATS password authentication needs both"
        ));
    }
    let user_keys: Vec<&str> = [username, password].into_iter().flatten().collect();
    if let Some(t) = token
        && !user_keys.is_empty()
    {
        errors.push(format!(
            "`{t}` and `{}` are both set: NATS takes one credentials mode (a token, or username and password)",
            user_keys.join("`, `")
        ));
    }
    // `nats://user:pass@host` or `nats://token@host` is a credentials mode of its own.
    let creds_file = set("nats.credentials_file", &n.credentials_file);
    let keys: Vec<&str> = [username, password, token, creds_file]
        .into_iter()
        .flatten()
        .collect();
    if !keys.is_empty() {
        for (i, url) in n.servers.to_vec().iter().enumerate() {
            if url_has_credentials(url) {
                // The URL itself is not repeated: it holds a secret.
                errors.push(format!(
                    "`nats.servers[{i}]` carries credentials (`user:password@` or `token@`) and `{}` is set: NATS takes one credentials mode; move them out of the URL",
                    keys.join("`, `")
                ));
            }
        }
    }
    if n.credentials_file.is_some() {
        let others: Vec<&str> = [username, password, token].into_iter().flatten().collect();
        if !others.is_empty() {
            errors.push(format!(
                "`nats.credentials_file` and `{}` are both set: NATS takes one credentials mode (a .creds file, a token, or username and password)",
                others.join("`, `")
            ));
        }
    }
}

/// Whether a server URL has a user-info part (`scheme://userinfo@host...`).
fn url_has_credentials(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.contains('@')
}

fn check_limit(errors: &mut Vec<String>, key: &str, limit: &RateLimit) {
    if limit.max_requests == 0 || limit.window_seconds == 0 {
        errors.push(format!(
            "`{key}` needs max_requests >= 1 and window_seconds >= 1"
        ));
    }
}

impl ServerConfig {
    /// Every cross-key rule, all errors at once.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let driver = self.adapter.driver;

        match driver {
            AdapterDriver::Redis if self.adapter_redis().is_none() => errors.push(
                "`adapter.driver` is `redis` but `database.redis` names no server (set host/port or url)"
                    .into(),
            ),
            AdapterDriver::RedisCluster if self.adapter_redis().is_none() => errors.push(
                "`adapter.driver` is `redis-cluster` but `database.redis_cluster.nodes` is empty"
                    .into(),
            ),
            AdapterDriver::Nats if self.nats.servers.to_vec().is_empty() => {
                errors.push("`adapter.driver` is `nats` but `nats.servers` is empty".into())
            }
            _ => {}
        }
        if !valid_name(&self.adapter.prefix) {
            errors.push(format!(
                "`adapter.prefix` {:?} may only contain letters, digits, `_` and `-` (it names Redis channels and NATS subjects)",
                self.adapter.prefix
            ));
        }
        if !valid_name(&self.nats.prefix) {
            errors.push(format!(
                "`nats.prefix` {:?} may only contain letters, digits, `_` and `-` (NATS subjects and KV buckets)",
                self.nats.prefix
            ));
        }
        check_nats_credentials(&mut errors, &self.nats);
        if self.adapter.heartbeat_interval_ms == 0
            || self.adapter.heartbeat_interval_ms * 2 > self.adapter.node_timeout_ms
        {
            errors.push(
                "`adapter.heartbeat_interval_ms` must be at least 1 and at most half of `adapter.node_timeout_ms`"
                    .into(),
            );
        }

        if matches!(
            self.cache.driver,
            CacheDriver::Redis | CacheDriver::RedisCluster
        ) && self.cache_redis().is_none()
        {
            errors.push(format!(
                "`cache.driver` is `{}` but neither `cache.redis` nor `database.{}` names a server",
                self.cache.driver.as_str(),
                if self.cache.driver == CacheDriver::Redis {
                    "redis"
                } else {
                    "redis_cluster"
                }
            ));
        }
        if self.rate_limiter.is_active()
            && matches!(
                self.rate_limiter.driver,
                RateLimiterDriver::Redis | RateLimiterDriver::RedisCluster
            )
            && self.rate_limiter_redis().is_none()
        {
            errors.push(format!(
                "`rate_limiter.driver` is `{}` but neither `rate_limiter.redis`, `database` nor `cache.redis` names a server",
                self.rate_limiter.driver.as_str()
            ));
        }
        check_limit(
            &mut errors,
            "rate_limiter.api_rate_limit",
            &self.rate_limiter.api_rate_limit,
        );
        check_limit(
            &mut errors,
            "rate_limiter.app_api_rate_limit",
            &self.rate_limiter.app_api_rate_limit,
        );
        check_limit(
            &mut errors,
            "rate_limiter.websocket_rate_limit",
            &self.rate_limiter.websocket_rate_limit,
        );

        if self.delta_compression.cluster_coordination && driver == AdapterDriver::Local {
            errors.push(
                "`delta_compression.cluster_coordination` is true but `adapter.driver` is `local`: coordination needs a redis, redis-cluster or nats adapter"
                    .into(),
            );
        }
        if self.delta_compression.full_message_interval == 0 {
            errors.push("`delta_compression.full_message_interval` must be at least 1".into());
        }

        if let Some(r) = &self.database.redis {
            check_connection(&mut errors, "database.redis", r);
        }
        if self.metrics.enabled && self.metrics.port == self.port {
            errors.push(format!(
                "`metrics.port` and `port` are both {}; metrics need their own port",
                self.port
            ));
        }

        let mut ids = HashSet::new();
        let mut keys = HashSet::new();
        for (i, app) in self.apps.iter().enumerate() {
            let at = format!("apps[{i}]");
            if app.id.is_empty() {
                errors.push(format!("`{at}.id` is empty"));
            }
            if !ids.insert(app.id.as_str()) {
                errors.push(format!("`{at}.id` {:?} is used by another app", app.id));
            }
            match (&app.key, &app.key_file) {
                (None, None) => errors.push(format!("`{at}` needs `key` or `key_file`")),
                (Some(_), Some(_)) => {
                    errors.push(format!("`{at}` has both `key` and `key_file`; use one"))
                }
                (Some(k), None) if !keys.insert(k.as_str()) => {
                    errors.push(format!("`{at}.key` {k:?} is used by another app"))
                }
                _ => {}
            }
            match (&app.secret, &app.secret_file) {
                (None, None) => errors.push(format!("`{at}` needs `secret` or `secret_file`")),
                (Some(_), Some(_)) => errors.push(format!(
                    "`{at}` has both `secret` and `secret_file`; use one"
                )),
                _ => {}
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use crate::load::{Format, parse_str};

    fn errors(json: &str) -> Vec<String> {
        parse_str(json, Format::Json).unwrap().validate()
    }

    #[test]
    fn coordination_with_local_adapter_names_both_keys() {
        let e = errors(r#"{"delta_compression":{"cluster_coordination":true}}"#);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("delta_compression.cluster_coordination"));
        assert!(e[0].contains("adapter.driver"));
    }

    #[test]
    fn redis_adapter_needs_a_server() {
        let e = errors(r#"{"adapter":{"driver":"redis"}}"#);
        assert!(e.iter().any(|m| m.contains("database.redis")), "{e:?}");
    }

    #[test]
    fn app_rules() {
        let e = errors(r#"{"apps":[{"id":"1","key":"k","secret":"s"},{"id":"1","key":"k"}]}"#);
        assert!(e.iter().any(|m| m.contains("apps[1].id")), "{e:?}");
        assert!(e.iter().any(|m| m.contains("apps[1].key")), "{e:?}");
        assert!(e.iter().any(|m| m.contains("secret")), "{e:?}");
    }

    #[test]
    fn bad_prefix_is_refused() {
        let e = errors(r#"{"adapter":{"prefix":"sockudo_adapter:"}}"#);
        assert!(e.iter().any(|m| m.contains("adapter.prefix")), "{e:?}");
    }

    /// The errors of a config whose `nats` section is `nats` (JSON object body).
    fn nats_errors(nats: &str) -> Vec<String> {
        errors(&format!(
            r#"{{"adapter":{{"driver":"nats"}},"nats":{{{nats}}}}}"#
        ))
    }

    #[test]
    fn nats_credentials_modes_accepted() {
        for nats in [
            "",
            r#""username":"u""#,
            r#""username":"u","password":"p""#,
            r#""username":"u","password_file":"/run/p""#,
            r#""token":"t""#,
            r#""token_file":"/run/t""#,
            r#""credentials_file":"/run/nats.creds""#,
            r#""credentials_file":"/run/nats.creds","tls":{"enabled":true,"ca_file":"/run/ca.crt"}"#,
        ] {
            assert_eq!(nats_errors(nats), Vec::<String>::new(), "{nats}");
        }
    }

    #[test]
    fn nats_credentials_modes_refused() {
        // (section, keys every single error must name)
        let cases: &[(&str, &[&str])] = &[
            (
                r#""username":"u","password":"p","password_file":"/p""#,
                &["nats.password`", "nats.password_file"],
            ),
            (
                r#""token":"t","token_file":"/t""#,
                &["nats.token`", "nats.token_file"],
            ),
            (r#""password":"p""#, &["nats.password`", "nats.username"]),
            (
                r#""password_file":"/p""#,
                &["nats.password_file", "nats.username"],
            ),
            (
                r#""token":"t","username":"u""#,
                &["nats.token`", "nats.username"],
            ),
            (
                r#""token_file":"/t","username":"u","password":"p""#,
                &["nats.token_file", "nats.username", "nats.password`"],
            ),
            (
                r#""credentials_file":"/c","username":"u""#,
                &["nats.credentials_file", "nats.username"],
            ),
            (
                r#""credentials_file":"/c","username":"u","password_file":"/p""#,
                &[
                    "nats.credentials_file",
                    "nats.username",
                    "nats.password_file",
                ],
            ),
            (
                r#""credentials_file":"/c","token":"t""#,
                &["nats.credentials_file", "nats.token`"],
            ),
            (
                r#""credentials_file":"/c","token_file":"/t""#,
                &["nats.credentials_file", "nats.token_file"],
            ),
        ];
        for (nats, keys) in cases {
            let e = nats_errors(nats);
            assert_eq!(e.len(), 1, "{nats}: {e:?}");
            for key in *keys {
                assert!(e[0].contains(key), "{nats}: {e:?} should name {key}");
            }
        }
    }

    #[test]
    fn nats_credentials_errors_come_together() {
        // A password without a user, next to a token and a .creds file: every rule reports.
        let e = nats_errors(r#""password":"p","token":"t","credentials_file":"/c""#);
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].contains("without `nats.username`"), "{e:?}");
        assert!(e[1].contains("`nats.token` and `nats.password`"), "{e:?}");
        assert!(e[2].contains("nats.credentials_file"), "{e:?}");
    }

    #[test]
    fn credentials_in_a_server_url_are_one_mode() {
        assert_eq!(
            nats_errors(r#""servers":["nats://u:p@a:4222","nats://u:p@b:4222"]"#),
            Vec::<String>::new()
        );
        assert_eq!(
            nats_errors(r#""servers":["nats://a:4222/x@y"],"token":"t""#),
            Vec::<String>::new(),
            "an @ after the host is not user info"
        );
        let e = nats_errors(r#""servers":["nats://a:4222","nats://s3cret@b:4222"],"token":"t""#);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains("nats.servers[1]") && e[0].contains("nats.token`"),
            "{e:?}"
        );
        assert!(
            !e[0].contains("s3cret"),
            "the URL's secret is not echoed: {e:?}"
        );
        let e = nats_errors(r#""servers":"nats://u:p@a:4222","credentials_file":"/c""#);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("nats.servers[0]") && e[0].contains("nats.credentials_file"));
    }
}
