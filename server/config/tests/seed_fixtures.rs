//! The seed's configurations are the contract: each must load unchanged and mean what the seed says.

use std::path::PathBuf;

use sockudo_config::{
    AdapterDriver, CacheDriver, RateLimiterDriver, RedisTarget, ServerConfig, load,
};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load_fixture(name: &str) -> ServerConfig {
    load(Some(&fixture(name)), |_| None).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn single_node() {
    let c = load_fixture("1-single-node.json");
    assert_eq!(c.adapter.driver, AdapterDriver::Local);
    assert_eq!(c.cache.driver, CacheDriver::Memory);
    assert!(c.rate_limiter.is_active());
    assert_eq!(c.rate_limiter.driver, RateLimiterDriver::Memory);
    assert_eq!(c.apps[0].id, "1234");
}

#[test]
fn multi_node_redis() {
    let c = load_fixture("2-multi-node-redis.json");
    assert_eq!(c.adapter.driver, AdapterDriver::Redis);
    let Some(RedisTarget::Standalone(adapter)) = c.adapter_redis() else {
        panic!("adapter has no redis")
    };
    assert_eq!(adapter.to_url().unwrap(), "redis://127.0.0.1:6379/0");
    // The limiter shares the adapter's Redis through `database.redis`.
    assert_eq!(c.rate_limiter_redis(), c.adapter_redis());
    assert!(!c.delta_compression.cluster_coordination);
    assert!(c.delta_compression.enabled, "delta is offered by default");
}

#[test]
fn full_sharing() {
    let c = load_fixture("3-multi-node-full-sharing.json");
    assert_eq!(c.cache.driver, CacheDriver::Redis);
    assert_eq!(c.cache_prefix(), "sockudo_cache:");
    assert_eq!(c.rate_limiter_prefix(), "sockudo_ratelimit:");
    assert_eq!(c.cache_redis(), c.adapter_redis());
    assert!(c.delta_compression.cluster_coordination);
}

#[test]
fn nats_with_separate_redis() {
    let c = load_fixture("4-multi-node-nats.json");
    assert_eq!(c.adapter.driver, AdapterDriver::Nats);
    assert_eq!(c.nats.servers.to_vec(), vec!["nats://127.0.0.1:4222"]);
    assert_eq!(c.nats.prefix, "sockudo");
    assert!(c.adapter_redis().is_none());
    // The limiter has no Redis of its own and no `database.redis`: it shares the cache's.
    assert_eq!(c.rate_limiter_redis(), c.cache_redis());
    assert!(c.cache_redis().is_some());
}

#[test]
fn redis_cluster() {
    let c = load_fixture("5-redis-cluster.json");
    assert_eq!(c.adapter.driver, AdapterDriver::RedisCluster);
    let Some(RedisTarget::Cluster(cluster)) = c.adapter_redis() else {
        panic!("no cluster")
    };
    assert_eq!(cluster.nodes.len(), 3);
    assert_eq!(cluster.nodes[0].address(), "127.0.0.1:7001");
    assert_eq!(c.cache_redis(), c.adapter_redis());
    assert_eq!(c.rate_limiter_redis(), c.adapter_redis());
}

/// The seed document's own examples, `//` comments and all, parse (they are partial configs:
/// some omit the Redis the driver needs, so only parsing is checked, not validation).
#[test]
fn seed_document_examples_parse() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "jsonc") {
            sockudo_config::load_file(&path).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert_eq!(n, 9);
}

/// What the operator writes is what the server reads: serialising and re-parsing is lossless.
#[test]
fn round_trip_is_lossless() {
    for name in [
        "1-single-node.json",
        "2-multi-node-redis.json",
        "3-multi-node-full-sharing.json",
        "4-multi-node-nats.json",
        "5-redis-cluster.json",
    ] {
        let c = load_fixture(name);
        let text = serde_json::to_string_pretty(&c).unwrap();
        let back = sockudo_config::parse_str(&text, sockudo_config::Format::Json).unwrap();
        assert_eq!(back, c, "{name}");
        let toml_text = toml::to_string(&c).unwrap();
        let back = sockudo_config::parse_str(&toml_text, sockudo_config::Format::Toml).unwrap();
        assert_eq!(back, c, "{name} via TOML");
    }
}

#[test]
fn schema_lists_every_section() {
    let schema = sockudo_config::json_schema();
    let props = schema["properties"].as_object().unwrap();
    for key in [
        "adapter",
        "cache",
        "rate_limiter",
        "delta_compression",
        "database",
        "nats",
        "apps",
        "webhooks",
        "metrics",
    ] {
        assert!(props.contains_key(key), "{key}");
    }
}
