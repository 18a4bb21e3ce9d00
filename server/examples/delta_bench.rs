//! Delta compression benchmark: bandwidth saved on realistic streams, CPU per delta, and the
//! per-publish latency each coordination backend adds (real redis-server, a 3-master Redis
//! Cluster and nats-server, started on loopback).
//!
//! `cargo run --release -p sockudo-server --example delta_bench`
//! (`-- --no-backends` skips the Redis/NATS part). Numbers are recorded in
//! `server/docs/delta-compression.md`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sockudo_config::{
    ClusterNode, DeltaCompressionConfig, NatsConfig, NatsServers, RedisClusterConnection,
    RedisConnection, RedisTarget,
};
use sockudo_server::connection::handle::{ConnHandle, Frame};
use sockudo_server::delta::coordinator::local::LocalCoordinator;
use sockudo_server::delta::coordinator::nats::NatsCoordinator;
use sockudo_server::delta::coordinator::redis::RedisCoordinator;
use sockudo_server::delta::{Algorithm, Coordinator, DeltaMetrics, DeltaService, FanOut};
use sockudo_server::protocol::server::{EventData, event};
use sockudo_server::socket_id::SocketId;
use sockudo_test_backends::{NatsServer, RedisCluster, RedisServer};

const INTERVAL: u64 = 10;

/// A tick of a random walk: the price moves a few cents, volume grows, time advances.
fn tick(symbol: &str, i: u64, seed: u64) -> String {
    let mut walk: i64 = 0;
    for k in 0..i {
        walk += ((seed * 31 + k * 17) % 11) as i64 - 5;
    }
    let p = 100.0 + seed as f64 * 3.7 + walk as f64 / 100.0;
    json!({
        "symbol": symbol,
        "price": format!("{p:.2}"),
        "bid": format!("{:.2}", p - 0.05),
        "ask": format!("{:.2}", p + 0.05),
        "volume": 1_000_000 + i * 37 + seed,
        "change_24h": format!("{:.2}", ((i * 13 + seed) % 900) as f64 / 100.0 - 4.5),
        "exchange": "NASDAQ",
        "currency": "USD",
        "ts": 1_700_000_000_000u64 + i * 250,
    })
    .to_string()
}

fn document(version: u64, fields: &[(String, String)]) -> String {
    let mut doc = serde_json::Map::new();
    doc.insert("id".into(), json!("doc-42"));
    doc.insert("version".into(), json!(version));
    for (k, v) in fields {
        doc.insert(k.clone(), json!(v));
    }
    serde_json::Value::Object(doc).to_string()
}

struct StreamResult {
    name: String,
    messages: u64,
    original: u64,
    sent: u64,
    deltas: u64,
}

/// Publishes `events` (event name, channel, data) through the real decision + fan-out path to
/// one opted-in socket; returns the bytes it would have received and did receive.
async fn run_stream(
    name: &str,
    events: &[(String, String)],
    channel: &str,
    conflation: Option<&str>,
    algorithm: Algorithm,
) -> StreamResult {
    let service = DeltaService::new(
        DeltaCompressionConfig {
            full_message_interval: INTERVAL,
            conflation_key: conflation.map(String::from),
            ..Default::default()
        },
        Arc::new(LocalCoordinator::new(Duration::from_secs(600), 10_000)),
        DeltaMetrics::default(),
    );
    let conn = ConnHandle::new(SocketId::random(), Arc::from("app"), 16);
    conn.delta.enable(algorithm, Duration::from_secs(300));
    let metrics = DeltaMetrics::default();
    for (ev, data) in events {
        let plain = Frame::from(event(ev, channel, EventData::Str(data), None));
        match service
            .decide("app", channel, ev, data, plain.len(), false)
            .await
        {
            Some(d) => {
                let mut f = FanOut::new(channel, &plain, &d);
                let _ = f.frame_for(&conn);
                f.record(&metrics);
            }
            None => {
                metrics.bytes_original.inc_by(plain.len() as u64);
                metrics.bytes_sent.inc_by(plain.len() as u64);
            }
        }
    }
    StreamResult {
        name: format!("{name} [{algorithm}]"),
        messages: events.len() as u64,
        original: metrics.bytes_original.get(),
        sent: metrics.bytes_sent.get(),
        deltas: metrics.messages.with_label_values(&["delta"]).get(),
    }
}

fn ticks() -> Vec<(String, String)> {
    let symbols: Vec<String> = (0..50).map(|i| format!("SYM{i:02}")).collect();
    let mut out = Vec::new();
    for i in 0..100u64 {
        for (s, sym) in symbols.iter().enumerate() {
            out.push(("tick".to_string(), tick(sym, i, s as u64)));
        }
    }
    out
}

fn doc_updates() -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = (0..30)
        .map(|i| {
            (
                format!("field_{i:02}"),
                format!("initial value of field {i} with some descriptive text"),
            )
        })
        .collect();
    (0..500u64)
        .map(|v| {
            let i = (v as usize * 7) % fields.len();
            fields[i].1 = format!("updated at version {v}: {}", "x".repeat((v % 5) as usize));
            ("doc-update".to_string(), document(v, &fields))
        })
        .collect()
}

fn cpu(events: &[(String, String)], channel: &str, group: usize) {
    for alg in [Algorithm::Fossil, Algorithm::Xdelta3] {
        let frames: Vec<String> = events
            .iter()
            .map(|(e, d)| event(e, channel, EventData::Str(d), None))
            .collect();
        let pairs: Vec<(&String, &String)> = frames.iter().zip(frames.iter().skip(group)).collect();
        let start = Instant::now();
        let mut bytes = 0;
        let mut deltas = Vec::with_capacity(pairs.len());
        for (old, new) in &pairs {
            let d = alg.encode(old.as_bytes(), new.as_bytes()).unwrap();
            bytes += d.len();
            deltas.push(d);
        }
        let enc = start.elapsed();
        let start = Instant::now();
        for ((old, _), d) in pairs.iter().zip(&deltas) {
            alg.apply(old.as_bytes(), d).unwrap();
        }
        let dec = start.elapsed();
        let avg_in = frames.iter().map(|f| f.len()).sum::<usize>() / frames.len();
        println!(
            "  {channel:<8} {alg:<8} msg {avg_in:>5} B  delta {:>5} B  encode {:>6.2} µs  apply {:>6.2} µs",
            bytes / pairs.len(),
            enc.as_secs_f64() * 1e6 / pairs.len() as f64,
            dec.as_secs_f64() * 1e6 / pairs.len() as f64,
        );
    }
}

async fn latency(name: &str, c: Arc<dyn Coordinator>) {
    let s = DeltaService::new(
        DeltaCompressionConfig {
            full_message_interval: INTERVAL,
            ..Default::default()
        },
        c,
        DeltaMetrics::default(),
    );
    // Warm up (connects).
    for _ in 0..50 {
        s.decide("app", "bench", "e", "{}", 1000, false)
            .await
            .expect("decision");
    }
    let mut samples = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let t = Instant::now();
        s.decide("app", "bench", "e", "{}", 1000, false)
            .await
            .expect("decision");
        samples.push(t.elapsed());
    }
    samples.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let mean = samples.iter().map(|d| us(*d)).sum::<f64>() / samples.len() as f64;
    println!(
        "  {name:<14} mean {mean:>8.1} µs  p50 {:>8.1} µs  p99 {:>8.1} µs",
        us(samples[samples.len() / 2]),
        us(samples[samples.len() * 99 / 100]),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let no_backends = std::env::args().any(|a| a == "--no-backends");
    let ticks = ticks();
    let docs = doc_updates();
    println!("== bandwidth (one opted-in socket, full_message_interval {INTERVAL})");
    let mut results = Vec::new();
    for alg in [Algorithm::Fossil, Algorithm::Xdelta3] {
        results.push(
            run_stream(
                "50 tickers, conflation by symbol",
                &ticks,
                "ticker",
                Some("symbol"),
                alg,
            )
            .await,
        );
        results.push(run_stream("50 tickers, no conflation", &ticks, "ticker", None, alg).await);
        results.push(run_stream("document, field by field", &docs, "doc", None, alg).await);
    }
    for r in &results {
        println!(
            "  {:<48} {:>5} msgs  {:>9} B -> {:>9} B  saved {:>5.1}%  deltas {:>5}",
            r.name,
            r.messages,
            r.original,
            r.sent,
            100.0 * (1.0 - r.sent as f64 / r.original as f64),
            r.deltas
        );
    }
    println!("== CPU per delta (consecutive messages of a stream)");
    cpu(&ticks, "ticker", 50);
    cpu(&docs, "doc", 1);
    println!("== coordination latency per publish (sequential, loopback)");
    latency(
        "local",
        Arc::new(LocalCoordinator::new(Duration::from_secs(600), 10_000)),
    )
    .await;
    if no_backends {
        return;
    }
    let redis = RedisServer::start().expect("redis-server");
    latency(
        "redis",
        Arc::new(
            RedisCoordinator::connect(
                &RedisTarget::Standalone(RedisConnection {
                    url: Some(redis.url()),
                    ..RedisConnection::default()
                }),
                "bench",
                Duration::from_secs(600),
            )
            .await
            .unwrap(),
        ),
    )
    .await;
    let cluster = RedisCluster::start(3, 0).expect("redis cluster");
    latency(
        "redis-cluster",
        Arc::new(
            RedisCoordinator::connect(
                &RedisTarget::Cluster(RedisClusterConnection {
                    nodes: cluster.urls().into_iter().map(ClusterNode::Url).collect(),
                    ..RedisClusterConnection::default()
                }),
                "bench",
                Duration::from_secs(600),
            )
            .await
            .unwrap(),
        ),
    )
    .await;
    let nats = NatsServer::start().expect("nats-server");
    latency(
        "nats (kv cas)",
        Arc::new(NatsCoordinator::new(
            NatsConfig {
                servers: NatsServers::List(vec![nats.url()]),
                ..NatsConfig::default()
            },
            "bench",
            Duration::from_secs(600),
        )),
    )
    .await;
}
