//! Added latency of the cache and the rate limiter, per driver (issue #4's benchmark).
//!
//!     cargo run --release -p sockudo-server --example cache_limiter_bench
//!
//! Starts a local `redis-server` and a 3-master Redis Cluster (sockudo-test-backends), then for
//! each driver (none, memory, redis, redis-cluster) measures, one operation at a time:
//! - a cache lookup (`get` of a present key, through the metered driver the server uses);
//! - a rate-limit check (`check` on one key, limit never reached);
//! - a whole signed HTTP API request (`GET /apps/{id}/channels`: limiter checks per IP and per
//!   app, plus the listing-cache lookup) against an in-process server whose cache and limiter
//!   both use the driver; compare with the `none` row for the added latency.
//!
//! `BENCH_OPS` (default 5000) sets the operations per measurement. Results are recorded in
//! `server/BENCHMARKS-cache-limiter.md`.

use std::time::{Duration, Instant};

use sockudo_config::{
    AppConfig, CacheDriver, ClusterNode, RateLimit, RateLimiterDriver, ServerConfig,
};
use sockudo_server::apps::App;
use sockudo_server::http::signature::sign_query;
use sockudo_server::metrics::Metrics;
use sockudo_test_backends::{RedisCluster, RedisServer};

const DRIVERS: [&str; 4] = ["none", "memory", "redis", "redis-cluster"];

struct Stats {
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let mean = v.iter().sum::<Duration>() / v.len() as u32;
    Stats {
        p50: v[v.len() / 2],
        p99: v[v.len() * 99 / 100],
        mean,
    }
}

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn config(driver: &str, redis: &RedisServer, cluster: &RedisCluster) -> ServerConfig {
    let mut c = ServerConfig {
        host: "127.0.0.1".into(),
        port: 0,
        ..ServerConfig::default()
    };
    c.metrics.enabled = false;
    c.apps
        .push(AppConfig::new("1", "bench-key", "bench-secret"));
    c.rate_limiter.enabled = true;
    let huge = RateLimit {
        max_requests: 1_000_000_000,
        window_seconds: 1,
    };
    c.rate_limiter.api_rate_limit = huge.clone();
    c.rate_limiter.app_api_rate_limit = huge;
    let nodes: Vec<ClusterNode> = cluster.urls().into_iter().map(ClusterNode::Url).collect();
    let (cd, rd) = match driver {
        "none" => (CacheDriver::None, RateLimiterDriver::None),
        "memory" => (CacheDriver::Memory, RateLimiterDriver::Memory),
        "redis" => {
            c.cache.redis.url_override = Some(redis.url());
            c.rate_limiter.redis.url_override = Some(redis.url());
            (CacheDriver::Redis, RateLimiterDriver::Redis)
        }
        _ => {
            c.cache.redis.nodes = Some(nodes.clone());
            c.rate_limiter.redis.nodes = Some(nodes);
            (CacheDriver::RedisCluster, RateLimiterDriver::RedisCluster)
        }
    };
    c.cache.driver = cd;
    c.rate_limiter.driver = rd;
    c
}

async fn measure<F, Fut>(ops: usize, mut f: F) -> Stats
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    for i in 0..ops / 10 {
        f(i).await;
    }
    let mut v = Vec::with_capacity(ops);
    for i in 0..ops {
        let t = Instant::now();
        f(i).await;
        v.push(t.elapsed());
    }
    stats(v)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let ops: usize = std::env::var("BENCH_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5000);
    let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let cluster = RedisCluster::start(3, 0).unwrap_or_else(|e| panic!("{e}"));
    println!("{ops} sequential operations per cell; latencies in µs (p50 / p99 / mean)\n");
    println!("| driver | cache get (hit) | rate-limit check | HTTP API request |");
    println!("|---|---|---|---|");
    for driver in DRIVERS {
        let cfg = config(driver, &redis, &cluster);
        let metrics = Metrics::new("bench");
        let cache = sockudo_server::drivers::cache(&cfg, &metrics)
            .await
            .unwrap();
        cache
            .set("bench:key", "x".repeat(200), Duration::from_secs(600))
            .await
            .unwrap();
        let c = measure(ops, |_| {
            let cache = cache.clone();
            async move {
                let _ = cache.get("bench:key").await;
            }
        })
        .await;
        let limiter = sockudo_server::drivers::rate_limiter(&cfg, &metrics)
            .await
            .unwrap();
        let limit = cfg.rate_limiter.api_rate_limit.clone();
        let l = measure(ops, |_| {
            let limiter = limiter.clone();
            let limit = limit.clone();
            async move {
                let d = limiter.check("bench:ip", &limit).await.unwrap();
                assert!(d.allowed);
            }
        })
        .await;

        let server = sockudo_server::start(cfg, None).await.unwrap();
        let app = App::resolve(0, &AppConfig::new("1", "bench-key", "bench-secret")).unwrap();
        let http = reqwest::Client::new();
        let base = format!("http://{}", server.addr);
        let h = measure(ops, |_| {
            let ts = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let path = "/apps/1/channels";
            let url = format!(
                "{base}{path}?{}",
                sign_query(&app, "GET", path, &[], b"", ts)
            );
            let http = http.clone();
            async move {
                let r = http.get(url).send().await.unwrap();
                assert_eq!(r.status(), 200);
                let _ = r.bytes().await;
            }
        })
        .await;
        server.shutdown().await;
        let cell = |s: &Stats| format!("{} / {} / {}", us(s.p50), us(s.p99), us(s.mean));
        println!("| {driver} | {} | {} | {} |", cell(&c), cell(&l), cell(&h));
    }
}
