//! The config rendered for each seed example loads with the server's own config crate and means
//! the same as the matching seed fixture, addresses and secret paths aside.

use std::path::PathBuf;

use sockudo_config::{
    ClusterNode, ConsumerRedisConfig, Format, NatsServers, RedisConnection, ServerConfig, parse_str,
};
use sockudo_operator::build::server_config::render;

use super::support::Example;

const PAIRS: &[(&str, &str)] = &[
    ("1-single-node.yaml", "1-single-node.json"),
    ("2-multi-node-redis.yaml", "2-multi-node-redis.json"),
    (
        "3-multi-node-full-sharing.yaml",
        "3-multi-node-full-sharing.json",
    ),
    ("4-multi-node-nats.yaml", "4-multi-node-nats.json"),
    ("5-redis-cluster.yaml", "5-redis-cluster.json"),
];

const ADDR: &str = "<address>";

fn fixture(name: &str) -> ServerConfig {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../server/config/tests/fixtures")
        .join(name);
    sockudo_config::load(Some(&path), |_| None).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn connection(c: &mut RedisConnection) {
    *c = RedisConnection {
        host: Some(ADDR.into()),
        ..RedisConnection::default()
    };
}

fn nodes(n: &mut Vec<ClusterNode>) {
    if !n.is_empty() {
        *n = vec![ClusterNode::Url(ADDR.into())];
    }
}

fn consumer(c: &mut ConsumerRedisConfig) {
    let prefix = c.prefix.take();
    let own = c.own_connection().is_some();
    let cluster = c.nodes.is_some();
    *c = ConsumerRedisConfig {
        prefix,
        host: own.then(|| ADDR.into()),
        nodes: cluster.then(|| vec![ClusterNode::Url(ADDR.into())]),
        ..ConsumerRedisConfig::default()
    };
}

/// Replaces every address and credential by a placeholder, keeping the shape.
fn without_addresses(mut c: ServerConfig) -> ServerConfig {
    c.node_id = None;
    if let Some(r) = &mut c.database.redis {
        connection(r);
    }
    if let Some(r) = &mut c.database.redis_cluster {
        nodes(&mut r.nodes);
        r.username = None;
        r.password = None;
        r.password_file = None;
        r.tls = None;
    }
    consumer(&mut c.cache.redis);
    consumer(&mut c.rate_limiter.redis);
    c.nats.servers = NatsServers::List(vec![ADDR.into()]);
    c.nats.username = None;
    c.nats.password = None;
    c.nats.password_file = None;
    c.nats.token = None;
    c.nats.token_file = None;
    c.nats.credentials_file = None;
    for app in &mut c.apps {
        app.key = None;
        app.key_file = None;
        app.secret = None;
        app.secret_file = None;
    }
    c
}

#[test]
fn rendered_configs_are_equivalent_to_the_seed() {
    for (example, fixture_name) in PAIRS {
        let ex = Example::load(example);
        let rendered = render(&ex.inputs());
        let text = serde_json::to_string_pretty(&rendered).unwrap();
        // What the server will parse: the text, not the struct.
        let parsed = parse_str(&text, Format::Json).unwrap_or_else(|e| panic!("{example}: {e}"));
        let errors = parsed.validate();
        assert!(errors.is_empty(), "{example}: {errors:?}");
        assert_eq!(
            without_addresses(parsed),
            without_addresses(fixture(fixture_name)),
            "{example} is not equivalent to {fixture_name}"
        );
    }
}

#[test]
fn no_secret_is_rendered_inline() {
    for name in super::support::example_names() {
        let ex = Example::load(&name);
        let text = serde_json::to_string(&render(&ex.inputs())).unwrap();
        for secret in [
            "app-secret",
            "app-key",
            "change-me",
            "generated-test-password",
        ] {
            assert!(
                !text.contains(secret),
                "{name}: `{secret}` is in the ConfigMap"
            );
        }
        let parsed = parse_str(&text, Format::Json).unwrap();
        assert!(
            parsed.validate().is_empty(),
            "{name}: {:?}",
            parsed.validate()
        );
        for app in &parsed.apps {
            assert!(app.key.is_none() && app.secret.is_none());
            assert!(app.key_file.is_some() && app.secret_file.is_some());
        }
    }
}

/// `spec.server`'s tunables reach the rendered config, which the server's config crate accepts;
/// unset ones keep the server's defaults.
#[test]
fn server_tunables_reach_the_config() {
    let mut example = Example::load("1-single-node.yaml");
    let defaults = render(&example.inputs());
    assert_eq!(defaults.http_api, ServerConfig::default().http_api);

    let server = example
        .cluster
        .spec
        .server
        .get_or_insert_with(Default::default);
    server.activity_timeout_seconds = Some(30);
    server.http_keep_alive_timeout_seconds = Some(620);
    server.http_header_read_timeout_seconds = Some(0);
    server.http_request_timeout_seconds = Some(5);
    let rendered = render(&example.inputs());
    let text = serde_json::to_string(&rendered).unwrap();
    let loaded = parse_str(&text, Format::Json).expect("the server accepts the rendered config");
    assert_eq!(loaded.activity_timeout, 30);
    assert_eq!(loaded.http_api.keep_alive_timeout_secs, 620);
    assert_eq!(loaded.http_api.header_read_timeout_secs, 0);
    assert_eq!(loaded.http_api.request_timeout_secs, 5);
    assert_eq!(
        loaded.http_api.request_limit_kb,
        ServerConfig::default().http_api.request_limit_kb
    );
}
