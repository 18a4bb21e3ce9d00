//! Delta compression across a cluster (issue #5): three `sockudo` processes on a real
//! redis-server, a real 3-master Redis Cluster and a real nats-server, with
//! `delta_compression.cluster_coordination` on. On every node a delta client (decoding with the
//! shared `sockudo-delta-client` crate, tests/delta-client) and a plain client subscribe to one
//! channel; messages are published through the signed HTTP API spread over the nodes, round-robin
//! and then by concurrent publishers. Per client: every decoded message equals the frame a plain client receives, every
//! seq arrives exactly once, and the scheduled full messages fall on the same seqs (the multiples
//! of N) on every node. Deadlines are generous: eventual delivery is awaited, speed never asserted.

mod common;
use sockudo_delta_client as delta_client;

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use common::Client;
use common::fleet::{Backend, EVENTUALLY, Node};
use delta_client::{Decoded, DeltaDecoder, Kind};
use futures_util::StreamExt;
use serde_json::{Value, json};
use sockudo_server::protocol::server::{EventData, event};
use sockudo_test_backends::{NatsServer, RedisCluster, RedisServer, free_port};
use tokio_tungstenite::tungstenite::Message;

/// Every Nth message of the stream goes in full.
const N: u64 = 5;
/// Messages per scenario.
const MESSAGES: u64 = 30;

/// A node with cluster-coordinated delta compression on `backend`.
fn spawn(backend: &Backend, prefix: &str, name: &str) -> Node {
    let mut c = common::config();
    c.port = free_port();
    c.node_id = Some(name.into());
    c.metrics.enabled = false;
    c.adapter.prefix = prefix.into();
    c.nats.prefix = prefix.into();
    c.delta_compression.enabled = true;
    c.delta_compression.cluster_coordination = true;
    c.delta_compression.full_message_interval = N;
    c.delta_compression.min_message_size = 100;
    backend.configure(&mut c);
    Node::launch(name, &c)
}

/// Waits until the node serves and both its adapter and its delta coordination are up.
async fn wait_ready(node: &Node) {
    node.wait_ready_for("adapter and delta coordination up", |b| {
        b["backends"]["adapter"]["status"] == "ok"
            && b["backends"]["delta_coordination"]["status"] != "degraded"
    })
    .await;
}

/// A realistic ticker payload (well above `min_message_size`): a few changing numbers among
/// static fields. `i` makes every message unique.
fn tick(i: u64) -> String {
    json!({
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
    })
    .to_string()
}

fn plain(channel: &str, data: &str) -> String {
    event("tick", channel, EventData::Str(data), None)
}

/// The next `count` application events of a socket, as its raw text frames.
async fn receive_raw(c: &mut Client, count: usize, who: &str) -> Vec<String> {
    let deadline = Instant::now() + EVENTUALLY;
    let mut out = Vec::new();
    while out.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, c.ws.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{who}: {} of {count} events within {EVENTUALLY:?}",
                    out.len()
                )
            })
            .expect("socket open")
            .expect("frame");
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            let name = v["event"].as_str().unwrap_or_default();
            if name == "pusher:delta" || !name.starts_with("pusher") {
                out.push(t.as_str().to_string());
            }
        }
    }
    out
}

/// Nothing more arrives for a moment (no duplicates).
async fn quiet(c: &mut Client, who: &str) {
    let until = Instant::now() + Duration::from_millis(500);
    while let Ok(Some(Ok(m))) =
        tokio::time::timeout(until.saturating_duration_since(Instant::now()), c.ws.next()).await
    {
        if let Message::Text(t) = &m {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            let name = v["event"].as_str().unwrap_or_default();
            assert!(
                name.starts_with("pusher") && name != "pusher:delta",
                "{who}: extra frame {t}"
            );
        }
    }
}

/// Delta and plain clients on every node, subscribed to `channel`.
async fn subscribers(nodes: &[Node], channel: &str) -> (Vec<Client>, Vec<Client>) {
    let mut delta = Vec::new();
    let mut plain = Vec::new();
    for n in nodes {
        let mut d = n.connect().await;
        d.send(json!({"event":"pusher:enable_delta_compression","data":{}}))
            .await;
        let r = d.next().await;
        assert_eq!(r["event"], "pusher:delta_compression_enabled", "{r}");
        assert_eq!(r["data"]["enabled"], true, "{r}");
        let mut p = n.connect().await;
        for c in [&mut d, &mut p] {
            let ok = c.subscribe(channel).await;
            assert_eq!(
                ok["event"], "pusher_internal:subscription_succeeded",
                "{ok}"
            );
        }
        delta.push(d);
        plain.push(p);
    }
    (delta, plain)
}

/// Receives every published message on every client and checks the delta invariants.
/// `ordered`: publishes were sequential, so arrival order is publish order and seq order.
async fn verify(
    nodes: &[Node],
    channel: &str,
    published: &[String],
    delta: &mut [Client],
    plain_clients: &mut [Client],
    ordered: bool,
) {
    let count = published.len();
    let expected: Vec<String> = published.iter().map(|d| plain(channel, d)).collect();
    let expected_set: HashSet<&String> = expected.iter().collect();
    let multiples: BTreeSet<u64> = (1..=count as u64).filter(|s| s % N == 0).collect();
    let mut scheduled_per_node = Vec::new();
    for (i, (d, p)) in delta.iter_mut().zip(plain_clients.iter_mut()).enumerate() {
        let who = &nodes[i].name;
        // The plain client receives exactly the plain frames, each once.
        let got_plain = receive_raw(p, count, &format!("{who} plain")).await;
        quiet(p, &format!("{who} plain")).await;
        if ordered {
            assert_eq!(got_plain, expected, "{who}: plain frames in publish order");
        } else {
            let set: HashSet<&String> = got_plain.iter().collect();
            assert_eq!(set, expected_set, "{who}: plain frames, each once");
        }

        let raw = receive_raw(d, count, &format!("{who} delta")).await;
        quiet(d, &format!("{who} delta")).await;
        let mut dec = DeltaDecoder::default();
        let decoded: Vec<Decoded> = raw
            .iter()
            .enumerate()
            .map(|(k, t)| {
                dec.feed(t)
                    .unwrap_or_else(|e| panic!("{who}: frame {k} does not decode ({e}): {t}"))
                    .expect("an application event")
            })
            .collect();
        // Every decoded message is the frame the plain clients got. Concurrent publishes have
        // no defined order (two sockets of one node may see them in different orders); the
        // decoded frames are then compared as a set, each exactly once.
        let decoded_plain: Vec<String> = decoded.iter().map(|x| x.plain.clone()).collect();
        if ordered {
            assert_eq!(
                decoded_plain, got_plain,
                "{who}: decoded frames equal the plain client's, in the same order"
            );
        } else {
            let set: HashSet<&String> = decoded_plain.iter().collect();
            assert_eq!(set.len(), count, "{who}: no decoded message twice");
            assert_eq!(
                set, expected_set,
                "{who}: decoded frames equal the originals"
            );
        }
        // Every message is in the stream (coordination worked) and carries a seq.
        let seqs: Vec<u64> = decoded
            .iter()
            .map(|x| {
                x.seq
                    .unwrap_or_else(|| panic!("{who}: message outside the stream: {x:?}"))
            })
            .collect();
        assert_eq!(decoded[0].kind, Kind::Full, "{who}: first message is full");
        assert!(
            decoded.iter().any(|x| matches!(x.kind, Kind::Delta { .. })),
            "{who}: some deltas: {:?}",
            decoded.iter().map(|x| &x.kind).collect::<Vec<_>>()
        );
        let distinct: BTreeSet<u64> = seqs.iter().copied().collect();
        assert_eq!(distinct.len(), count, "{who}: no duplicate seq: {seqs:?}");
        assert_eq!(
            distinct,
            (1..=count as u64).collect(),
            "{who}: every seq of the stream, none lost: {seqs:?}"
        );
        if ordered {
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "{who}: seqs strictly increase: {seqs:?}"
            );
        }
        // Scheduled fulls: fulls after the first message (the subscriber's extra full, unless it
        // fell on the schedule itself).
        let scheduled: BTreeSet<u64> = decoded
            .iter()
            .enumerate()
            .filter(|(k, x)| x.kind == Kind::Full && (*k > 0 || x.seq.unwrap() % N == 0))
            .map(|(_, x)| x.seq.unwrap())
            .collect();
        assert_eq!(
            scheduled,
            multiples,
            "{who}: full messages on the multiples of {N}; kinds: {:?}",
            decoded
                .iter()
                .map(|x| (x.seq.unwrap(), x.kind.clone()))
                .collect::<Vec<_>>()
        );
        scheduled_per_node.push(scheduled);
    }
    assert!(
        scheduled_per_node.windows(2).all(|w| w[0] == w[1]),
        "same full seqs on every node: {scheduled_per_node:?}"
    );
}

/// Sequential publishes, round-robin over the three nodes.
async fn round_robin(nodes: &[Node]) {
    let channel = "delta-round-robin";
    let (mut delta, mut plain_clients) = subscribers(nodes, channel).await;
    let published: Vec<String> = (1..=MESSAGES).map(tick).collect();
    for (i, data) in published.iter().enumerate() {
        let (s, b) = nodes[i % nodes.len()]
            .api()
            .trigger(channel, "tick", data)
            .await;
        assert_eq!(s, 200, "{b}");
    }
    verify(
        nodes,
        channel,
        &published,
        &mut delta,
        &mut plain_clients,
        true,
    )
    .await;
}

/// Two concurrent publishers per node, all at once.
async fn concurrent_publishers(nodes: &[Node]) {
    let channel = "delta-concurrent";
    let (mut delta, mut plain_clients) = subscribers(nodes, channel).await;
    let publishers = 2 * nodes.len() as u64;
    let published: Vec<String> = (1..=MESSAGES).map(|i| tick(1000 + i)).collect();
    let mut tasks = Vec::new();
    for p in 0..publishers {
        let api = nodes[(p as usize) % nodes.len()].api();
        let mine: Vec<String> = published
            .iter()
            .skip(p as usize)
            .step_by(publishers as usize)
            .cloned()
            .collect();
        tasks.push(tokio::spawn(async move {
            for data in mine {
                let (s, b) = api.trigger(channel, "tick", &data).await;
                assert_eq!(s, 200, "{b}");
            }
        }));
    }
    for t in tasks {
        t.await.expect("publisher");
    }
    verify(
        nodes,
        channel,
        &published,
        &mut delta,
        &mut plain_clients,
        false,
    )
    .await;
}

/// The backend goes away while a publish asks it for a number, and comes back: every node's
/// readiness shows coordination `ok` again by itself, with no publish to find out.
async fn coordination_recovers_by_itself(backend: &mut Backend, nodes: &[Node]) {
    backend.kill();
    for n in nodes {
        // Refused (503) by the adapter, after the delta decision failed: that is the point.
        let _ = n.api().trigger("delta-outage", "tick", &tick(0)).await;
        n.wait_ready_for("coordination degraded during the outage", |b| {
            b["backends"]["delta_coordination"]["status"] == "degraded"
        })
        .await;
    }
    backend.restart();
    for n in nodes {
        n.wait_ready_for("coordination ok again without a publish", |b| {
            b["backends"]["delta_coordination"]["status"] == "ok"
        })
        .await;
    }
}

async fn run(mut backend: Backend, prefix: &str) {
    let nodes: Vec<Node> = (0..3)
        .map(|i| spawn(&backend, prefix, &format!("{prefix}-node-{i}")))
        .collect();
    for n in &nodes {
        wait_ready(n).await;
    }
    round_robin(&nodes).await;
    concurrent_publishers(&nodes).await;
    coordination_recovers_by_itself(&mut backend, &nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_across_redis_nodes() {
    run(
        Backend::Redis(RedisServer::start().expect("redis-server")),
        "dr",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_across_redis_cluster_nodes() {
    run(
        Backend::Cluster(RedisCluster::start(3, 0).expect("redis cluster")),
        "drc",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_across_nats_nodes() {
    run(
        Backend::Nats(NatsServer::start().expect("nats-server")),
        "dn",
    )
    .await;
}
