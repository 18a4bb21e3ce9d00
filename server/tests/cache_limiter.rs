//! The cache and the rate limiter, one behaviour suite each, run against every driver: `memory`,
//! `redis` (a real `redis-server`), `redis-cluster` (a real 3-master Redis Cluster) and `none`.
//! Each behaviour is written once as an `async fn(Driver)`; `per_driver!` instantiates it per
//! driver. A missing `redis-server` fails the test with the install hint (never a skip).

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sockudo_config::{
    CacheDriver, ClusterNode, FailureMode, RateLimit, RateLimiterDriver, ServerConfig,
};
use sockudo_server::RunningServer;
use sockudo_server::cache::Cache;
use sockudo_server::metrics::Metrics;
use sockudo_server::rate_limit::memory::MemoryRateLimiter;
use sockudo_server::rate_limit::redis::RedisRateLimiter;
use sockudo_server::redis_backend::{RedisBackend, RedisOptions};
use sockudo_test_backends::{RedisCluster, RedisServer};

use common::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Driver {
    Memory,
    Redis,
    RedisCluster,
    None,
}

impl Driver {
    fn shared(self) -> bool {
        matches!(self, Driver::Redis | Driver::RedisCluster)
    }
}

/// Instantiates `async fn $behaviour(Driver)` once per listed driver, as `$behaviour::$driver`.
macro_rules! per_driver {
    ($behaviour:ident: $($driver:ident),+) => {
        mod $behaviour {
            $(
                #[allow(non_snake_case)]
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $driver() {
                    super::$behaviour(super::Driver::$driver).await
                }
            )+
        }
    };
}

/// The backend processes a driver needs (killed when dropped).
struct Env {
    driver: Driver,
    redis: Option<RedisServer>,
    cluster: Option<RedisCluster>,
}

impl Env {
    async fn start(driver: Driver) -> Env {
        tokio::task::spawn_blocking(move || {
            let redis = (driver == Driver::Redis)
                .then(|| RedisServer::start().unwrap_or_else(|e| panic!("{e}")));
            let cluster = (driver == Driver::RedisCluster)
                .then(|| RedisCluster::start(3, 0).unwrap_or_else(|e| panic!("{e}")));
            Env {
                driver,
                redis,
                cluster,
            }
        })
        .await
        .unwrap()
    }

    fn nodes(&self) -> Option<Vec<ClusterNode>> {
        self.cluster
            .as_ref()
            .map(|c| c.urls().into_iter().map(ClusterNode::Url).collect())
    }

    /// A server config whose cache uses this driver, keys under `prefix`.
    fn cache_config(&self, prefix: &str) -> ServerConfig {
        let mut c = config();
        let r = &mut c.cache.redis;
        r.prefix = Some(prefix.into());
        c.cache.driver = match self.driver {
            Driver::Memory => CacheDriver::Memory,
            Driver::None => CacheDriver::None,
            Driver::Redis => {
                r.url_override = self.redis.as_ref().map(RedisServer::url);
                CacheDriver::Redis
            }
            Driver::RedisCluster => {
                r.nodes = self.nodes();
                CacheDriver::RedisCluster
            }
        };
        c
    }

    /// A server config whose rate limiter uses this driver (enabled), keys under `prefix`.
    fn limiter_config(&self, prefix: &str) -> ServerConfig {
        let mut c = config();
        c.rate_limiter.enabled = true;
        let r = &mut c.rate_limiter.redis;
        r.prefix = Some(prefix.into());
        c.rate_limiter.driver = match self.driver {
            Driver::Memory => RateLimiterDriver::Memory,
            Driver::None => RateLimiterDriver::None,
            Driver::Redis => {
                r.url_override = self.redis.as_ref().map(RedisServer::url);
                RateLimiterDriver::Redis
            }
            Driver::RedisCluster => {
                r.nodes = self.nodes();
                RateLimiterDriver::RedisCluster
            }
        };
        c
    }

    async fn cache(&self, prefix: &str) -> Arc<dyn Cache> {
        let m = Metrics::new("t");
        sockudo_server::drivers::cache(&self.cache_config(prefix), &m)
            .await
            .expect("cache driver")
    }

    /// Stops every Redis process of this environment (a backend outage).
    async fn kill(&mut self) {
        if let Some(r) = &mut self.redis {
            r.kill();
        }
        if let Some(c) = &mut self.cluster {
            for n in &mut c.nodes {
                n.kill();
            }
        }
    }

    /// Starts them again on the same ports; a cluster rejoins with its slots.
    async fn restart(&mut self) {
        let redis = self.redis.take();
        let cluster = self.cluster.take();
        let (redis, cluster) = tokio::task::spawn_blocking(move || {
            let redis = redis.map(|mut r| {
                r.restart().unwrap();
                r
            });
            let cluster = cluster.map(|mut c| {
                for n in &mut c.nodes {
                    n.restart().unwrap();
                }
                c.wait_ok().unwrap();
                c
            });
            (redis, cluster)
        })
        .await
        .unwrap();
        self.redis = redis;
        self.cluster = cluster;
    }

    /// Raw `GET` straight on the backend, to see what the drivers wrote.
    fn raw_get(&self, key: &str) -> Option<String> {
        let node = self
            .redis
            .as_ref()
            .or_else(|| self.cluster.as_ref().map(|c| &c.nodes[0]))?;
        // `-c` follows MOVED in cluster mode.
        let out = node.cli(&["-c", "GET", key]).ok()?;
        let out = out.trim();
        (!out.is_empty()).then(|| out.to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// Cache behaviours
// ---------------------------------------------------------------------------------------------

/// Each entry lives exactly as long as its own TTL, which reads back.
async fn cache_ttl_expiry(driver: Driver) {
    let env = Env::start(driver).await;
    let cache = env.cache("ttl:").await;
    cache
        .set("short", "a".into(), Duration::from_millis(300))
        .await
        .unwrap();
    cache
        .set("long", "b".into(), Duration::from_secs(60))
        .await
        .unwrap();
    if driver == Driver::None {
        assert_eq!(cache.get("short").await.unwrap(), None);
        assert_eq!(cache.get("long").await.unwrap(), None);
        return;
    }
    let short = cache.get("short").await.unwrap().expect("short is cached");
    assert_eq!(short.value, "a");
    assert!(short.ttl <= Duration::from_millis(300), "{:?}", short.ttl);
    let long = cache.get("long").await.unwrap().expect("long is cached");
    assert!(long.ttl > Duration::from_secs(58), "{:?}", long.ttl);
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(cache.get("short").await.unwrap(), None, "short expired");
    assert_eq!(cache.get("long").await.unwrap().unwrap().value, "b");
    cache.delete("long").await.unwrap();
    assert_eq!(cache.get("long").await.unwrap(), None);
}
per_driver!(cache_ttl_expiry: Memory, Redis, RedisCluster, None);

/// Two consumers with different prefixes on one backend never see each other's keys, and the
/// prefix is what lands in Redis.
async fn cache_prefix_isolation(driver: Driver) {
    let env = Env::start(driver).await;
    let a = env.cache("fleet-a:").await;
    let b = env.cache("fleet-b:").await;
    let ttl = Duration::from_secs(30);
    a.set("k", "from-a".into(), ttl).await.unwrap();
    b.set("k", "from-b".into(), ttl).await.unwrap();
    if driver == Driver::None {
        assert_eq!(a.get("k").await.unwrap(), None);
        return;
    }
    assert_eq!(a.get("k").await.unwrap().unwrap().value, "from-a");
    assert_eq!(b.get("k").await.unwrap().unwrap().value, "from-b");
    a.delete("k").await.unwrap();
    assert_eq!(a.get("k").await.unwrap(), None);
    assert_eq!(b.get("k").await.unwrap().unwrap().value, "from-b");
    if driver.shared() {
        assert_eq!(env.raw_get("fleet-b:k").as_deref(), Some("from-b"));
        assert_eq!(env.raw_get("k"), None, "no unprefixed key");
    }
}
per_driver!(cache_prefix_isolation: Memory, Redis, RedisCluster, None);

async fn first_after_subscribe(server: &RunningServer, channel: &str) -> Value {
    let mut c = connect(server).await;
    let ok = c.subscribe(channel).await;
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );
    c.next().await
}

/// A cache-channel event published on node A replays to a subscriber joining on node B when the
/// cache is shared; `info=cache` on B shows it with its TTL. Memory is per node; none never hits.
async fn cache_channel_replay_across_nodes(driver: Driver) {
    let env = Env::start(driver).await;
    let mut cfg = env.cache_config("replay:");
    cfg.cache.cache_channel_ttl_seconds = 120;
    let a = start(cfg.clone()).await;
    let b = start(cfg).await;
    let (s, _) = Api::new(&a)
        .trigger("cache-x", "price", r#"{"v":42}"#)
        .await;
    assert_eq!(s, 200);

    let on_a = first_after_subscribe(&a, "cache-x").await;
    let on_b = first_after_subscribe(&b, "cache-x").await;
    let expect_hit_a = driver != Driver::None;
    let expect_hit_b = driver.shared();
    for (frame, hit) in [(&on_a, expect_hit_a), (&on_b, expect_hit_b)] {
        if hit {
            assert_eq!(frame["event"], "price", "{frame}");
            assert_eq!(frame["channel"], "cache-x");
            assert_eq!(frame["data"], r#"{"v":42}"#);
        } else {
            assert_eq!(frame["event"], "pusher:cache_miss", "{frame}");
        }
    }

    let (s, info) = Api::new(&b)
        .get(
            &format!("/apps/{APP_ID}/channels/cache-x"),
            &[("info", "cache")],
        )
        .await;
    assert_eq!(s, 200);
    if expect_hit_b {
        let ttl = info["cache"]["ttl"].as_u64().expect("ttl");
        assert!((115..=120).contains(&ttl), "{info}");
        assert_eq!(info["cache"]["data"], r#"{"v":42}"#);
    } else {
        assert!(info.get("cache").is_none(), "{info}");
    }
}
per_driver!(cache_channel_replay_across_nodes: Memory, Redis, RedisCluster, None);

/// The `/channels` listing is served from the cache for `channels_listing_ttl_ms`, then fresh.
async fn channels_listing_cache(driver: Driver) {
    let env = Env::start(driver).await;
    let mut cfg = env.cache_config("listing:");
    cfg.cache.channels_listing_ttl_ms = 400;
    let server = start(cfg).await;
    let api = Api::new(&server);
    let list = || async {
        let (s, body) = api.get(&format!("/apps/{APP_ID}/channels"), &[]).await;
        assert_eq!(s, 200);
        body["channels"].as_object().unwrap().len()
    };
    assert_eq!(list().await, 0);
    let mut c = connect(&server).await;
    c.subscribe("news").await;
    let cached = driver != Driver::None;
    assert_eq!(list().await, if cached { 0 } else { 1 }, "within the TTL");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(list().await, 1, "after the TTL");
}
per_driver!(channels_listing_cache: Memory, Redis, RedisCluster, None);

// ---------------------------------------------------------------------------------------------
// Rate-limiter behaviours
// ---------------------------------------------------------------------------------------------

/// The Redis script and the memory driver give identical decisions and headers for the same
/// request sequence (bursts, refusals, partial refills, different limits).
async fn limiter_matches_memory(driver: Driver) {
    let env = Env::start(driver).await;
    let target = env.limiter_config("").rate_limiter_redis().unwrap();
    let backend = RedisBackend::connect("rate_limiter", &target, RedisOptions::default(), None)
        .await
        .unwrap();
    let redis = RedisRateLimiter::new(backend, format!("eq-{}:", std::process::id()));
    let memory = MemoryRateLimiter::default();
    let limits = [
        RateLimit {
            max_requests: 5,
            window_seconds: 1,
        },
        RateLimit {
            max_requests: 3,
            window_seconds: 60,
        },
        RateLimit {
            max_requests: 7,
            window_seconds: 2,
        },
    ];
    // A fixed pseudo-random schedule over simulated time (µs), far from now so no key is stale.
    let mut now: u64 = 1_800_000_000_000_000;
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut refused = 0;
    for i in 0..300 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        now += seed % 150_000;
        let li = (seed >> 20) as usize % limits.len();
        let key = format!("k{li}-{}", (seed >> 30) % 2);
        let m = memory.check_at(&key, &limits[li], now);
        let r = redis.check_at(&key, &limits[li], Some(now)).await.unwrap();
        assert_eq!(m, r, "request {i} key {key} at {now}");
        refused += usize::from(!m.allowed);
    }
    assert!(refused > 20, "the sequence exercises refusals ({refused})");
}
per_driver!(limiter_matches_memory: Redis, RedisCluster);

async fn api_status(server: &RunningServer) -> (u16, reqwest::header::HeaderMap) {
    let api = Api::new(server);
    let url = api.signed_url("GET", &format!("/apps/{APP_ID}/channels"), &[], b"", now());
    let r = api.http.get(url).send().await.unwrap();
    (r.status().as_u16(), r.headers().clone())
}

/// Connects; a refused connect is upgraded and answered the Pusher way: `pusher:error` 4100
/// (pusher-js backs off and retries), then a 4100 close. Returns the refusal's message if any.
async fn ws_refusal(server: &RunningServer) -> Option<String> {
    let mut ws = connect_raw(server, KEY).await;
    let first = next_json(&mut ws).await;
    if first["event"] == "pusher:connection_established" {
        return None;
    }
    assert_eq!(first["event"], "pusher:error", "{first}");
    assert_eq!(first["data"]["code"], 4100, "{first}");
    assert_eq!(close_code(&mut ws, Duration::from_secs(5)).await, 4100);
    Some(first["data"]["message"].as_str().unwrap().to_string())
}

async fn ws_allowed(server: &RunningServer) -> bool {
    match ws_refusal(server).await {
        None => true,
        Some(message) => {
            assert!(message.contains("retry in"), "{message}");
            false
        }
    }
}

/// Two nodes sharing the limiter let through the configured number in total (HTTP API per IP
/// and WebSocket connects per IP); memory limits per node; none does not limit.
async fn limit_is_cluster_wide(driver: Driver) {
    let env = Env::start(driver).await;
    let mut cfg = env.limiter_config("cw:");
    cfg.rate_limiter.api_rate_limit = RateLimit {
        max_requests: 6,
        window_seconds: 60,
    };
    cfg.rate_limiter.websocket_rate_limit = RateLimit {
        max_requests: 4,
        window_seconds: 60,
    };
    let nodes = [start(cfg.clone()).await, start(cfg).await];
    let (mut api_ok, mut ws_ok) = (0, 0);
    for i in 0..20 {
        let (status, headers) = api_status(&nodes[i % 2]).await;
        match status {
            200 => {
                api_ok += 1;
                if driver != Driver::None {
                    assert_eq!(headers["x-ratelimit-limit"], "6");
                }
                if driver.shared() {
                    let left: u64 = headers["x-ratelimit-remaining"]
                        .to_str()
                        .unwrap()
                        .parse()
                        .unwrap();
                    assert_eq!(left, 6 - api_ok, "remaining counts both nodes");
                }
            }
            429 => assert!(headers.contains_key("retry-after")),
            s => panic!("unexpected {s}"),
        }
        ws_ok += u64::from(ws_allowed(&nodes[i % 2]).await);
    }
    let (api_expected, ws_expected) = match driver {
        Driver::Redis | Driver::RedisCluster => (6, 4),
        Driver::Memory => (12, 8),
        Driver::None => (20, 20),
    };
    assert_eq!(api_ok, api_expected, "API requests let through");
    assert_eq!(ws_ok, ws_expected, "WebSocket connects let through");
}
per_driver!(limit_is_cluster_wide: Memory, Redis, RedisCluster, None);

/// Kill the limiter's (and cache's) Redis: `open` lets requests through, `closed` answers 503
/// explaining why; readiness stays 200 but says degraded; metrics count it; when Redis comes
/// back both recover by themselves.
async fn backend_loss_and_recovery(driver: Driver) {
    let mut env = Env::start(driver).await;
    let mut base = env.limiter_config("loss:");
    let cache = env.cache_config("loss:");
    base.cache = cache.cache;
    base.rate_limiter.api_rate_limit.max_requests = 1000;
    let mut closed_cfg = base.clone();
    closed_cfg.rate_limiter.on_backend_failure = FailureMode::Closed;
    let open = start(base).await;
    let closed = start(closed_cfg).await;
    for s in [&open, &closed] {
        assert_eq!(readiness(s).await["status"], "ok");
        assert_eq!(api_status(s).await.0, 200);
    }
    let up = format!(
        "sockudo_backend_up{{backend=\"rate_limiter\",driver=\"{}\"}}",
        env_driver_name(driver)
    );
    assert_eq!(metric_sum(&open, &up), 1.0);

    env.kill().await;
    // Open: allowed, without X-RateLimit-* (there is no decision to report).
    let (s, h) = api_status(&open).await;
    assert_eq!(s, 200);
    assert!(!h.contains_key("x-ratelimit-limit"));
    assert!(ws_allowed(&open).await);
    // Closed: 503 with the reason, never a 500; WebSocket connects refused the same way.
    let api = Api::new(&closed);
    let (s, body) = api.get(&format!("/apps/{APP_ID}/channels"), &[]).await;
    assert_eq!(s, 503, "{body}");
    assert_eq!(body["code"], "rate_limiter_unavailable");
    assert!(body["error"].as_str().unwrap().contains("closed"), "{body}");
    let refused = ws_refusal(&closed)
        .await
        .expect("connect refused while closed");
    assert!(refused.contains("closed"), "{refused}");
    // The cache degrades to misses: publishing still works, subscribers get cache_miss.
    let (s, _) = Api::new(&open).trigger("cache-y", "e", "d").await;
    assert_eq!(s, 200);
    let frame = first_after_subscribe(&open, "cache-y").await;
    assert_eq!(frame["event"], "pusher:cache_miss");

    let body = wait_readiness(&open, "degraded", Duration::from_secs(5)).await;
    let rl = &body["backends"]["rate_limiter"];
    assert_eq!(rl["status"], "degraded", "{body}");
    assert_eq!(rl["driver"], env_driver_name(driver));
    assert_eq!(rl["on_backend_failure"], "open");
    assert_eq!(body["backends"]["cache"]["status"], "degraded", "{body}");
    let body = wait_readiness(&closed, "degraded", Duration::from_secs(5)).await;
    assert_eq!(
        body["backends"]["rate_limiter"]["on_backend_failure"],
        "closed"
    );
    assert_eq!(metric_sum(&open, &up), 0.0);
    assert!(metric_sum(&open, "sockudo_rate_limiter_backend_failures_total{driver=") >= 2.0);
    assert!(
        metric_sum(
            &closed,
            "sockudo_rate_limiter_backend_failures_total{driver="
        ) >= 2.0
    );
    assert!(metric_sum(&open, "sockudo_cache_operations_total") > 0.0);

    env.restart().await;
    for s in [&open, &closed] {
        wait_readiness(s, "ok", Duration::from_secs(20)).await;
        let (status, h) = api_status(s).await;
        assert_eq!(status, 200);
        assert!(h.contains_key("x-ratelimit-limit"));
    }
    assert_eq!(metric_sum(&open, &up), 1.0);
    // The cache works again too.
    let (s, _) = Api::new(&open).trigger("cache-y", "e", "again").await;
    assert_eq!(s, 200);
    let frame = first_after_subscribe(&closed, "cache-y").await;
    assert_eq!(frame["data"], "again");
}
per_driver!(backend_loss_and_recovery: Redis, RedisCluster);

fn env_driver_name(d: Driver) -> &'static str {
    match d {
        Driver::Memory => "memory",
        Driver::Redis => "redis",
        Driver::RedisCluster => "redis-cluster",
        Driver::None => "none",
    }
}

/// `enabled: false` disables limiting just as `driver: none` does: no backend is contacted (a
/// Redis driver pointing nowhere still starts clean) and nothing is limited.
#[tokio::test]
async fn disabled_means_no_limiter_whatever_the_driver() {
    let mut cfg = config();
    cfg.rate_limiter.enabled = false;
    cfg.rate_limiter.driver = RateLimiterDriver::Redis;
    cfg.rate_limiter.redis.url_override = Some("redis://127.0.0.1:1".into());
    cfg.rate_limiter.api_rate_limit.max_requests = 1;
    let server = start(cfg).await;
    for _ in 0..5 {
        let (s, h) = api_status(&server).await;
        assert_eq!(s, 200);
        assert!(!h.contains_key("x-ratelimit-limit"));
    }
    let body = readiness(&server).await;
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["backends"]["rate_limiter"]["driver"], "none");
}

/// An unreachable Redis at startup does not stop the node: it serves (cache channels miss),
/// reports degraded, and connects by itself once Redis is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_degraded_and_connects_later() {
    let mut env = Env::start(Driver::Redis).await;
    env.kill().await;
    let server = start(env.cache_config("late:")).await;
    let body = readiness(&server).await;
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["backends"]["cache"]["driver"], "redis");
    let frame = first_after_subscribe(&server, "cache-z").await;
    assert_eq!(frame["event"], "pusher:cache_miss");
    env.restart().await;
    wait_readiness(&server, "ok", Duration::from_secs(10)).await;
    let (s, _) = Api::new(&server).trigger("cache-z", "e", "d").await;
    assert_eq!(s, 200);
    let frame = first_after_subscribe(&server, "cache-z").await;
    assert_eq!(frame["data"], "d");
}

/// `replace` stores a value and returns the one it replaced, honouring TTLs; `none` keeps
/// nothing. Only the Redis drivers are shared between nodes.
async fn cache_replace(driver: Driver) {
    let env = Env::start(driver).await;
    let cache = env.cache("replace:").await;
    assert_eq!(cache.shared(), driver.shared());
    let first = cache
        .replace("k", "a".into(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(first, None);
    let second = cache
        .replace("k", "b".into(), Duration::from_secs(60))
        .await
        .unwrap();
    if driver == Driver::None {
        assert_eq!(second, None);
        return;
    }
    assert_eq!(second.as_deref(), Some("a"));
    assert_eq!(cache.get("k").await.unwrap().unwrap().value, "b");
    cache
        .replace("short", "x".into(), Duration::from_millis(200))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let expired = cache
        .replace("short", "y".into(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(expired, None, "an expired entry is not returned");
}
per_driver!(cache_replace: Memory, Redis, RedisCluster, None);

/// Two nodes that both believe they lead offer the same webhook transitions: with a shared
/// cache each is sent once, and a later change of state is sent again.
async fn webhook_dedup_across_nodes(driver: Driver) {
    use sockudo_server::adapter::local::LocalAdapter;
    use sockudo_server::apps::{App, AppRegistry};
    use sockudo_server::hub::LocalHub;
    use sockudo_server::webhooks::{ClusterEvent, Webhooks};

    let env = Env::start(driver).await;
    let received = Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let sink = received.clone();
    let hook = axum::Router::new().route(
        "/",
        axum::routing::post(move |body: String| {
            let sink = sink.clone();
            async move {
                let v: Value = serde_json::from_str(&body).unwrap();
                sink.lock()
                    .unwrap()
                    .extend(v["events"].as_array().unwrap().iter().cloned());
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hook).await.unwrap() });

    let mut cfg = env.cache_config("dedup:");
    cfg.webhooks.batch_duration_ms = 10;
    cfg.apps[0].webhooks.push(sockudo_config::WebhookConfig {
        url,
        event_types: vec![],
        channel_prefix: None,
        headers: Default::default(),
    });
    let app = App::resolve(0, &cfg.apps[0]).unwrap();
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let metrics = Arc::new(Metrics::new("t"));
        // Each node its own connection to the shared cache.
        let cache = sockudo_server::drivers::cache(&cfg, &metrics)
            .await
            .unwrap();
        let adapter = Arc::new(LocalAdapter::new(Arc::new(LocalHub::default())));
        nodes.push(Webhooks::start(
            cfg.webhooks.clone(),
            Arc::new(AppRegistry::new(vec![app.clone()])),
            adapter,
            metrics,
            cache,
        ));
    }
    let count = |name: &str| {
        received
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["name"] == name)
            .count()
    };
    let offer = |event: ClusterEvent| {
        for n in &nodes {
            n.cluster_event(APP_ID, "raced", event.clone());
        }
    };
    let settle = || tokio::time::sleep(Duration::from_millis(800));
    offer(ClusterEvent::Occupied);
    offer(ClusterEvent::MemberAdded("u".into()));
    offer(ClusterEvent::SubscriptionCount(2));
    settle().await;
    assert_eq!(
        count("channel_occupied"),
        1,
        "{:?}",
        received.lock().unwrap()
    );
    assert_eq!(count("member_added"), 1);
    assert_eq!(count("subscription_count"), 1);
    offer(ClusterEvent::MemberRemoved("u".into()));
    offer(ClusterEvent::Vacated);
    settle().await;
    assert_eq!(count("member_removed"), 1);
    assert_eq!(count("channel_vacated"), 1);
    // Occupied again: a new transition, sent again (once).
    offer(ClusterEvent::Occupied);
    settle().await;
    assert_eq!(count("channel_occupied"), 2);
}
per_driver!(webhook_dedup_across_nodes: Redis, RedisCluster);
