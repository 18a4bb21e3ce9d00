//! TLS and credentials to real backends, the same for every consumer: the redis / redis-cluster
//! adapters, the cache, the rate limiter and delta coordination over `database.redis*` with a
//! throwaway CA (redis-server `--tls-port`), password and ACL-user protected Redis, and the nats
//! adapter and NATS KV coordinator over TLS with user/password, a token, or a `.creds` file
//! against an operator-mode (JWT) nats-server. Password / ACL-user protected Redis Cluster too.
//! A wrong CA or wrong credentials never panic and never fall back to local mode: the node
//! starts, readiness names the problem, publishes answer 503.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sockudo_config::{
    AdapterDriver, CacheDriver, ClusterNode, NatsConfig, NatsServers, RateLimiterDriver,
    RedisClusterConnection, RedisConnection, RedisTarget, ServerConfig, TlsConfig,
};
use sockudo_server::RunningServer;
use sockudo_server::delta::coordinator::nats::NatsCoordinator;
use sockudo_server::delta::coordinator::redis::RedisCoordinator;
use sockudo_server::delta::{Coordinator, StreamKey};
use sockudo_test_backends::{
    ClientAuth, NatsAuth, NatsOperator, NatsServer, NatsSetup, RedisCluster, RedisServer,
    RedisSetup, TestCa,
};

use common::fleet::{Backend, Node};
use common::*;

const EVENTUALLY: Duration = Duration::from_secs(20);

fn ca(name: &str) -> Arc<TestCa> {
    Arc::new(TestCa::generate(name).unwrap_or_else(|e| panic!("{e}")))
}

fn tls_with(ca: &TestCa) -> TlsConfig {
    TlsConfig {
        enabled: true,
        ca_file: Some(ca.ca_file.display().to_string()),
        ..TlsConfig::default()
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// A node config whose adapter, cache and rate limiter all use the Redis in `database`.
fn redis_everything(node: &str, driver: AdapterDriver) -> ServerConfig {
    let mut c = config();
    c.node_id = Some(node.into());
    c.adapter.driver = driver;
    c.adapter.prefix = "tls".into();
    c.adapter.heartbeat_interval_ms = 300;
    c.adapter.request_timeout_ms = 1000;
    let cluster = driver == AdapterDriver::RedisCluster;
    c.cache.driver = if cluster {
        CacheDriver::RedisCluster
    } else {
        CacheDriver::Redis
    };
    c.rate_limiter.enabled = true;
    c.rate_limiter.driver = if cluster {
        RateLimiterDriver::RedisCluster
    } else {
        RateLimiterDriver::Redis
    };
    // A long window: the limiter refills continuously, and the test reads exact counts.
    c.rate_limiter.api_rate_limit.max_requests = 1000;
    c.rate_limiter.api_rate_limit.window_seconds = 86_400;
    // Delta sequence numbers from the same Redis: the fourth consumer of the section.
    c.delta_compression.enabled = true;
    c.delta_compression.cluster_coordination = true;
    c
}

fn standalone(r: &RedisServer, tls: Option<TlsConfig>) -> RedisConnection {
    RedisConnection {
        host: Some("127.0.0.1".into()),
        port: Some(r.port),
        tls,
        ..RedisConnection::default()
    }
}

/// Every node of `cluster` as a seed, with `tls`.
fn cluster_section(cluster: &RedisCluster, tls: Option<TlsConfig>) -> RedisClusterConnection {
    RedisClusterConnection {
        nodes: cluster
            .nodes
            .iter()
            .map(|n| ClusterNode::HostPort {
                host: "127.0.0.1".into(),
                port: n.port,
            })
            .collect(),
        tls,
        ..RedisClusterConnection::default()
    }
}

async fn ready(server: &RunningServer) -> Value {
    let r = reqwest::get(format!("http://{}/ready", server.addr))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    serde_json::from_str(&r.text().await.unwrap()).unwrap()
}

/// Waits until `/ready` satisfies `ok`, failing with the last body after `EVENTUALLY`.
async fn wait_ready(server: &RunningServer, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let body = ready(server).await;
        if ok(&body) {
            return body;
        }
        assert!(start.elapsed() < EVENTUALLY, "{what}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn all_ok(server: &RunningServer) {
    let body = wait_ready(server, "every backend ok", |b| b["status"] == "ok").await;
    // Every node here coordinates delta sequence numbers on its adapter's backend.
    let coordination = &body["backends"]["delta_coordination"];
    assert_eq!(
        coordination["driver"], body["backends"]["adapter"]["driver"],
        "{body}"
    );
    assert_eq!(coordination["status"], "ok", "{body}");
}

/// Waits until readiness reports the delta coordinator (on `driver`) degraded with its own
/// connection's error, containing every one of `needles`. Callers have published nothing yet:
/// the coordinator's backend is watched from start-up, like the adapter's and the cache's.
async fn coordination_degraded(server: &RunningServer, driver: &str, needles: &[&str]) -> Value {
    let body = wait_ready(
        server,
        "delta coordination degraded before any publish",
        |b| {
            let e = backend_error(b, "delta_coordination");
            b["backends"]["delta_coordination"]["status"] == "degraded"
                && !e.is_empty()
                && e != "connecting"
                && needles.iter().all(|n| e.contains(&n.to_lowercase()))
        },
    )
    .await;
    assert_eq!(
        body["backends"]["delta_coordination"]["driver"], driver,
        "{body}"
    );
    assert_eq!(body["status"], "degraded", "{body}");
    body
}

/// A subscriber on every node receives a publish made through each node.
async fn delivery_across(nodes: &[RunningServer]) {
    let mut clients = Vec::new();
    for n in nodes {
        let mut c = connect(n).await;
        let ok = c.subscribe("news").await;
        assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
        clients.push(c);
    }
    for (i, n) in nodes.iter().enumerate() {
        let data = format!("from-{i}");
        let (s, body) = Api::new(n).trigger("news", "ev", &data).await;
        assert_eq!(s, 200, "{body}");
        for c in &mut clients {
            let f = c.expect_event("ev").await;
            assert_eq!(f["data"], data);
        }
    }
}

/// A cache-channel event published on the first node replays on the second; the limiter's
/// remaining count is shared by both.
async fn cache_and_limiter_shared(nodes: &[RunningServer]) {
    let (s, _) = Api::new(&nodes[0]).trigger("cache-t", "price", "42").await;
    assert_eq!(s, 200);
    let mut c = connect(&nodes[1]).await;
    let ok = c.subscribe("cache-t").await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    let frame = c.next().await;
    assert_eq!(frame["event"], "price", "{frame}");
    assert_eq!(frame["data"], "42");

    let mut last = None;
    for n in nodes.iter().cycle().take(4) {
        let r = list_channels(n).await;
        assert_eq!(r.status(), 200);
        let left: u64 = r.headers()["x-ratelimit-remaining"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        if let Some(prev) = last {
            assert_eq!(left, prev - 1, "one count across nodes");
        }
        last = Some(left);
    }
}

/// A signed `GET /apps/{id}/channels`: an API request the limiter counts.
async fn list_channels(node: &RunningServer) -> reqwest::Response {
    let api = Api::new(node);
    let url = api.signed_url("GET", &format!("/apps/{APP_ID}/channels"), &[], b"", now());
    api.http.get(url).send().await.unwrap()
}

/// Nodes whose limiter allows `limit` API requests (keys under their own prefix): requests
/// alternating between them are refused once `limit` passed in total, on whichever node.
async fn limit_hit_across(nodes: &[RunningServer], limit: usize) {
    for (i, n) in nodes.iter().cycle().take(limit + 2).enumerate() {
        let r = list_channels(n).await;
        let want = if i < limit { 200 } else { 429 };
        assert_eq!(r.status(), want, "request {i} of a shared limit of {limit}");
    }
}

async fn next_seq_twice(c: &dyn Coordinator) {
    for want in 1..=2 {
        let got = c
            .next_seq(StreamKey {
                app_id: "1",
                channel: "tls-stream",
                conflation_key: None,
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, want);
    }
}

/// Redis with `requirepass default-secret` and an ACL user `sockudo` / `user-secret`.
fn password_setup() -> RedisSetup {
    RedisSetup {
        password: Some("default-secret".into()),
        user: Some(("sockudo".into(), "user-secret".into())),
        ..RedisSetup::default()
    }
}

/// The default user's password as a `password_file` in `dir`.
fn password_file(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("redis-password");
    std::fs::write(&path, "default-secret\n").unwrap();
    path
}

/// The error of a fresh Redis coordinator's first number on `target`, lower-cased.
async fn redis_coordinator_error(target: &RedisTarget, prefix: &str) -> String {
    let coordinator = RedisCoordinator::connect(target, prefix, Duration::from_secs(60))
        .await
        .unwrap();
    let key = StreamKey {
        app_id: "1",
        channel: "c",
        conflation_key: None,
    };
    coordinator
        .next_seq(key)
        .await
        .unwrap_err()
        .to_string()
        .to_lowercase()
}

/// The error of one backend in `/ready`, lower-cased.
fn backend_error(body: &Value, backend: &str) -> String {
    body["backends"][backend]["error"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase()
}

/// Waits until the adapter, cache and rate limiter all report degraded with an error that
/// `cause` accepts (failing after `EVENTUALLY`), then checks a publish is refused (503), never
/// delivered locally only.
async fn every_redis_consumer_degraded(
    server: &RunningServer,
    what: &str,
    cause: impl Fn(&str) -> bool,
) -> Value {
    // "connecting" comes first; the transport's own error follows once an attempt fails.
    let body = wait_ready(server, what, |b| {
        ["adapter", "cache", "rate_limiter"]
            .iter()
            .all(|k| b["backends"][k]["status"] == "degraded" && cause(&backend_error(b, k)))
    })
    .await;
    assert_eq!(body["status"], "degraded");
    let (s, reply) = Api::new(server).trigger("news", "ev", "x").await;
    assert_eq!(s, 503, "{reply}");
    body
}

// ---------------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_for_every_consumer() {
    let ca = ca("sockudo-test-ca");
    let redis = {
        let ca = ca.clone();
        blocking(move || RedisServer::start_with(RedisSetup::tls(&ca, ClientAuth::No)).unwrap())
            .await
    };
    let mut nodes = Vec::new();
    for name in ["tls-a", "tls-b"] {
        let mut c = redis_everything(name, AdapterDriver::Redis);
        c.database.redis = Some(standalone(&redis, Some(tls_with(&ca))));
        nodes.push(start(c).await);
    }
    for n in &nodes {
        all_ok(n).await;
    }
    delivery_across(&nodes).await;
    cache_and_limiter_shared(&nodes).await;
    let keys = redis.cli(&["DBSIZE"]).unwrap();
    assert!(
        keys.trim().parse::<u64>().unwrap() > 0,
        "keys written over TLS"
    );

    // Delta coordination uses the same section, TLS included.
    let target = RedisTarget::Standalone(standalone(&redis, Some(tls_with(&ca))));
    let coordinator = RedisCoordinator::connect(&target, "tls", Duration::from_secs(60))
        .await
        .unwrap();
    next_seq_twice(&coordinator).await;
}

/// `tls-auth-clients yes`: the client certificate from `tls.cert_file`/`tls.key_file` is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_mutual_tls() {
    let ca = ca("sockudo-mtls-ca");
    let redis = {
        let ca = ca.clone();
        blocking(move || RedisServer::start_with(RedisSetup::tls(&ca, ClientAuth::Yes)).unwrap())
            .await
    };
    let mut with_cert = tls_with(&ca);
    with_cert.cert_file = Some(ca.client_cert_file.display().to_string());
    with_cert.key_file = Some(ca.client_key_file.display().to_string());
    let mut c = redis_everything("mtls", AdapterDriver::Redis);
    c.database.redis = Some(standalone(&redis, Some(with_cert)));
    let server = start(c).await;
    all_ok(&server).await;
    delivery_across(std::slice::from_ref(&server)).await;

    // Without a client certificate the server refuses the handshake: reported, not hidden.
    let mut c = redis_everything("mtls-nocert", AdapterDriver::Redis);
    c.database.redis = Some(standalone(&redis, Some(tls_with(&ca))));
    let server = start(c).await;
    let body = wait_ready(&server, "degraded without client cert", |b| {
        b["backends"]["cache"]["status"] == "degraded"
            && b["backends"]["adapter"]["status"] == "degraded"
    })
    .await;
    assert_eq!(body["status"], "degraded", "{body}");
    coordination_degraded(&server, "redis", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_over_tls_for_every_consumer() {
    let ca = ca("sockudo-cluster-ca");
    let cluster = {
        let ca = ca.clone();
        blocking(move || {
            RedisCluster::start_with(3, 0, RedisSetup::tls(&ca, ClientAuth::No)).unwrap()
        })
        .await
    };
    let section = cluster_section(&cluster, Some(tls_with(&ca)));
    let mut nodes = Vec::new();
    for name in ["ctls-a", "ctls-b"] {
        let mut c = redis_everything(name, AdapterDriver::RedisCluster);
        c.database.redis_cluster = Some(section.clone());
        nodes.push(start(c).await);
    }
    for n in &nodes {
        all_ok(n).await;
    }
    delivery_across(&nodes).await;
    cache_and_limiter_shared(&nodes).await;
    let coordinator = RedisCoordinator::connect(
        &RedisTarget::Cluster(section),
        "ctls",
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    next_seq_twice(&coordinator).await;
}

/// A CA that did not sign the server's certificate: the node starts, every Redis consumer is
/// degraded with a certificate error, and an HTTP publish is refused (503), never delivered
/// locally only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_wrong_ca_is_reported() {
    let good = ca("sockudo-good-ca");
    let wrong = ca("sockudo-wrong-ca");
    let redis = {
        let good = good.clone();
        blocking(move || RedisServer::start_with(RedisSetup::tls(&good, ClientAuth::No)).unwrap())
            .await
    };
    let mut c = redis_everything("wrong-ca", AdapterDriver::Redis);
    c.database.redis = Some(standalone(&redis, Some(tls_with(&wrong))));
    let server = start(c).await;
    coordination_degraded(&server, "redis", &["certificate"]).await;
    every_redis_consumer_degraded(&server, "every Redis consumer degraded", |e| {
        e.contains("certificate") || e.contains("unknownissuer")
    })
    .await;
    // The coordinator's own connection names the same cause.
    let target = RedisTarget::Standalone(standalone(&redis, Some(tls_with(&wrong))));
    let e = redis_coordinator_error(&target, "wrong").await;
    assert!(e.contains("certificate"), "{e}");
}

/// `requirepass` and an ACL user: the adapter, cache and limiter authenticate with
/// `username`/`password` (inline) or `password_file`; a wrong password is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_with_password_and_acl_user() {
    let redis = blocking(|| RedisServer::start_with(password_setup()).unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let pw_file = password_file(&dir);

    let mut acl = redis_everything("pw-a", AdapterDriver::Redis);
    acl.database.redis = Some(RedisConnection {
        username: Some("sockudo".into()),
        password: Some("user-secret".into()),
        ..standalone(&redis, None)
    });
    let mut file = redis_everything("pw-b", AdapterDriver::Redis);
    file.database.redis = Some(RedisConnection {
        password_file: Some(pw_file.display().to_string()),
        ..standalone(&redis, None)
    });
    let nodes = [start(acl).await, start(file).await];
    for n in &nodes {
        all_ok(n).await;
    }
    delivery_across(&nodes).await;
    cache_and_limiter_shared(&nodes).await;

    let mut wrong = redis_everything("pw-wrong", AdapterDriver::Redis);
    wrong.database.redis = Some(RedisConnection {
        username: Some("sockudo".into()),
        password: Some("not-it".into()),
        ..standalone(&redis, None)
    });
    let server = start(wrong).await;
    coordination_degraded(&server, "redis", &["password"]).await;
    let body = wait_ready(&server, "wrong password degraded", |b| {
        b["backends"]["adapter"]["status"] == "degraded"
            && b["backends"]["cache"]["status"] == "degraded"
    })
    .await;
    for backend in ["adapter", "cache", "rate_limiter"] {
        let e = backend_error(&body, backend);
        assert!(
            e.contains("wrongpass") || e.contains("password"),
            "{backend}: {body}"
        );
    }
    let (s, _) = Api::new(&server).trigger("news", "ev", "x").await;
    assert_eq!(s, 503);
}

/// The cluster twin of `redis_wrong_ca_is_reported`: the cluster client's connections to every
/// seed fail the handshake; every Redis consumer is degraded with the certificate error and a
/// publish is refused (503), never delivered locally only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_wrong_ca_is_reported() {
    let good = ca("sockudo-cluster-good-ca");
    let wrong = ca("sockudo-cluster-wrong-ca");
    let cluster = {
        let good = good.clone();
        blocking(move || {
            RedisCluster::start_with(3, 0, RedisSetup::tls(&good, ClientAuth::No)).unwrap()
        })
        .await
    };
    let section = cluster_section(&cluster, Some(tls_with(&wrong)));
    let mut c = redis_everything("cluster-wrong-ca", AdapterDriver::RedisCluster);
    c.database.redis_cluster = Some(section.clone());
    let server = start(c).await;
    coordination_degraded(&server, "redis-cluster", &["certificate"]).await;
    every_redis_consumer_degraded(&server, "every Redis Cluster consumer degraded", |e| {
        e.contains("certificate") || e.contains("unknownissuer")
    })
    .await;
    let e = redis_coordinator_error(&RedisTarget::Cluster(section), "cwrong").await;
    assert!(e.contains("certificate"), "{e}");
}

/// A Redis Cluster whose every node has `requirepass`/`masterauth` and an ACL user: the
/// redis-cluster adapter, cache, limiter and delta coordinator authenticate with
/// `username`/`password` (inline) or `password_file` (default user); a wrong password is
/// reported by every consumer and publishes are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_with_password_and_acl_user() {
    let cluster = blocking(|| RedisCluster::start_with(3, 0, password_setup()).unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let pw_file = password_file(&dir);
    let acl = RedisClusterConnection {
        username: Some("sockudo".into()),
        password: Some("user-secret".into()),
        ..cluster_section(&cluster, None)
    };
    let file = RedisClusterConnection {
        password_file: Some(pw_file.display().to_string()),
        ..cluster_section(&cluster, None)
    };
    let configure = |name: &str, section: &RedisClusterConnection| {
        let mut c = redis_everything(name, AdapterDriver::RedisCluster);
        c.database.redis_cluster = Some(section.clone());
        c
    };
    let nodes = [
        start(configure("cpw-a", &acl)).await,
        start(configure("cpw-b", &file)).await,
    ];
    for n in &nodes {
        all_ok(n).await;
    }
    delivery_across(&nodes).await;
    cache_and_limiter_shared(&nodes).await;
    let coordinator = RedisCoordinator::connect(
        &RedisTarget::Cluster(acl.clone()),
        "cpw",
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    next_seq_twice(&coordinator).await;

    // A small limit, counted in the cluster: hit whichever node serves the request.
    const LIMIT: usize = 3;
    let mut limited = Vec::new();
    for (name, section) in [("cpw-lim-a", &acl), ("cpw-lim-b", &file)] {
        let mut c = configure(name, section);
        c.rate_limiter.redis.prefix = Some("cpw-limit:".into());
        c.rate_limiter.api_rate_limit.max_requests = LIMIT as u64;
        limited.push(start(c).await);
    }
    for n in &limited {
        all_ok(n).await;
    }
    limit_hit_across(&limited, LIMIT).await;

    let wrong = RedisClusterConnection {
        password: Some("not-it".into()),
        ..acl.clone()
    };
    let server = start(configure("cpw-wrong", &wrong)).await;
    coordination_degraded(&server, "redis-cluster", &["password"]).await;
    every_redis_consumer_degraded(&server, "wrong cluster password degraded", |e| {
        e.contains("wrongpass") || e.contains("password")
    })
    .await;
    let e = redis_coordinator_error(&RedisTarget::Cluster(wrong), "cpw-wrong").await;
    assert!(e.contains("wrongpass") || e.contains("password"), "{e}");
}

/// The same through the binary: `sockudo` processes whose config file carries the `tls` block,
/// on a TLS-only Redis and a TLS-only 3-master cluster, with delta coordination on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_fleets_of_processes() {
    let ca = ca("sockudo-fleet-ca");
    let backends = {
        let ca = ca.clone();
        blocking(move || {
            let setup = RedisSetup::tls(&ca, ClientAuth::Optional);
            [
                Backend::Redis(RedisServer::start_with(setup.clone()).unwrap()),
                Backend::Cluster(RedisCluster::start_with(3, 0, setup).unwrap()),
            ]
        })
        .await
    };
    for backend in &backends {
        let nodes: Vec<Node> = (0..2)
            .map(|i| {
                let mut c = config();
                let name = format!("fleet-{i}");
                c.port = sockudo_test_backends::free_port();
                c.node_id = Some(name.clone());
                c.metrics.enabled = false;
                c.delta_compression.enabled = true;
                c.delta_compression.cluster_coordination = true;
                // Every publish takes a sequence number from the coordinator (over TLS).
                c.delta_compression.min_message_size = 0;
                backend.configure_tls(&mut c, Some(tls_with(&ca)));
                Node::launch(&name, &c)
            })
            .collect();
        for n in &nodes {
            n.wait_ready().await;
        }
        let mut sub = nodes[0].connect().await;
        let ok = sub.subscribe("fleet").await;
        assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
        let (s, body) = nodes[1].api().trigger("fleet", "ev", "over-tls").await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(sub.expect_event("ev").await["data"], "over-tls");
        for n in &nodes {
            let body = n.ready_body().await.unwrap();
            assert_eq!(body["backends"]["adapter"]["status"], "ok", "{body}");
            assert_eq!(
                body["backends"]["delta_coordination"]["status"], "ok",
                "{body}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// NATS
// ---------------------------------------------------------------------------------------------

fn nats_node(name: &str, nats: &NatsConfig) -> ServerConfig {
    let mut c = config();
    c.node_id = Some(name.into());
    c.adapter.driver = AdapterDriver::Nats;
    c.adapter.prefix = "tls".into();
    c.adapter.heartbeat_interval_ms = 300;
    c.adapter.request_timeout_ms = 1000;
    c.nats = nats.clone();
    c.delta_compression.enabled = true;
    c.delta_compression.cluster_coordination = true;
    c
}

fn nats_section(server: &NatsServer) -> NatsConfig {
    NatsConfig {
        servers: NatsServers::List(vec![server.url()]),
        prefix: "tls".into(),
        connection_timeout_ms: 2000,
        ..NatsConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_over_tls_with_user_password() {
    let ca = ca("sockudo-nats-ca");
    let nats = {
        let ca = ca.clone();
        blocking(move || {
            NatsServer::start_with(NatsSetup {
                tls: Some(ca),
                verify_clients: false,
                auth: Some(NatsAuth::UserPassword(
                    "sockudo".into(),
                    "nats-secret".into(),
                )),
            })
            .unwrap()
        })
        .await
    };
    let mut section = nats_section(&nats);
    section.tls = Some(tls_with(&ca));
    section.username = Some("sockudo".into());
    section.password = Some("nats-secret".into());
    let nodes = [
        start(nats_node("nats-a", &section)).await,
        start(nats_node("nats-b", &section)).await,
    ];
    for n in &nodes {
        all_ok(n).await;
    }
    delivery_across(&nodes).await;
    let kv = NatsCoordinator::new(section.clone(), "tlsuser", Duration::from_secs(60));
    next_seq_twice(&kv).await;

    // Wrong password: the node starts, readiness says why, publishes are refused.
    let mut wrong = section.clone();
    wrong.password = Some("nope".into());
    let server = start(nats_node("nats-wrong", &wrong)).await;
    coordination_degraded(
        &server,
        "nats",
        &["authorization", "credentials from nats.username sockudo"],
    )
    .await;
    let body = wait_ready(&server, "wrong nats password reported", |b| {
        backend_error(b, "adapter").contains("authorization")
    })
    .await;
    assert_eq!(body["status"], "degraded");
    assert!(
        backend_error(&body, "adapter").contains("credentials from nats.username sockudo"),
        "names the refused credentials: {body}"
    );
    let (s, _) = Api::new(&server).trigger("news", "ev", "x").await;
    assert_eq!(s, 503);
    let kv = NatsCoordinator::new(wrong, "tlswrong", Duration::from_secs(60));
    let key = StreamKey {
        app_id: "1",
        channel: "c",
        conflation_key: None,
    };
    let e = kv.next_seq(key).await.unwrap_err().to_string();
    assert!(e.to_lowercase().contains("authorization"), "{e}");

    // A CA that did not sign the server's certificate.
    let other = self::ca("sockudo-other-ca");
    let mut untrusted = section.clone();
    untrusted.tls = Some(tls_with(&other));
    let server = start(nats_node("nats-untrusted", &untrusted)).await;
    coordination_degraded(&server, "nats", &["certificate"]).await;
    let body = wait_ready(&server, "untrusted nats certificate reported", |b| {
        backend_error(b, "adapter").contains("certificate")
    })
    .await;
    assert_eq!(body["status"], "degraded");
    let kv = NatsCoordinator::new(untrusted, "tlsca", Duration::from_secs(60));
    let e = kv.next_seq(key).await.unwrap_err().to_string();
    assert!(e.contains("certificate"), "{e}");
}

/// `verify: true`: the server requires a client certificate, sent from `tls.cert_file`/`key_file`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_mutual_tls() {
    let ca = ca("sockudo-nats-mtls-ca");
    let nats = {
        let ca = ca.clone();
        blocking(move || {
            NatsServer::start_with(NatsSetup {
                tls: Some(ca),
                verify_clients: true,
                auth: None,
            })
            .unwrap()
        })
        .await
    };
    let mut section = nats_section(&nats);
    let mut tls = tls_with(&ca);
    tls.cert_file = Some(ca.client_cert_file.display().to_string());
    tls.key_file = Some(ca.client_key_file.display().to_string());
    section.tls = Some(tls);
    let nodes = [
        start(nats_node("mtls-a", &section)).await,
        start(nats_node("mtls-b", &section)).await,
    ];
    for n in &nodes {
        all_ok(n).await;
    }
    delivery_across(&nodes).await;
    next_seq_twice(&NatsCoordinator::new(
        section.clone(),
        "mtls",
        Duration::from_secs(60),
    ))
    .await;
    // Without the client certificate the server refuses: reported, publishes refused.
    let mut no_cert = section;
    no_cert.tls = Some(tls_with(&ca));
    let server = start(nats_node("mtls-nocert", &no_cert)).await;
    coordination_degraded(&server, "nats", &[]).await;
    let body = wait_ready(&server, "missing client certificate reported", |b| {
        b["backends"]["adapter"]["status"] == "degraded"
            && b["backends"]["adapter"]["error"] != "connecting"
    })
    .await;
    assert_eq!(body["status"], "degraded");
    let (s, _) = Api::new(&server).trigger("news", "ev", "x").await;
    assert_eq!(s, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_with_token() {
    let nats = blocking(|| {
        NatsServer::start_with(NatsSetup {
            auth: Some(NatsAuth::Token("s3cret-token".into())),
            ..NatsSetup::default()
        })
        .unwrap()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let mut inline = nats_section(&nats);
    inline.token = Some("s3cret-token".into());
    let mut from_file = nats_section(&nats);
    from_file.token_file = Some(token_file.display().to_string());
    let nodes = [
        start(nats_node("tok-a", &inline)).await,
        start(nats_node("tok-b", &from_file)).await,
    ];
    for n in &nodes {
        all_ok(n).await;
    }
    delivery_across(&nodes).await;
    next_seq_twice(&NatsCoordinator::new(
        from_file,
        "token",
        Duration::from_secs(60),
    ))
    .await;

    let mut wrong = nats_section(&nats);
    wrong.token = Some("guess".into());
    let server = start(nats_node("tok-wrong", &wrong)).await;
    coordination_degraded(
        &server,
        "nats",
        &["authorization", "credentials from nats.token"],
    )
    .await;
    let body = wait_ready(&server, "wrong token reported", |b| {
        backend_error(b, "adapter").contains("authorization")
    })
    .await;
    assert_eq!(body["status"], "degraded");
    assert!(
        backend_error(&body, "adapter").contains("credentials from nats.token"),
        "{body}"
    );
}

/// Operator mode (decentralized JWT auth): the node's `.creds` file (`nats.credentials_file`)
/// holds a user JWT issued by an account the server trusts through its operator, and the nkey
/// seed that signs the server's nonce. The account's JWT enables JetStream, so the KV delta
/// coordinator works too. Creds issued under another operator are refused and reported; a
/// missing or malformed file fails startup naming the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_operator_mode_with_creds_file() {
    let operator = NatsOperator::generate("sockudo-test").unwrap_or_else(|e| panic!("{e}"));
    let nats = {
        let operator = operator.clone();
        blocking(move || {
            NatsServer::start_with(NatsSetup {
                auth: Some(NatsAuth::Operator(Box::new(operator))),
                ..NatsSetup::default()
            })
            .unwrap()
        })
        .await
    };
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let with_creds = |path: &str| NatsConfig {
        credentials_file: Some(path.to_string()),
        ..nats_section(&nats)
    };
    let creds_a = write("a.creds", &operator.user_creds("sockudo-a").unwrap());
    let creds_b = write("b.creds", &operator.user_creds("sockudo-b").unwrap());
    let nodes = [
        start(nats_node("creds-a", &with_creds(&creds_a))).await,
        start(nats_node("creds-b", &with_creds(&creds_b))).await,
    ];
    for n in &nodes {
        all_ok(n).await;
    }
    delivery_across(&nodes).await;
    // KV needs JetStream in the account: without limits in its JWT this fails with
    // "JetStream not enabled for account".
    next_seq_twice(&NatsCoordinator::new(
        with_creds(&creds_a),
        "creds",
        Duration::from_secs(60),
    ))
    .await;

    // A user of another operator's account: the server does not know the account.
    let stranger = NatsOperator::generate("stranger").unwrap();
    let foreign = write("foreign.creds", &stranger.user_creds("intruder").unwrap());
    let server = start(nats_node("creds-foreign", &with_creds(&foreign))).await;
    coordination_degraded(&server, "nats", &["authorization", &foreign]).await;
    let body = wait_ready(&server, "foreign creds reported", |b| {
        backend_error(b, "adapter").contains("authorization")
    })
    .await;
    assert_eq!(body["status"], "degraded");
    assert!(
        backend_error(&body, "adapter").contains(&foreign.to_lowercase()),
        "names the creds file: {body}"
    );
    let (s, _) = Api::new(&server).trigger("news", "ev", "x").await;
    assert_eq!(s, 503);
    let key = StreamKey {
        app_id: "1",
        channel: "c",
        conflation_key: None,
    };
    let kv = NatsCoordinator::new(with_creds(&foreign), "foreign", Duration::from_secs(60));
    let e = kv.next_seq(key).await.unwrap_err().to_string();
    assert!(
        e.to_lowercase().contains("authorization") && e.contains(&foreign),
        "{e}"
    );

    // A missing file and one that is not a creds file: configuration errors, found at startup.
    let missing = dir.path().join("missing.creds").display().to_string();
    let garbage = write("garbage.creds", "not a creds file\n");
    for path in [&missing, &garbage] {
        let e = sockudo_server::start(nats_node("creds-bad", &with_creds(path)), None)
            .await
            .err()
            .unwrap_or_else(|| panic!("{path}: the node must not start"))
            .to_string();
        assert!(
            e.contains("nats.credentials_file") && e.contains(path.as_str()),
            "{e}"
        );
        let kv = NatsCoordinator::new(with_creds(path), "bad", Duration::from_secs(60));
        let e = kv.next_seq(key).await.unwrap_err().to_string();
        assert!(e.contains(path.as_str()), "{e}");
    }
}
