//! Cross-node behaviour of the horizontal adapters, one suite for every driver: three (or more)
//! `sockudo` processes on a real redis-server, a real 3-master Redis Cluster and a real
//! nats-server, real WebSocket clients and the signed HTTP API.
//!
//! Each driver's test shares one backend between its fleets (distinct prefixes) and runs the
//! non-destructive cases on one fleet before the destructive ones (node kill, graceful stop,
//! restart with the same node id, backend restart). Deadlines are generous: eventual behaviour
//! is awaited, speed is never asserted.

mod common;

use std::time::{Duration, Instant};

use common::fleet::{Backend, EVENTUALLY, Node};
use common::{APP_ID, Client};
use futures_util::StreamExt;
use serde_json::{Value, json};
use sockudo_test_backends::{NatsServer, RedisCluster, RedisServer, free_port};
use tokio_tungstenite::tungstenite::Message;

const HEARTBEAT_MS: u64 = 300;
/// A second app with tiny limits, for the cluster-wide quota and presence limit.
const QUOTA_APP: &str = "77";
const QUOTA_KEY: &str = "quota-key";
const QUOTA_SECRET: &str = "quota-secret";
const NODE_TIMEOUT_MS: u64 = 3000;

/// A node of the suite: both apps, webhooks to `hook`, short heartbeats and timeouts.
fn spawn(backend: &Backend, prefix: &str, name: &str, hook: &str) -> Node {
    let mut c = common::config();
    c.apps[0].webhooks.push(sockudo_config::WebhookConfig {
        url: hook.into(),
        event_types: vec![],
        channel_prefix: None,
        headers: Default::default(),
    });
    c.webhooks.batch_duration_ms = 20;
    c.apps[0].features.enable_subscription_count = true;
    let mut quota = sockudo_config::AppConfig::new(QUOTA_APP, QUOTA_KEY, QUOTA_SECRET);
    quota.limits.max_connections = 3;
    quota.limits.max_presence_members_per_channel = 2;
    c.apps.push(quota);
    c.port = free_port();
    c.node_id = Some(name.into());
    c.metrics.enabled = false;
    c.adapter.prefix = prefix.into();
    c.nats.prefix = "suite".into();
    c.adapter.heartbeat_interval_ms = HEARTBEAT_MS;
    c.adapter.node_timeout_ms = NODE_TIMEOUT_MS;
    c.adapter.request_timeout_ms = 1000;
    // The third node of a fleet holds publishes while the backend is down.
    if name.ends_with("-2") {
        c.adapter.publish_buffer_size = 5;
    }
    c.webhooks.vacate_delay_ms = 0;
    // A short drain: the graceful-stop case waits for the node's sockets to close.
    c.shutdown_grace_period = 1;
    backend.configure(&mut c);
    // A shared cache where there is a Redis: webhook transitions are then also claimed in
    // it (de-duplication between nodes that both think they lead).
    c.cache.driver = match backend {
        Backend::Redis(_) => sockudo_config::CacheDriver::Redis,
        Backend::Cluster(_) => sockudo_config::CacheDriver::RedisCluster,
        Backend::Nats(_) => sockudo_config::CacheDriver::Memory,
    };
    c.cache.redis.prefix = Some(format!("{prefix}:cache:"));
    Node::launch(name, &c)
}

async fn fleet(backend: &Backend, prefix: &str, n: usize, hooks: &Hooks) -> Vec<Node> {
    let nodes: Vec<Node> = (0..n)
        .map(|i| spawn(backend, prefix, &format!("{prefix}-node-{i}"), &hooks.url))
        .collect();
    for node in &nodes {
        node.wait_ready().await;
    }
    nodes
}

/// Next frame with this event name within `wait` (others skipped).
async fn wait_event(c: &mut Client, event: &str, wait: Duration) -> Value {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, c.ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {event} within {wait:?}"))
            .expect("socket open")
            .expect("frame");
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["event"] == event {
                return v;
            }
        }
    }
}

/// Frames named `event` arriving within `ms`.
async fn collect(c: &mut Client, event: &str, ms: u64) -> Vec<Value> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(ms);
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(
        deadline.saturating_duration_since(Instant::now()),
        c.ws.next(),
    )
    .await
    {
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["event"] == event {
                out.push(v);
            }
        }
    }
    out
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(
            start.elapsed() < EVENTUALLY,
            "not within {EVENTUALLY:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn presence_data(user: &str) -> String {
    json!({"user_id": user, "user_info": {"name": user}}).to_string()
}

async fn users(node: &Node, channel: &str) -> Vec<String> {
    let (s, body) = node
        .api()
        .get(&format!("/apps/{APP_ID}/channels/{channel}/users"), &[])
        .await;
    assert_eq!(s, 200, "{body}");
    let mut ids: Vec<String> = body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

async fn subscription_count(node: &Node, channel: &str) -> u64 {
    let (_, body) = node
        .api()
        .get(
            &format!("/apps/{APP_ID}/channels/{channel}"),
            &[("info", "subscription_count")],
        )
        .await;
    body["subscription_count"].as_u64().unwrap_or(0)
}

/// Waits for a `subscription_count` of `channel` equal to `want` (earlier counts skipped).
async fn wait_count(c: &mut Client, channel: &str, want: u64, wait: Duration) {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no subscription_count {want} on {channel} within {wait:?}"
        );
        let f = wait_event(c, "pusher_internal:subscription_count", left).await;
        if f["channel"] != channel {
            continue;
        }
        let d: Value = serde_json::from_str(f["data"].as_str().unwrap()).unwrap();
        if d["subscription_count"] == want {
            return;
        }
    }
}

/// `pusher_internal:subscription_count` counts the subscribers of every node, and so does the
/// `subscription_count` webhook.
async fn subscription_count_is_cluster_wide(nodes: &[Node], hooks: &Hooks) {
    let ch = "counted";
    let mut a = nodes[0].connect().await;
    a.subscribe(ch).await;
    let mut b = nodes[1].connect().await;
    b.subscribe(ch).await;
    wait_count(&mut a, ch, 2, Duration::from_secs(10)).await;
    wait_count(&mut b, ch, 2, Duration::from_secs(10)).await;
    let mut c = nodes[2].connect().await;
    c.subscribe(ch).await;
    for x in [&mut a, &mut b, &mut c] {
        wait_count(x, ch, 3, Duration::from_secs(10)).await;
    }
    eventually(
        "subscription_count webhook with the cluster total",
        || async {
            hooks.events.lock().unwrap().iter().any(|e| {
                e["name"] == "subscription_count"
                    && e["channel"] == ch
                    && e["subscription_count"] == 3
            })
        },
    )
    .await;
    drop(c);
    wait_count(&mut a, ch, 2, Duration::from_secs(10)).await;
    wait_count(&mut b, ch, 2, Duration::from_secs(10)).await;
}

fn watchlist_event(f: &Value) -> (String, Vec<String>) {
    let e = &f["data"]["events"][0];
    (
        e["name"].as_str().unwrap().to_string(),
        e["user_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u.as_str().unwrap().to_string())
            .collect(),
    )
}

/// Watchers hear `online` when a user's first socket anywhere signs in and `offline` when its
/// last socket anywhere leaves, whichever nodes the watcher and the user are on.
async fn watchlist_across_nodes(nodes: &[Node]) {
    const WATCHLIST: &str = "pusher_internal:watchlist_events";
    let mut watcher = nodes[0].connect().await;
    let ok = watcher
        .signin(r#"{"id":"wl-watcher","watchlist":["wl-user"]}"#)
        .await;
    assert_eq!(ok["event"], "pusher:signin_success", "{ok}");

    let mut on1 = nodes[1].connect().await;
    on1.signin(r#"{"id":"wl-user"}"#).await;
    let e = wait_event(&mut watcher, WATCHLIST, Duration::from_secs(10)).await;
    assert_eq!(
        watchlist_event(&e),
        ("online".to_string(), vec!["wl-user".to_string()])
    );

    // A watcher signing in later, on a node where the user is not, hears it is online.
    let mut late = nodes[2].connect().await;
    eventually("node 2 knows wl-user is online", || async {
        // Reconnect until the replicated sign-in arrived (eventual, like presence).
        let mut probe = nodes[2].connect().await;
        probe
            .signin(r#"{"id":"wl-probe","watchlist":["wl-user"]}"#)
            .await;
        !collect(&mut probe, WATCHLIST, 300).await.is_empty()
    })
    .await;
    late.signin(r#"{"id":"wl-late","watchlist":["wl-user"]}"#)
        .await;
    let e = wait_event(&mut late, WATCHLIST, Duration::from_secs(5)).await;
    assert_eq!(watchlist_event(&e).0, "online");

    // A second socket of the user on another node: already online, nothing announced.
    let mut on2 = nodes[2].connect().await;
    on2.signin(r#"{"id":"wl-user"}"#).await;
    assert!(
        collect(&mut watcher, WATCHLIST, 1000).await.is_empty(),
        "online once per user, not per socket"
    );
    drop(on1);
    assert!(
        collect(&mut watcher, WATCHLIST, 1500).await.is_empty(),
        "still signed in on node 2"
    );
    drop(on2);
    let e = wait_event(&mut watcher, WATCHLIST, Duration::from_secs(10)).await;
    assert_eq!(
        watchlist_event(&e),
        ("offline".to_string(), vec!["wl-user".to_string()])
    );
    let e = wait_event(&mut late, WATCHLIST, Duration::from_secs(10)).await;
    assert_eq!(watchlist_event(&e).0, "offline");
    assert!(collect(&mut watcher, WATCHLIST, 1000).await.is_empty());
}

/// Publishes from node 1 to subscribers on every node: each gets every event exactly once, in
/// order; a client event crosses nodes and is not echoed.
async fn delivery_exactly_once_in_order(nodes: &[Node]) {
    let mut clients = Vec::new();
    for n in nodes {
        let mut c = n.connect().await;
        let ok = c.subscribe_private("private-order").await;
        assert_eq!(
            ok["event"], "pusher_internal:subscription_succeeded",
            "{ok}"
        );
        clients.push(c);
    }
    let api = nodes[1].api();
    for i in 0..40 {
        let (s, b) = api.trigger("private-order", "seq", &i.to_string()).await;
        assert_eq!(s, 200, "{b}");
    }
    for c in &mut clients {
        let got = collect(c, "seq", 1500).await;
        let data: Vec<String> = got
            .iter()
            .map(|v| v["data"].as_str().unwrap().to_string())
            .collect();
        let want: Vec<String> = (0..40).map(|i: i32| i.to_string()).collect();
        assert_eq!(data, want, "every event exactly once, in order");
    }
    clients[0]
        .send(json!({"event":"client-typing","channel":"private-order","data":{"x":1}}))
        .await;
    for c in &mut clients[1..] {
        let e = wait_event(c, "client-typing", Duration::from_secs(5)).await;
        assert_eq!(e["data"]["x"], 1);
    }
    assert!(
        collect(&mut clients[0], "client-typing", 500)
            .await
            .is_empty(),
        "not echoed"
    );
    for c in &mut clients[1..] {
        assert!(collect(c, "client-typing", 300).await.is_empty(), "once");
    }
}

/// `socket_id` of a socket on node 2, published on node 0: everyone but that socket gets it.
async fn socket_id_exclusion(nodes: &[Node]) {
    let mut a = nodes[0].connect().await;
    let mut b = nodes[1].connect().await;
    let mut c = nodes[2].connect().await;
    for x in [&mut a, &mut b, &mut c] {
        x.subscribe("excl").await;
    }
    let (s, _) = nodes[0]
        .api()
        .post(
            &format!("/apps/{APP_ID}/events"),
            &json!({"name":"ev","channel":"excl","data":"x","socket_id":c.socket_id}),
        )
        .await;
    assert_eq!(s, 200);
    wait_event(&mut a, "ev", Duration::from_secs(5)).await;
    wait_event(&mut b, "ev", Duration::from_secs(5)).await;
    assert!(
        collect(&mut c, "ev", 800).await.is_empty(),
        "excluded socket got the event"
    );
}

/// Channel queries on any node count the subscribers of every node.
async fn http_answers_are_cluster_wide(nodes: &[Node]) {
    let mut clients = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let mut c = n.connect().await;
        c.subscribe("wide-a").await;
        if i == 2 {
            c.subscribe("wide-only-on-2").await;
        }
        clients.push(c);
    }
    for n in nodes {
        eventually("subscription_count 3 on every node", || async {
            subscription_count(n, "wide-a").await == 3
        })
        .await;
    }
    eventually("channel of node 2 listed by node 0", || async {
        let (s, body) = nodes[0]
            .api()
            .get(
                &format!("/apps/{APP_ID}/channels"),
                &[
                    ("filter_by_prefix", "wide-"),
                    ("info", "subscription_count"),
                ],
            )
            .await;
        s == 200
            && body["channels"]["wide-only-on-2"]["subscription_count"] == 1
            && body["channels"]["wide-a"]["subscription_count"] == 3
            && body.get("incomplete").is_none()
    })
    .await;
    let (_, one) = nodes[1]
        .api()
        .get(&format!("/apps/{APP_ID}/channels/wide-only-on-2"), &[])
        .await;
    assert_eq!(one["occupied"], true, "{one}");
    drop(clients);
    eventually("vacated everywhere", || async {
        let (_, one) = nodes[1]
            .api()
            .get(&format!("/apps/{APP_ID}/channels/wide-only-on-2"), &[])
            .await;
        one["occupied"] == false
    })
    .await;
}

/// Members of every node in `subscription_succeeded`; one `member_added` per user even when
/// two nodes race on the same user; `member_removed` once when the last socket anywhere leaves.
async fn presence_across_nodes(nodes: &[Node]) {
    let ch = "presence-room";
    let mut watcher = nodes[0].connect().await;
    watcher
        .subscribe_presence(ch, &presence_data("watcher"))
        .await;
    let mut u1 = nodes[1].connect().await;
    u1.subscribe_presence(ch, &presence_data("u1")).await;
    let added = wait_event(
        &mut watcher,
        "pusher_internal:member_added",
        Duration::from_secs(10),
    )
    .await;
    let d: Value = serde_json::from_str(added["data"].as_str().unwrap()).unwrap();
    assert_eq!(d["user_id"], "u1");
    assert_eq!(d["user_info"]["name"], "u1");

    // The same user joins on nodes 1 and 2 at once.
    let mut r1 = nodes[1].connect().await;
    let mut r2 = nodes[2].connect().await;
    let racer = presence_data("racer");
    let (a, b) = tokio::join!(
        r1.subscribe_presence(ch, &racer),
        r2.subscribe_presence(ch, &racer)
    );
    assert_eq!(a["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(b["event"], "pusher_internal:subscription_succeeded");
    let adds = collect(&mut watcher, "pusher_internal:member_added", 2000).await;
    assert_eq!(
        adds.len(),
        1,
        "exactly one member_added for a raced user: {adds:?}"
    );

    for n in nodes {
        eventually("three users on every node", || async {
            users(n, ch).await == ["racer", "u1", "watcher"]
        })
        .await;
    }
    let mut late = nodes[2].connect().await;
    let ok = late.subscribe_presence(ch, &presence_data("late")).await;
    let data: Value = serde_json::from_str(ok["data"].as_str().unwrap()).unwrap();
    let mut ids: Vec<String> = data["presence"]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["late", "racer", "u1", "watcher"]);
    assert_eq!(data["presence"]["count"], 4);
    wait_event(
        &mut watcher,
        "pusher_internal:member_added",
        Duration::from_secs(10),
    )
    .await;

    // One of the racer's sockets leaves: still present elsewhere, nothing announced.
    drop(r1);
    assert!(
        collect(&mut watcher, "pusher_internal:member_removed", 1500)
            .await
            .is_empty(),
        "racer is still on node 2"
    );
    drop(r2);
    let removed = wait_event(
        &mut watcher,
        "pusher_internal:member_removed",
        Duration::from_secs(10),
    )
    .await;
    let d: Value = serde_json::from_str(removed["data"].as_str().unwrap()).unwrap();
    assert_eq!(d["user_id"], "racer");
    assert!(
        collect(&mut watcher, "pusher_internal:member_removed", 1000)
            .await
            .is_empty()
    );
    drop((u1, late));
}

/// terminate_connections on node 0 closes the user's socket on node 2.
async fn terminate_everywhere(nodes: &[Node]) {
    let mut c = nodes[2].connect().await;
    let ok = c.signin(r#"{"id":"doomed"}"#).await;
    assert_eq!(ok["event"], "pusher:signin_success", "{ok}");
    let (s, body) = nodes[0]
        .api()
        .post(
            &format!("/apps/{APP_ID}/users/doomed/terminate_connections"),
            &json!({}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert!(body.get("incomplete").is_none(), "{body}");
    let code = common::close_code(&mut c.ws, Duration::from_secs(10)).await;
    assert_eq!(code, 4009);
}

/// A second fleet with another prefix on the same backend sees nothing of the first.
async fn prefix_isolation(backend: &Backend, prefix: &str, nodes: &[Node]) {
    let other = fleet(backend, &format!("{prefix}x"), 1, &Hooks::start().await).await;
    let mut iso = other[0].connect().await;
    iso.subscribe("iso").await;
    let mut mine = nodes[0].connect().await;
    mine.subscribe("iso").await;
    let (s, _) = nodes[1].api().trigger("iso", "ev", "x").await;
    assert_eq!(s, 200);
    wait_event(&mut mine, "ev", Duration::from_secs(5)).await;
    assert!(
        collect(&mut iso, "ev", 800).await.is_empty(),
        "crosstalk between prefixes"
    );
    assert_eq!(subscription_count(&other[0], "iso").await, 1);
    tokio::time::sleep(Duration::from_millis(2 * HEARTBEAT_MS)).await;
    assert_eq!(subscription_count(&nodes[0], "iso").await, 1);
}

/// The per-app connection quota (4004) and the presence member limit count every node.
async fn limits_are_cluster_wide(nodes: &[Node]) {
    let mut clients = Vec::new();
    for n in nodes {
        clients.push(n.connect_key(QUOTA_KEY).await);
    }
    // Each node learns the others' connections through replication.
    tokio::time::sleep(Duration::from_millis(4 * HEARTBEAT_MS)).await;
    let url = format!(
        "ws://127.0.0.1:{}/app/{QUOTA_KEY}?protocol=7&client=test&version=1",
        nodes[0].port
    );
    let mut ws = tokio_tungstenite::connect_async(url).await.expect("ws").0;
    let err = common::next_json(&mut ws).await;
    assert_eq!(err["event"], "pusher:error", "{err}");
    assert_eq!(err["data"]["code"], 4004, "{err}");
    drop(ws);

    let ch = "presence-limited";
    let join = |c: &Client, user: &str| {
        let data = presence_data(user);
        let signed = sockudo_server::auth::channel_string(&c.socket_id, ch, Some(&data));
        let auth = format!(
            "{QUOTA_KEY}:{}",
            sockudo_server::auth::sign(QUOTA_SECRET, &signed)
        );
        json!({"event":"pusher:subscribe","data":{"channel":ch,"auth":auth,"channel_data":data}})
    };
    for (i, user) in ["p1", "p2"].into_iter().enumerate() {
        let msg = join(&clients[i], user);
        clients[i].send(msg).await;
        wait_event(
            &mut clients[i],
            "pusher_internal:subscription_succeeded",
            Duration::from_secs(5),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(4 * HEARTBEAT_MS)).await;
    let msg = join(&clients[2], "p3");
    clients[2].send(msg).await;
    let err = wait_event(&mut clients[2], "pusher:error", Duration::from_secs(5)).await;
    assert_eq!(
        err["data"]["code"], 4100,
        "presence limit over the cluster: {err}"
    );
}

/// Receives the fleet's webhooks.
struct Hooks {
    url: String,
    events: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

impl Hooks {
    async fn start() -> Hooks {
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = events.clone();
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(move |body: String| {
                let sink = sink.clone();
                async move {
                    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    if let Some(list) = v["events"].as_array() {
                        sink.lock().unwrap().extend(list.iter().cloned());
                    }
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Hooks { url, events }
    }

    fn count(&self, name: &str, channel: &str, user: Option<&str>) -> usize {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| {
                e["name"] == name
                    && e["channel"] == channel
                    && user.is_none_or(|u| e["user_id"] == u)
            })
            .count()
    }

    /// Waits for the event, then checks it stays single.
    async fn once(&self, name: &str, channel: &str, user: Option<&str>, what: &str) {
        eventually(what, || async { self.count(name, channel, user) >= 1 }).await;
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(
            self.count(name, channel, user),
            1,
            "{what}: {name} on {channel} sent once per cluster; all: {:?}",
            self.events.lock().unwrap()
        );
    }
}

/// channel_occupied / vacated and member_added / removed go out once for the whole cluster.
async fn webhooks_once_per_cluster(nodes: &[Node], hooks: &Hooks) {
    let mut clients = Vec::new();
    for n in nodes {
        let mut c = n.connect().await;
        c.subscribe("hooked").await;
        clients.push(c);
    }
    hooks
        .once("channel_occupied", "hooked", None, "occupied")
        .await;
    drop(clients);
    hooks
        .once("channel_vacated", "hooked", None, "vacated")
        .await;

    let ch = "presence-hooked";
    let mut a = nodes[1].connect().await;
    let mut b = nodes[2].connect().await;
    let same = presence_data("same-user");
    let _ = tokio::join!(
        a.subscribe_presence(ch, &same),
        b.subscribe_presence(ch, &same)
    );
    hooks
        .once("member_added", ch, Some("same-user"), "raced member")
        .await;
    drop(a);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hooks.count("member_removed", ch, Some("same-user")), 0);
    drop(b);
    hooks
        .once("member_removed", ch, Some("same-user"), "last socket left")
        .await;
}

/// Redis/NATS goes away: 503 + Retry-After, local clients stay, readiness says degraded; when
/// it is back, cross-node delivery and presence resume.
async fn backend_restart(backend: &mut Backend, nodes: &[Node]) {
    let ch = "presence-outage";
    let mut watcher = nodes[0].connect().await;
    watcher.subscribe_presence(ch, &presence_data("w")).await;
    let mut other = nodes[1].connect().await;
    other.subscribe_presence(ch, &presence_data("o")).await;
    wait_event(
        &mut watcher,
        "pusher_internal:member_added",
        Duration::from_secs(10),
    )
    .await;

    let mut held_sub = nodes[1].connect().await;
    held_sub.subscribe("outage-held").await;
    backend.kill();
    let api = nodes[0].api();
    eventually("publishes refused with 503 during the outage", || async {
        let url = api.signed_url(
            "POST",
            &format!("/apps/{APP_ID}/events"),
            &[],
            br#"{"name":"x","channel":"presence-outage","data":"1"}"#,
            common::now(),
        );
        let r = api
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(r#"{"name":"x","channel":"presence-outage","data":"1"}"#)
            .send()
            .await
            .unwrap();
        r.status() == 503 && r.headers().contains_key("retry-after")
    })
    .await;
    eventually("readiness reports the degraded adapter", || async {
        nodes[0].ready_body().await.is_some_and(|b| {
            b["status"] == "degraded" && b["backends"]["adapter"]["status"] == "degraded"
        })
    })
    .await;
    assert!(
        collect(&mut other, "x", 300).await.is_empty(),
        "nothing delivered while down"
    );
    // Node 2 has a publish buffer: accepted and delivered locally now, to node 1 later.
    let mut local2 = nodes[2].connect().await;
    local2.subscribe("outage-held").await;
    let (s, body) = nodes[2].api().trigger("outage-held", "held", "1").await;
    assert_eq!(s, 200, "buffered publish accepted: {body}");
    wait_event(&mut local2, "held", Duration::from_secs(5)).await;
    // Local clients are still served.
    watcher.send(json!({"event":"pusher:ping","data":{}})).await;
    wait_event(&mut watcher, "pusher:pong", Duration::from_secs(5)).await;

    backend.restart();
    for n in nodes {
        n.wait_ready().await;
    }
    eventually("publish accepted again", || async {
        api.trigger(ch, "after", "1").await.0 == 200
    })
    .await;
    wait_event(&mut other, "after", Duration::from_secs(10)).await;
    wait_event(&mut held_sub, "held", EVENTUALLY).await;
    drop((local2, held_sub));
    for n in nodes {
        eventually("presence resynced", || async {
            users(n, ch).await == ["o", "w"]
        })
        .await;
    }
    assert!(
        collect(&mut watcher, "pusher_internal:member_removed", 500)
            .await
            .is_empty(),
        "no member lost by the outage"
    );
}

/// Node SIGKILL, restart with the same node id, graceful stop.
async fn node_failures(nodes: &mut [Node], hooks: &Hooks) {
    let ch = "presence-failures";
    let mut watcher = nodes[0].connect().await;
    watcher.subscribe_presence(ch, &presence_data("w")).await;

    // Restart with the same node id before the timeout: the old incarnation is replaced.
    let mut ghost = nodes[2].connect().await;
    ghost.subscribe_presence(ch, &presence_data("ghost")).await;
    wait_event(
        &mut watcher,
        "pusher_internal:member_added",
        Duration::from_secs(10),
    )
    .await;
    nodes[2].kill();
    nodes[2].start();
    // Ready means connected: the same answer shows the adapter up, and an event published on
    // another node right away reaches a client of the new node (nothing lost in between).
    let body = nodes[2].wait_probe_ready().await;
    assert_eq!(body["backends"]["adapter"]["status"], "ok", "{body}");
    let mut fresh = nodes[2].connect().await;
    fresh.subscribe("fresh-node").await;
    let (s, b) = nodes[0].api().trigger("fresh-node", "hi", "1").await;
    assert_eq!(s, 200, "{b}");
    wait_event(&mut fresh, "hi", Duration::from_secs(5)).await;
    let removed = wait_event(&mut watcher, "pusher_internal:member_removed", EVENTUALLY).await;
    assert!(removed["data"].as_str().unwrap().contains("ghost"));
    eventually("no ghost member anywhere", || async {
        users(&nodes[0], ch).await == ["w"] && users(&nodes[2], ch).await == ["w"]
    })
    .await;

    // SIGKILL without restart: removed after node_timeout_ms, once.
    let mut victim = nodes[2].connect().await;
    victim
        .subscribe_presence(ch, &presence_data("victim"))
        .await;
    wait_event(
        &mut watcher,
        "pusher_internal:member_added",
        Duration::from_secs(10),
    )
    .await;
    // Counted subscribers on nodes 0 and 2: the killed node's drop out of the total.
    let mut counted = nodes[0].connect().await;
    counted.subscribe("counted-kill").await;
    let mut doomed = nodes[2].connect().await;
    doomed.subscribe("counted-kill").await;
    wait_count(&mut counted, "counted-kill", 2, Duration::from_secs(10)).await;
    nodes[2].kill();
    let killed = Instant::now();
    let removed = wait_event(&mut watcher, "pusher_internal:member_removed", EVENTUALLY).await;
    assert!(removed["data"].as_str().unwrap().contains("victim"));
    // Within the dead-node time (node_timeout_ms), plus slack for a loaded machine.
    let bound = Duration::from_millis(NODE_TIMEOUT_MS + 5000);
    wait_count(
        &mut counted,
        "counted-kill",
        1,
        bound.saturating_sub(killed.elapsed()),
    )
    .await;
    drop(doomed);
    assert!(
        collect(&mut watcher, "pusher_internal:member_removed", 1000)
            .await
            .is_empty()
    );
    hooks
        .once(
            "member_removed",
            ch,
            Some("victim"),
            "a killed node's member, by webhook",
        )
        .await;

    // Graceful stop: departure announced, members removed without waiting for the timeout.
    let mut leaver = nodes[1].connect().await;
    leaver
        .subscribe_presence(ch, &presence_data("leaver"))
        .await;
    wait_event(
        &mut watcher,
        "pusher_internal:member_added",
        Duration::from_secs(10),
    )
    .await;
    nodes[1].terminate();
    let removed = wait_event(&mut watcher, "pusher_internal:member_removed", EVENTUALLY).await;
    assert!(removed["data"].as_str().unwrap().contains("leaver"));
    nodes[1].wait_exit().await;
    assert!(
        nodes[1].log().contains("announced departure"),
        "{}",
        nodes[1].log()
    );
    assert_eq!(users(&nodes[0], ch).await, ["w"]);
}

async fn run_suite(mut backend: Backend, prefix: &str) {
    let hooks = Hooks::start().await;
    let mut nodes = fleet(&backend, prefix, 3, &hooks).await;
    webhooks_once_per_cluster(&nodes, &hooks).await;
    limits_are_cluster_wide(&nodes).await;
    delivery_exactly_once_in_order(&nodes).await;
    socket_id_exclusion(&nodes).await;
    http_answers_are_cluster_wide(&nodes).await;
    subscription_count_is_cluster_wide(&nodes, &hooks).await;
    watchlist_across_nodes(&nodes).await;
    presence_across_nodes(&nodes).await;
    terminate_everywhere(&nodes).await;
    prefix_isolation(&backend, prefix, &nodes).await;
    if let Backend::Cluster(rc) = &backend {
        cluster_spread_and_reshard(rc, prefix, &nodes).await;
    }
    backend_restart(&mut backend, &nodes).await;
    node_failures(&mut nodes, &hooks).await;
}

/// Shard channels land on at least two masters, and delivery survives moving every slot of
/// one master to another, live.
async fn cluster_spread_and_reshard(rc: &RedisCluster, prefix: &str, nodes: &[Node]) {
    let holders: Vec<&RedisServer> = rc
        .nodes
        .iter()
        .filter(|n| {
            n.cli(&["pubsub", "shardchannels", &format!("{prefix}:e:*")])
                .is_ok_and(|out| !out.trim().is_empty())
        })
        .collect();
    assert!(
        holders.len() >= 2,
        "event shard channels on {} masters",
        holders.len()
    );

    // A pusher channel whose bucket lives on node 0's master; move all of node 0's slots.
    let from = &rc.nodes[0];
    let to = &rc.nodes[1];
    let owned = |slot: u16| {
        from.cli(&["cluster", "nodes"]).unwrap().lines().any(|l| {
            l.contains("myself")
                && l.split_whitespace().skip(8).any(|r| {
                    let (a, b) = r.split_once('-').unwrap_or((r, r));
                    matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if a <= slot && slot <= b)
                })
        })
    };
    let channel = (0..1000)
        .map(|i| format!("resharded-{i}"))
        .find(|c| {
            let b = sockudo_server::adapter::horizontal::transport::bucket_of(
                APP_ID,
                c,
                sockudo_server::adapter::redis_cluster::EVENT_BUCKETS,
            );
            let slot: u16 = from
                .cli(&["cluster", "keyslot", &format!("{prefix}:e:{b}")])
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            owned(slot)
        })
        .expect("some channel maps to node 0's slots");
    let mut sub = nodes[2].connect().await;
    sub.subscribe(&channel).await;
    let api = nodes[0].api();
    assert_eq!(api.trigger(&channel, "before", "1").await.0, 200);
    wait_event(&mut sub, "before", Duration::from_secs(5)).await;

    let slots: u32 = from
        .cli(&["cluster", "nodes"])
        .unwrap()
        .lines()
        .filter(|l| l.contains("myself"))
        .flat_map(|l| {
            l.split_whitespace()
                .skip(8)
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .map(|r| {
            let (a, b) = r.split_once('-').unwrap_or((&r, &r));
            b.parse::<u32>().unwrap() - a.parse::<u32>().unwrap() + 1
        })
        .sum();
    // Blocking (redis-cli) on purpose: the nodes are other processes, they keep running.
    rc.reshard(from, to, slots).unwrap();

    // Delivery resumes (the shard channel follows its slot), then every event arrives.
    let start = Instant::now();
    loop {
        api.trigger(&channel, "after", "x").await;
        if !collect(&mut sub, "after", 300).await.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < EVENTUALLY,
            "no delivery after the slot migration"
        );
    }
    // Drain stragglers of the retry loop.
    collect(&mut sub, "after", 500).await;
    for k in 0..10 {
        assert_eq!(api.trigger(&channel, "steady", &k.to_string()).await.0, 200);
    }
    let got = collect(&mut sub, "steady", 2000).await;
    assert_eq!(got.len(), 10, "every event after the migration: {got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_suite() {
    let backend = Backend::Redis(RedisServer::start().expect("redis-server"));
    run_suite(backend, "r").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_mode_suite() {
    let backend = Backend::Cluster(RedisCluster::start(3, 0).expect("redis cluster"));
    run_suite(backend, "rc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_cluster_suite() {
    let backend = Backend::Nats(NatsServer::start().expect("nats-server"));
    run_suite(backend, "n").await;
}
