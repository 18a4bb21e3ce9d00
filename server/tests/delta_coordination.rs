//! The delta coordinators against real backends: a Redis server, a 3-master Redis Cluster and
//! NATS JetStream. Several "nodes" (coordinator instances with their own connections) number one
//! stream concurrently: no lost increment, no number twice, each node sees its numbers strictly
//! increase, and the scheduled full messages fall on the multiples of the interval.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sockudo_config::{
    ClusterNode, DeltaCompressionConfig, NatsConfig, NatsServers, RedisClusterConnection,
    RedisConnection, RedisTarget,
};
use sockudo_server::adapter::BackendHealth;
use sockudo_server::delta::coordinator::nats::NatsCoordinator;
use sockudo_server::delta::coordinator::redis::RedisCoordinator;
use sockudo_server::delta::{Coordinator, DeltaMetrics, DeltaService, StreamKey};
use sockudo_test_backends::{NatsServer, RedisCluster, RedisServer};

const NODES: usize = 6;
const PER_NODE: usize = 40;
const INTERVAL: u64 = 10;
const TTL: Duration = Duration::from_secs(600);

fn service(c: Arc<dyn Coordinator>) -> DeltaService {
    DeltaService::new(
        DeltaCompressionConfig {
            full_message_interval: INTERVAL,
            min_message_size: 0,
            conflation_key: Some("asset".into()),
            ..Default::default()
        },
        c,
        DeltaMetrics::default(),
    )
}

fn standalone(url: &str) -> RedisTarget {
    RedisTarget::Standalone(RedisConnection {
        url: Some(url.into()),
        ..RedisConnection::default()
    })
}

fn cluster_target(urls: &[String]) -> RedisTarget {
    RedisTarget::Cluster(RedisClusterConnection {
        nodes: urls.iter().cloned().map(ClusterNode::Url).collect(),
        ..RedisClusterConnection::default()
    })
}

async fn redis_coordinator(target: &RedisTarget) -> RedisCoordinator {
    RedisCoordinator::connect(target, "sockudo", TTL)
        .await
        .expect("coordinator")
}

fn nats_config(url: &str) -> NatsConfig {
    NatsConfig {
        servers: NatsServers::List(vec![url.into()]),
        ..NatsConfig::default()
    }
}

/// `NODES` services publishing concurrently on one stream (and a second, conflated stream).
async fn concurrent_publishers<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Coordinator>>,
{
    let mut services: Vec<Arc<DeltaService>> = Vec::new();
    for _ in 0..NODES {
        services.push(Arc::new(service(make().await)));
    }
    let mut tasks = Vec::new();
    for s in services {
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for _ in 0..PER_NODE {
                let d = s
                    .decide(
                        "app",
                        "private-chan:1@x",
                        "tick",
                        r#"{"asset":"BTC/USD"}"#,
                        1000,
                        false,
                    )
                    .await
                    .unwrap_or_else(|| panic!("no decision: {:?}", s.health()));
                assert_eq!(d.conflation_key.as_deref(), Some("BTC/USD"));
                mine.push((d.seq, d.full));
            }
            mine
        }));
    }
    let mut all = BTreeSet::new();
    for t in tasks {
        let mine = t.await.unwrap();
        for w in mine.windows(2) {
            assert!(w[0].0 < w[1].0, "a node's numbers increase: {mine:?}");
        }
        for (seq, full) in mine {
            assert!(all.insert(seq), "{seq} given twice");
            assert_eq!(full, seq % INTERVAL == 0, "seq {seq}");
        }
    }
    let n = (NODES * PER_NODE) as u64;
    assert_eq!(all, (1..=n).collect::<BTreeSet<_>>(), "no lost increments");
    // Another stream (other conflation value) counts on its own.
    let s = service(make().await);
    let d = s
        .decide(
            "app",
            "private-chan:1@x",
            "tick",
            r#"{"asset":"ETH"}"#,
            1000,
            false,
        )
        .await
        .unwrap();
    assert_eq!(d.seq, 1);
}

/// The backend goes away: publishes fall back (no decision), health degrades; it comes back:
/// the service recovers by itself.
async fn outage_and_recovery(s: &DeltaService, kill: impl FnOnce(), restart: impl FnOnce()) {
    let decide = || s.decide("app", "outage", "e", "{}", 1000, false);
    assert!(decide().await.is_some());
    kill();
    let mut fell_back = false;
    for _ in 0..20 {
        if decide().await.is_none() {
            fell_back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(fell_back, "no fallback while the backend is down");
    assert!(matches!(s.health(), BackendHealth::Degraded(_)));
    restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if decide().await.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "did not recover: {:?}",
            s.health()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(s.health(), BackendHealth::Ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_standalone() {
    let mut redis = RedisServer::start().expect("redis-server");
    let target = standalone(&redis.url());
    concurrent_publishers(|| async {
        Arc::new(redis_coordinator(&target).await) as Arc<dyn Coordinator>
    })
    .await;
    // Idle keys expire.
    let ttl: i64 = redis
        .cli(&["TTL", "sockudo:delta:{app:private-chan=3A1@x}:kBTC/USD"])
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(ttl > 0 && ttl <= 600, "ttl {ttl}");
    let s = service(Arc::new(redis_coordinator(&target).await));
    let port = redis.port;
    let r = std::cell::RefCell::new(&mut redis);
    outage_and_recovery(
        &s,
        || r.borrow_mut().kill(),
        || r.borrow_mut().restart().unwrap(),
    )
    .await;
    let _ = port;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_three_masters() {
    let cluster = RedisCluster::start(3, 0).expect("redis cluster");
    let target = cluster_target(&cluster.urls());
    concurrent_publishers(|| async {
        Arc::new(redis_coordinator(&target).await) as Arc<dyn Coordinator>
    })
    .await;
    // Streams of many channels spread over the masters and each counts correctly.
    let c = redis_coordinator(&target).await;
    for i in 0..30 {
        let channel = format!("room-{i}");
        for want in 1..=3 {
            let got = c
                .next_seq(StreamKey {
                    app_id: "app",
                    channel: &channel,
                    conflation_key: None,
                })
                .await
                .unwrap();
            assert_eq!(got, want);
        }
    }
    let mut masters_with_keys = 0;
    for node in &cluster.nodes {
        let n: u64 = node.cli(&["DBSIZE"]).unwrap().trim().parse().unwrap();
        masters_with_keys += usize::from(n > 0);
    }
    assert_eq!(masters_with_keys, 3, "keys spread over every master");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_jetstream_kv() {
    let mut nats = NatsServer::start().expect("nats-server");
    let url = nats.url();
    concurrent_publishers(|| async {
        // The reference's default prefix (with a colon) still yields a valid bucket name.
        Arc::new(NatsCoordinator::new(
            nats_config(&url),
            "sockudo_adapter:",
            TTL,
        )) as Arc<dyn Coordinator>
    })
    .await;
    let s = service(Arc::new(NatsCoordinator::new(
        nats_config(&url),
        "sockudo",
        TTL,
    )));
    let r = std::cell::RefCell::new(&mut nats);
    outage_and_recovery(
        &s,
        || r.borrow_mut().kill(),
        || r.borrow_mut().restart().unwrap(),
    )
    .await;
}

/// Nodes of a new fleet start together: each finds no bucket and creates it at the same time.
/// Every one of them must get its first number, not an error from losing that race (40 rounds:
/// the race is narrow, and without the fallback to the winner's bucket one round in 10-20 lost it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_nodes_starting_together_share_one_bucket() {
    let nats = NatsServer::start().expect("nats-server");
    let url = nats.url();
    for round in 0..40 {
        let prefix = format!("fresh{round}");
        let nodes: Vec<_> = (0..NODES)
            .map(|_| NatsCoordinator::new(nats_config(&url), &prefix, TTL))
            .collect();
        let firsts = futures_util::future::join_all(nodes.iter().map(|c| {
            c.next_seq(StreamKey {
                app_id: "app",
                channel: "first",
                conflation_key: None,
            })
        }))
        .await;
        let mut numbers = BTreeSet::new();
        for (node, got) in firsts.into_iter().enumerate() {
            let n = got.unwrap_or_else(|e| panic!("round {round}, node {node}: {e}"));
            assert!(numbers.insert(n), "round {round}: {n} given twice");
        }
        assert_eq!(numbers, (1..=NODES as u64).collect::<BTreeSet<_>>());
    }
}

/// Waits until `c` reports `want` (by variant), without asking it for a number.
async fn wait_health(c: &dyn Coordinator, what: &str, want: fn(&BackendHealth) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let h = c.health();
        if want(&h) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {h:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The supervised NATS coordinator (as a server runs it) reports its backend from start-up and
/// follows outages and recoveries by itself: no publish has to find them out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_supervised_health_without_publishes() {
    let mut nats = NatsServer::start().expect("nats-server");
    nats.kill();
    let c = NatsCoordinator::start(nats_config(&nats.url()), "supervised", TTL);
    wait_health(
        c.as_ref(),
        "down at start-up",
        |h| matches!(h, BackendHealth::Degraded(e) if e != "connecting"),
    )
    .await;
    nats.restart().unwrap();
    wait_health(c.as_ref(), "up once the server is", |h| {
        *h == BackendHealth::Ok
    })
    .await;
    nats.kill();
    wait_health(c.as_ref(), "down with the server", |h| {
        matches!(h, BackendHealth::Degraded(_))
    })
    .await;
    nats.restart().unwrap();
    wait_health(c.as_ref(), "up again", |h| *h == BackendHealth::Ok).await;
    // The reconnection re-created the in-memory bucket the restart lost.
    let seq = c
        .next_seq(StreamKey {
            app_id: "app",
            channel: "supervised",
            conflation_key: None,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(seq, 1);
}
