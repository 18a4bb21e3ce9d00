//! The conformance suite's delta check (pusher-js does not decode deltas): a decoding client
//! (`sockudo-delta-client`) on every node of a fleet opts in to delta compression and subscribes
//! to one channel; a stream of slowly changing ticker messages is published through the signed
//! HTTP API, round-robin over the nodes. Every client must decode every message to a published
//! payload (each exactly once), see every seq of the stream once, each message under the same seq
//! as on every other node, and receive its scheduled full messages at the same seqs as every other
//! node: the multiples of `full_message_interval`, which only holds when the nodes count the
//! interval together (cluster coordination). Publishes through different nodes have no defined
//! order between them (the ordering promise is per publisher and node), so arrival order is not
//! compared.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use serde_json::{Value, json};
use sha2::Sha256;
use sockudo_delta_client::{Decoded, DeltaDecoder, Kind};
use sockudo_fleet::Fleet;
use sockudo_fleet::fleet::http_get;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// Bound for anything eventual (a shared 2-core machine): never a speed assertion.
const EVENTUALLY: Duration = Duration::from_secs(20);
const CHANNEL: &str = "fleet-delta-ticker";

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

/// A ticker message well above `min_message_size`: a few changing numbers among static fields.
/// With a conflation key configured, `key_field` carries one fixed value, so the check follows
/// one stream.
fn tick(i: u64, key_field: Option<&str>) -> String {
    let mut v = json!({
        "asset": "BTC",
        "name": "BTC / US Dollar perpetual",
        "exchange": "loopback-exchange",
        "market": "spot",
        "currency": "USD",
        "price": format!("{}.{:02}", 64000 + i * 3, i % 100),
        "volume_24h": 1000 + i * 7,
        "bid": format!("{}.10", 63990 + i),
        "ask": format!("{}.90", 64010 + i),
        "high_24h": "65123.00",
        "low_24h": "62011.50",
        "status": "trading",
        "i": i,
    });
    if let Some(k) = key_field {
        v[k] = json!("BTC");
    }
    v.to_string()
}

fn read_text(ws: &mut Ws, who: &str) -> String {
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        assert!(
            Instant::now() < deadline,
            "{who}: no frame within {EVENTUALLY:?}"
        );
        match ws.read() {
            Ok(Message::Text(t)) => return t.as_str().to_string(),
            Ok(_) => continue,
            Err(e) => panic!("{who}: socket read failed: {e}"),
        }
    }
}

/// The next frame whose event is `want` (protocol noise such as pings is skipped).
fn expect_event(ws: &mut Ws, want: &str, who: &str) -> Value {
    loop {
        let t = read_text(ws, who);
        let v: Value = serde_json::from_str(&t).unwrap_or_else(|e| panic!("{who}: {e}: {t}"));
        if v["event"] == want {
            return v;
        }
        assert!(
            v["event"].as_str().is_some_and(|e| e.starts_with("pusher")),
            "{who}: expected {want}, got {t}"
        );
    }
}

/// Connects to node `port`, opts in to deltas and subscribes to the channel.
fn delta_subscriber(port: u16, key: &str, who: &str) -> Ws {
    let url = format!("ws://127.0.0.1:{port}/app/{key}?protocol=7&client=fleet-delta&version=1");
    let (mut ws, _) = tungstenite::connect(url).unwrap_or_else(|e| panic!("{who}: connect: {e}"));
    if let MaybeTlsStream::Plain(s) = ws.get_mut() {
        s.set_read_timeout(Some(EVENTUALLY)).unwrap();
    }
    expect_event(&mut ws, "pusher:connection_established", who);
    let send = |ws: &mut Ws, v: Value| ws.send(Message::text(v.to_string())).unwrap();
    send(
        &mut ws,
        json!({"event": "pusher:enable_delta_compression", "data": {}}),
    );
    let ok = expect_event(&mut ws, "pusher:delta_compression_enabled", who);
    assert_eq!(ok["data"]["enabled"], true, "{who}: {ok}");
    send(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"channel": CHANNEL}}),
    );
    expect_event(&mut ws, "pusher_internal:subscription_succeeded", who);
    ws
}

/// A TCP connection to the node from loopback source address `source`. The suite's other checks
/// spend the per-IP API budget of 127.0.0.1 (and the rate-limit check that of 127.0.0.77), so the
/// publishes come from addresses of their own, a fresh one every 20 requests.
fn connect_from(source: Ipv4Addr, port: u16) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from((source, 0)).into())
        .unwrap_or_else(|e| panic!("bind {source}: {e}"));
    s.connect(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)).into())
        .unwrap_or_else(|e| panic!("HTTP API on port {port} from {source}: {e}"));
    s.into()
}

/// A signed `POST /apps/{id}/events` (Pusher HTTP API), answered with status 200.
fn publish(port: u16, app: &sockudo_fleet::AppInfo, data: &str, i: usize) {
    let body = json!({"name": "tick", "channels": [CHANNEL], "data": data}).to_string();
    let path = format!("/apps/{}/events", app.id);
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let md5 = hex::encode(Md5::digest(body.as_bytes()));
    // Already in sorted key order, as the signature requires.
    let query = format!(
        "auth_key={}&auth_timestamp={ts}&auth_version=1.0&body_md5={md5}",
        app.key
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(app.secret.as_bytes()).unwrap();
    mac.update(format!("POST\n{path}\n{query}").as_bytes());
    let sig = hex::encode(mac.finalize().into_bytes());
    let source = Ipv4Addr::new(127, 0, 1, 1 + (i / 20) as u8);
    let mut s = connect_from(source, port);
    s.set_read_timeout(Some(EVENTUALLY)).unwrap();
    write!(
        s,
        "POST {path}?{query}&auth_signature={sig} HTTP/1.0\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("HTTP reply");
    assert!(
        reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.0 200"),
        "publish through node port {port} refused:\n{reply}"
    );
}

/// Waits until every node reports its adapter and its delta coordination up.
fn wait_coordination_ready(fleet: &Fleet) {
    for n in fleet.nodes() {
        let start = Instant::now();
        loop {
            let ready = http_get(n.port, "/ready")
                .and_then(|(_, b)| serde_json::from_str::<Value>(&b).ok());
            if let Some(b) = &ready
                && b["backends"]["adapter"]["status"] == "ok"
                && b["backends"]["delta_coordination"]["status"] == "ok"
            {
                break;
            }
            assert!(
                start.elapsed() < EVENTUALLY,
                "{}: adapter and delta coordination not ready: {ready:?}",
                n.name
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Runs the check on a started fleet whose config has delta compression and cluster
/// coordination on; returns a one-line summary for the test output.
pub fn full_message_intervals_are_synchronised(fleet: &Fleet) -> String {
    let delta = &fleet.plan().config.delta_compression;
    assert!(delta.enabled && delta.cluster_coordination, "{delta:?}");
    let n = delta.full_message_interval;
    let key_field = delta.conflation_key.as_deref();
    let app = fleet.app(0).clone();
    wait_coordination_ready(fleet);

    let names: Vec<String> = fleet.nodes().iter().map(|x| x.name.clone()).collect();
    let mut clients: Vec<Ws> = fleet
        .nodes()
        .iter()
        .map(|x| delta_subscriber(x.port, &app.key, &x.name))
        .collect();

    // Three full intervals and a bit, every node publishing in turn.
    let count = 3 * n + 2;
    let published: Vec<String> = (1..=count).map(|i| tick(i, key_field)).collect();
    for (i, data) in published.iter().enumerate() {
        let node = &fleet.nodes()[i % names.len()];
        publish(node.port, &app, data, i);
    }

    let multiples: BTreeSet<u64> = (1..=count).filter(|s| s % n == 0).collect();
    let mut fulls_per_node = Vec::new();
    let mut seq_per_node = Vec::new();
    let mut deltas = 0;
    for (ws, who) in clients.iter_mut().zip(&names) {
        let mut dec = DeltaDecoder::default();
        let mut got: Vec<Decoded> = Vec::new();
        while got.len() < published.len() {
            let t = read_text(ws, who);
            match dec.feed(&t) {
                Ok(Some(d)) => got.push(d),
                Ok(None) => {}
                Err(e) => panic!("{who}: frame {} does not decode ({e}): {t}", got.len()),
            }
        }
        // Where each message arrived, for the failure messages: (seq, kind, i of the payload).
        let arrival: Vec<(Option<u64>, Kind, Value)> = got
            .iter()
            .map(|d| {
                let plain: Value = serde_json::from_str(&d.plain).unwrap_or_default();
                let data: Value = plain["data"]
                    .as_str()
                    .and_then(|x| serde_json::from_str(x).ok())
                    .unwrap_or_default();
                (d.seq, d.kind.clone(), data["i"].clone())
            })
            .collect();
        // Every message decodes to a published payload, each exactly once. Publishes through
        // different nodes have no defined order between them, so arrival order is not compared.
        let mut payloads = Vec::new();
        for (k, d) in got.iter().enumerate() {
            let plain: Value = serde_json::from_str(&d.plain).unwrap();
            assert_eq!(
                (plain["event"].as_str(), plain["channel"].as_str()),
                (Some("tick"), Some(CHANNEL)),
                "{who}: message {k}: {}",
                d.plain
            );
            let data = plain["data"].as_str().unwrap_or_default().to_string();
            assert!(
                published.contains(&data),
                "{who}: message {k} ({:?}) decodes to no published payload: {data}\narrivals: {arrival:?}",
                d.kind
            );
            payloads.push(data);
        }
        let distinct: BTreeSet<&String> = payloads.iter().collect();
        assert_eq!(
            distinct.len(),
            published.len(),
            "{who}: every payload once; arrivals: {arrival:?}"
        );
        let seqs: BTreeSet<u64> = got.iter().filter_map(|d| d.seq).collect();
        assert_eq!(
            seqs,
            (1..=count).collect::<BTreeSet<_>>(),
            "{who}: every message in the delta stream, each seq once; arrivals: {arrival:?}"
        );
        // The same message carries the same seq on every node.
        let seq_of: Vec<(String, u64)> = {
            let mut v: Vec<(String, u64)> = payloads
                .iter()
                .zip(&got)
                .map(|(p, d)| (p.clone(), d.seq.unwrap()))
                .collect();
            v.sort();
            v
        };
        seq_per_node.push(seq_of);
        assert_eq!(got[0].kind, Kind::Full, "{who}: the first message is full");
        deltas += got
            .iter()
            .filter(|d| matches!(d.kind, Kind::Delta { .. }))
            .count();
        // The subscriber's own first full is not part of the schedule (unless it falls on it).
        let scheduled: BTreeSet<u64> = got
            .iter()
            .enumerate()
            .filter(|(k, d)| d.kind == Kind::Full && (*k > 0 || d.seq.unwrap() % n == 0))
            .map(|(_, d)| d.seq.unwrap())
            .collect();
        assert_eq!(
            scheduled, multiples,
            "{who}: full messages on the multiples of {n}; arrivals: {arrival:?}"
        );
        fulls_per_node.push(scheduled);
    }
    assert!(
        fulls_per_node.windows(2).all(|w| w[0] == w[1]),
        "the same full seqs on every node: {fulls_per_node:?}"
    );
    assert!(
        seq_per_node.windows(2).all(|w| w[0] == w[1]),
        "every message has the same seq on every node"
    );
    for ws in &mut clients {
        let _ = ws.close(None);
    }
    format!(
        "delta: {} nodes x {count} messages decoded ({deltas} deltas), full messages at seqs {:?} on every node",
        names.len(),
        fulls_per_node[0]
    )
}
