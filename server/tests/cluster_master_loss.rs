//! Losing one master of a real 3-master Redis Cluster (issue #4): the cache and the rate limiter
//! on `redis-cluster`, one node with `on_backend_failure: open` and one with `closed`. SIGKILL the
//! master that owns one key's slot: requests on that key follow `on_backend_failure` (open: let
//! through without a decision; closed: refused with the reason), the cache misses there, keys on
//! the other masters keep real decisions and cached values, readiness and metrics report the
//! degraded backend (without flapping back to ok while other slots answer), nothing panics.
//! Restarting the master on its port with its `nodes.conf` recovers everything.
//!
//! The cluster runs with `cluster-require-full-coverage no` (the harness's `partial_coverage`):
//! with Redis' default the surviving masters stop serving every slot once the dead one is marked
//! failed, and then every key follows `on_backend_failure`.

mod common;

use std::time::{Duration, Instant};

use sockudo_config::{CacheDriver, ClusterNode, FailureMode, RateLimit, RateLimiterDriver};
use sockudo_server::RunningServer;
use sockudo_server::rate_limit::{Verdict, enforce};
use sockudo_test_backends::{RedisCluster, RedisServer, RedisSetup};

use common::*;

const EVENTUALLY: Duration = Duration::from_secs(30);
const LIMITER_PREFIX: &str = "loss-rl:";
const CACHE_PREFIX: &str = "loss-cache:";

fn limit() -> RateLimit {
    RateLimit {
        max_requests: 1000,
        window_seconds: 86_400,
    }
}

/// Slot ranges per master port, from `CLUSTER NODES`.
fn owners(cluster: &RedisCluster) -> Vec<(u16, Vec<(u16, u16)>)> {
    let nodes = cluster.nodes[0].cli(&["CLUSTER", "NODES"]).unwrap();
    nodes
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if !f.get(2)?.contains("master") {
                return None;
            }
            let port: u16 = f[1].split(['@', ':']).nth(1)?.parse().ok()?;
            let ranges = f[8..]
                .iter()
                .filter(|r| !r.starts_with('['))
                .map(|r| match r.split_once('-') {
                    Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
                    None => (r.parse().unwrap(), r.parse().unwrap()),
                })
                .collect();
            Some((port, ranges))
        })
        .collect()
}

/// The port of the master owning `key`.
fn owner_of(cluster: &RedisCluster, key: &str) -> u16 {
    let slot: u16 = cluster.nodes[0]
        .cli(&["CLUSTER", "KEYSLOT", key])
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    owners(cluster)
        .into_iter()
        .find(|(_, ranges)| ranges.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
        .map(|(port, _)| port)
        .expect("every slot has an owner")
}

/// The first `name-N` whose Redis key (`prefix` + name) is owned (or not) by `port`.
fn key_on(cluster: &RedisCluster, prefix: &str, port: u16, on: bool) -> String {
    (0..200)
        .map(|i| format!("k{i}"))
        .find(|k| (owner_of(cluster, &format!("{prefix}{k}")) == port) == on)
        .expect("a key on the wanted master")
}

async fn verdict(server: &RunningServer, key: &str) -> Verdict {
    enforce(&server.state, "api", key, &limit()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_master_lost_and_back() {
    let mut cluster = tokio::task::spawn_blocking(|| {
        RedisCluster::start_with(
            3,
            0,
            RedisSetup {
                partial_coverage: true,
                ..RedisSetup::default()
            },
        )
        .unwrap_or_else(|e| panic!("{e}"))
    })
    .await
    .unwrap();
    let nodes: Vec<ClusterNode> = cluster.urls().into_iter().map(ClusterNode::Url).collect();
    let mut open_cfg = config();
    open_cfg.cache.driver = CacheDriver::RedisCluster;
    open_cfg.cache.redis.nodes = Some(nodes);
    open_cfg.cache.redis.prefix = Some(CACHE_PREFIX.into());
    open_cfg.rate_limiter.enabled = true;
    open_cfg.rate_limiter.driver = RateLimiterDriver::RedisCluster;
    open_cfg.rate_limiter.redis.prefix = Some(LIMITER_PREFIX.into());
    open_cfg.rate_limiter.api_rate_limit = limit();
    let mut closed_cfg = open_cfg.clone();
    closed_cfg.rate_limiter.on_backend_failure = FailureMode::Closed;
    let open = start(open_cfg).await;
    let closed = start(closed_cfg).await;
    for s in [&open, &closed] {
        wait_readiness(s, "ok", EVENTUALLY).await;
    }

    let victim = cluster.nodes[1].port;
    let lost_rl = key_on(&cluster, LIMITER_PREFIX, victim, true);
    let kept_rl = key_on(&cluster, LIMITER_PREFIX, victim, false);
    let lost_cache = key_on(&cluster, CACHE_PREFIX, victim, true);
    let kept_cache = key_on(&cluster, CACHE_PREFIX, victim, false);
    let ttl = Duration::from_secs(300);
    for s in [&open, &closed] {
        for k in [&lost_rl, &kept_rl] {
            assert!(
                matches!(verdict(s, k).await, Verdict::Allowed(Some(_))),
                "{k} before"
            );
        }
    }
    let cache = open.state.cache.clone();
    for k in [&lost_cache, &kept_cache] {
        cache.set(k, format!("v-{k}"), ttl).await.unwrap();
        assert!(cache.get(k).await.unwrap().is_some());
    }

    let victim_node: &mut RedisServer = &mut cluster.nodes[1];
    victim_node.kill();

    // The lost master's slots follow on_backend_failure; the others keep real answers.
    let start = Instant::now();
    loop {
        let open_v = verdict(&open, &lost_rl).await;
        let closed_v = verdict(&closed, &lost_rl).await;
        if open_v == Verdict::Allowed(None) && matches!(closed_v, Verdict::Unavailable(_)) {
            if let Verdict::Unavailable(why) = closed_v {
                assert!(why.contains("closed"), "{why}");
            }
            break;
        }
        assert!(
            start.elapsed() < EVENTUALLY,
            "lost slot: open {open_v:?}, closed {closed_v:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let open_failures =
        "sockudo_rate_limiter_backend_failures_total{driver=\"redis-cluster\",on_failure=\"open\"}";
    assert!(metric_sum(&open, open_failures) >= 1.0);
    for round in 0..10 {
        for s in [&open, &closed] {
            match verdict(s, &kept_rl).await {
                Verdict::Allowed(Some(d)) => assert_eq!(d.limit, 1000),
                v => panic!("round {round}: a surviving master's key got {v:?}"),
            }
        }
        let kept = cache.get(&kept_cache).await.unwrap();
        assert_eq!(kept.map(|c| c.value), Some(format!("v-{kept_cache}")));
        let lost = cache.get(&lost_cache).await;
        assert!(
            !matches!(lost, Ok(Some(_))),
            "a dead master's key cannot hit"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Readiness says degraded, names the limiter's policy, and stays degraded although the
    // surviving masters answer (checked while traffic on them succeeds).
    for s in [&open, &closed] {
        wait_readiness(s, "degraded", EVENTUALLY).await;
    }
    for _ in 0..10 {
        assert!(matches!(
            verdict(&open, &kept_rl).await,
            Verdict::Allowed(Some(_))
        ));
        let body = readiness(&open).await;
        assert_eq!(body["status"], "degraded", "no flapping: {body}");
        assert_eq!(body["backends"]["rate_limiter"]["status"], "degraded");
        assert_eq!(
            body["backends"]["rate_limiter"]["on_backend_failure"],
            "open"
        );
        assert_eq!(body["backends"]["cache"]["status"], "degraded");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let body = readiness(&closed).await;
    assert_eq!(
        body["backends"]["rate_limiter"]["on_backend_failure"], "closed",
        "{body}"
    );
    let up = "sockudo_backend_up{backend=\"rate_limiter\",driver=\"redis-cluster\"}";
    assert_eq!(metric_sum(&open, up), 0.0);
    // HTTP traffic never sees a 500: open lets it through, closed answers 200 or 503 depending
    // on where the client IP's key lives.
    for (s, allowed) in [(&open, [200].as_slice()), (&closed, [200, 503].as_slice())] {
        let (status, body) = Api::new(s)
            .get(&format!("/apps/{APP_ID}/channels"), &[])
            .await;
        assert!(allowed.contains(&status), "{status} {body}");
    }

    // Back on its port with its nodes.conf: everything recovers by itself.
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.nodes[1].restart().unwrap();
        cluster.wait_ok().unwrap();
        cluster
    })
    .await
    .unwrap();
    for s in [&open, &closed] {
        wait_readiness(s, "ok", EVENTUALLY).await;
        let start = Instant::now();
        while !matches!(verdict(s, &lost_rl).await, Verdict::Allowed(Some(_))) {
            assert!(start.elapsed() < EVENTUALLY, "lost slot never recovered");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(metric_sum(&open, up), 1.0);
    // The restarted master lost its data (no persistence); the cache works on it again.
    cache.set(&lost_cache, "again".into(), ttl).await.unwrap();
    assert_eq!(
        cache.get(&lost_cache).await.unwrap().map(|c| c.value),
        Some("again".into())
    );
    drop(cluster);
}
