//! Which backend each system uses (the precedence fixed by the seed's configs README), and
//! secrets read from files.

use crate::ConfigError;
use crate::backends::{RedisClusterConnection, RedisConnection};
use crate::drivers::{AdapterDriver, CacheDriver, RateLimiterDriver};
use crate::server::ServerConfig;

/// A Redis deployment a system talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    Standalone(RedisConnection),
    Cluster(RedisClusterConnection),
}

/// Default key prefixes per consumer.
pub const CACHE_PREFIX: &str = "sockudo_cache:";
pub const RATE_LIMIT_PREFIX: &str = "sockudo_ratelimit:";

impl ServerConfig {
    /// The Redis the adapter (and so delta coordination) uses, for the redis drivers.
    pub fn adapter_redis(&self) -> Option<RedisTarget> {
        match self.adapter.driver {
            AdapterDriver::Redis => self
                .database
                .redis
                .clone()
                .filter(|r| !r.is_unset())
                .map(RedisTarget::Standalone),
            AdapterDriver::RedisCluster => self
                .database
                .redis_cluster
                .clone()
                .filter(|c| !c.nodes.is_empty())
                .map(RedisTarget::Cluster),
            AdapterDriver::Local | AdapterDriver::Nats => None,
        }
    }

    /// The cache's Redis: its own section, else the shared `database` connection.
    pub fn cache_redis(&self) -> Option<RedisTarget> {
        let own = &self.cache.redis;
        match self.cache.driver {
            CacheDriver::Redis => own
                .own_connection()
                .or_else(|| self.shared_standalone())
                .map(RedisTarget::Standalone),
            CacheDriver::RedisCluster => own
                .own_cluster()
                .or_else(|| self.shared_cluster())
                .map(RedisTarget::Cluster),
            CacheDriver::Memory | CacheDriver::None => None,
        }
    }

    /// The rate limiter's Redis: its own section, else `database`, else the cache's own Redis
    /// (how the seed's NATS example shares one Redis between cache and limiter).
    pub fn rate_limiter_redis(&self) -> Option<RedisTarget> {
        let own = &self.rate_limiter.redis;
        let cache = &self.cache.redis;
        match self.rate_limiter.driver {
            RateLimiterDriver::Redis => own
                .own_connection()
                .or_else(|| self.shared_standalone())
                .or_else(|| cache.own_connection())
                .map(RedisTarget::Standalone),
            RateLimiterDriver::RedisCluster => own
                .own_cluster()
                .or_else(|| self.shared_cluster())
                .or_else(|| cache.own_cluster())
                .map(RedisTarget::Cluster),
            RateLimiterDriver::Memory | RateLimiterDriver::None => None,
        }
    }

    pub fn cache_prefix(&self) -> &str {
        self.cache.redis.prefix.as_deref().unwrap_or(CACHE_PREFIX)
    }

    pub fn rate_limiter_prefix(&self) -> &str {
        self.rate_limiter
            .redis
            .prefix
            .as_deref()
            .unwrap_or(RATE_LIMIT_PREFIX)
    }

    fn shared_standalone(&self) -> Option<RedisConnection> {
        self.database.redis.clone().filter(|r| !r.is_unset())
    }

    fn shared_cluster(&self) -> Option<RedisClusterConnection> {
        self.database
            .redis_cluster
            .clone()
            .filter(|c| !c.nodes.is_empty())
    }
}

/// Reads a secret given inline or as a file path (a mounted Kubernetes Secret). Both at once is an
/// error; a trailing newline in the file is dropped.
pub fn read_secret(
    key: &str,
    inline: Option<&str>,
    file: Option<&str>,
) -> Result<Option<String>, ConfigError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(ConfigError::Invalid(vec![format!(
            "`{key}` and `{key}_file` are both set; use one"
        )])),
        (Some(v), None) => Ok(Some(v.to_string())),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|s| Some(s.trim_end_matches(['\n', '\r']).to_string()))
            .map_err(|source| ConfigError::Secret {
                key: format!("{key}_file"),
                path: path.into(),
                source,
            }),
        (None, None) => Ok(None),
    }
}

/// Percent-encodes userinfo so any password survives inside a URL.
fn encode_userinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl RedisConnection {
    /// The connection as a `redis://` / `rediss://` URL, with the password read from its file.
    pub fn to_url(&self) -> Result<String, ConfigError> {
        let password = read_secret(
            "password",
            self.password.as_deref(),
            self.password_file.as_deref(),
        )?;
        if let Some(url) = &self.url {
            // Credentials given beside a URL are added to it, so a Secret can carry them alone.
            if password.is_none() && self.username.is_none() {
                return Ok(url.clone());
            }
            let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url));
            let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
            return Ok(format!(
                "{scheme}://{}{rest}",
                userinfo(self.username.as_deref(), password.as_deref())
            ));
        }
        let tls = self.tls.as_ref().is_some_and(|t| t.enabled);
        let scheme = if tls { "rediss" } else { "redis" };
        let host = self.host.as_deref().unwrap_or("127.0.0.1");
        let port = self.port.unwrap_or(6379);
        let db = self.db.unwrap_or(0);
        Ok(format!(
            "{scheme}://{}{host}:{port}/{db}",
            userinfo(self.username.as_deref(), password.as_deref())
        ))
    }
}

impl RedisClusterConnection {
    /// One URL per seed node, with credentials.
    pub fn to_urls(&self) -> Result<Vec<String>, ConfigError> {
        let password = read_secret(
            "password",
            self.password.as_deref(),
            self.password_file.as_deref(),
        )?;
        let tls = self.tls.as_ref().is_some_and(|t| t.enabled);
        let scheme = if tls { "rediss" } else { "redis" };
        let auth = userinfo(self.username.as_deref(), password.as_deref());
        Ok(self
            .nodes
            .iter()
            .map(|n| format!("{scheme}://{auth}{}", n.address()))
            .collect())
    }
}

fn userinfo(username: Option<&str>, password: Option<&str>) -> String {
    match (username, password) {
        (None, None) => String::new(),
        (Some(u), None) => format!("{}@", encode_userinfo(u)),
        (u, Some(p)) => format!(
            "{}:{}@",
            u.map(encode_userinfo).unwrap_or_default(),
            encode_userinfo(p)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{Format, parse_str};

    #[test]
    fn limiter_falls_back_to_cache_redis() {
        let c = parse_str(
            r#"{"adapter":{"driver":"nats"},
                "cache":{"driver":"redis","redis":{"host":"10.0.0.9","port":6380}},
                "rate_limiter":{"driver":"redis"}}"#,
            Format::Json,
        )
        .unwrap();
        let Some(RedisTarget::Standalone(r)) = c.rate_limiter_redis() else {
            panic!("no redis")
        };
        assert_eq!(r.to_url().unwrap(), "redis://10.0.0.9:6380/0");
    }

    #[test]
    fn own_section_beats_database() {
        let c = parse_str(
            r#"{"database":{"redis":{"host":"shared"}},
                "cache":{"driver":"redis","redis":{"url_override":"redis://own:1/2"}}}"#,
            Format::Json,
        )
        .unwrap();
        assert_eq!(
            c.cache_redis(),
            Some(RedisTarget::Standalone(RedisConnection {
                url: Some("redis://own:1/2".into()),
                ..Default::default()
            }))
        );
    }

    #[test]
    fn password_file_is_read_and_encoded() {
        let dir = std::env::temp_dir().join(format!("sockudo-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "p@ss:w/rd\n").unwrap();
        let conn = RedisConnection {
            host: Some("h".into()),
            port: Some(1),
            password_file: Some(file.display().to_string()),
            ..Default::default()
        };
        assert_eq!(conn.to_url().unwrap(), "redis://:p%40ss%3Aw%2Frd@h:1/0");
        let both = RedisConnection {
            password: Some("x".into()),
            ..conn
        };
        assert!(both.to_url().is_err());
    }
}
