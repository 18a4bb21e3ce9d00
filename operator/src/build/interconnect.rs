//! How the server pods reach each other: the adapter's driver, backend and prefix, as one
//! readable line. Pods whose lines differ do not see each other's events, so a rollout that
//! changes it splits the fleet until it ends (see the controller's status).

use sockudo_config::{AdapterDriver, ServerConfig};

/// The interconnect of a rendered server config. Credentials and TLS settings are left out:
/// rotating them does not split the fleet.
pub fn interconnect(c: &ServerConfig) -> String {
    let prefix = &c.adapter.prefix;
    match c.adapter.driver {
        AdapterDriver::Local => "local (each pod on its own)".into(),
        AdapterDriver::Redis => {
            let r = c.database.redis.clone().unwrap_or_default();
            let at = match (&r.url, &r.host) {
                (Some(url), _) => strip_credentials(url),
                (None, host) => format!(
                    "{}:{}",
                    host.as_deref().unwrap_or("127.0.0.1"),
                    r.port.unwrap_or(6379)
                ),
            };
            format!("redis {at} db {}, prefix {prefix}", r.db.unwrap_or(0))
        }
        AdapterDriver::RedisCluster => {
            let nodes = c
                .database
                .redis_cluster
                .as_ref()
                .map(|rc| {
                    let mut n: Vec<String> = rc.nodes.iter().map(|n| n.address()).collect();
                    n.sort();
                    n.join(",")
                })
                .unwrap_or_default();
            format!("redis-cluster {nodes}, prefix {prefix}")
        }
        AdapterDriver::Nats => {
            let mut servers: Vec<String> = c
                .nats
                .servers
                .to_vec()
                .iter()
                .map(|s| strip_credentials(s))
                .collect();
            servers.sort();
            format!(
                "nats {}, subjects {}.{prefix}",
                servers.join(","),
                c.nats.prefix
            )
        }
    }
}

/// `scheme://user:pass@host:port/db` -> `scheme://host:port/db`.
fn strip_credentials(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
            format!("{scheme}://{rest}")
        }
        None => url.rsplit_once('@').map_or(url, |(_, r)| r).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_driver_backend_and_prefix_without_secrets() {
        let mut c = ServerConfig::default();
        assert_eq!(interconnect(&c), "local (each pod on its own)");
        c.adapter.driver = AdapterDriver::Redis;
        c.database.redis = Some(sockudo_config::RedisConnection {
            url: Some("rediss://u:secret@r.ns.svc:6380/2".into()),
            ..Default::default()
        });
        let redis = interconnect(&c);
        assert!(
            redis.starts_with("redis rediss://r.ns.svc:6380/2"),
            "{redis}"
        );
        assert!(!redis.contains("secret"), "{redis}");
        c.adapter.driver = AdapterDriver::Nats;
        c.nats.servers = sockudo_config::NatsServers::List(vec![
            "nats://b:4222".into(),
            "nats://tok@a:4222".into(),
        ]);
        let nats = interconnect(&c);
        assert!(
            nats.starts_with("nats nats://a:4222,nats://b:4222, subjects "),
            "{nats}"
        );
        c.adapter.prefix = "other".into();
        assert_ne!(interconnect(&c), nats, "the prefix separates fleets too");
    }
}
