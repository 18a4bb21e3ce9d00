//! `delta-bandwidth`: bytes on the wire for a slowly changing message stream, with delta
//! compression on versus off, on the same server, channel and messages.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use sockudo_delta_client::{DeltaDecoder, Kind};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::Target;
use crate::publisher::Publisher;
use crate::record::Record;
use crate::stats::lock;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const CHANNEL: &str = "bench-delta-ticker";
const EVENT: &str = "tick";

#[derive(Args, Clone, Debug, Serialize)]
pub struct DeltaArgs {
    /// Subscribers per group (one group opts in to deltas, the other does not).
    #[arg(long, short = 'k', default_value_t = 5)]
    pub subscribers: usize,
    /// Messages published.
    #[arg(long, short = 'm', default_value_t = 200)]
    pub messages: u64,
    /// Publishes per second.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// The `protocol` query parameter of the WebSocket URL. The reference sockudo sends deltas
    /// only to its protocol-2 connections (its notes §5.2); ours speaks the Pusher protocol 7.
    #[arg(long, default_value_t = 7)]
    pub protocol: u32,
    /// Seconds to wait for the last messages after the last publish.
    #[arg(long, default_value_t = 10.0)]
    pub drain_secs: f64,
}

/// A ticker update: the same static fields every time, a few numbers that move a little.
pub fn tick(i: u64) -> String {
    json!({
        "asset": "BTC",
        "name": "BTC / US Dollar perpetual",
        "exchange": "loopback-exchange",
        "market": "spot",
        "currency": "USD",
        "price": format!("{}.{:02}", 64000 + (i * 37) % 500, (i * 13) % 100),
        "volume_24h": 1_000_000 + i * 7,
        "bid": format!("{}.10", 63990 + (i * 37) % 500),
        "ask": format!("{}.90", 64010 + (i * 37) % 500),
        "high_24h": "65123.00",
        "low_24h": "62011.50",
        "open_interest": 52_000 + (i * 11) % 300,
        "funding_rate": "0.0001",
        "status": "trading",
        "i": i,
    })
    .to_string()
}

/// What one subscriber saw.
#[derive(Debug, Default, Clone, Serialize)]
struct Seen {
    /// Application frames of the channel (events and delta frames).
    frames: u64,
    /// Their payload bytes plus WebSocket frame headers (server frames are unmasked).
    wire_bytes: u64,
    full: u64,
    delta: u64,
    plain: u64,
    /// Frames that decoded to exactly the published payload.
    verified: u64,
    /// Frames that did not decode, or decoded to something else.
    errors: u64,
    first_error: Option<String>,
}

fn frame_overhead(len: usize) -> u64 {
    match len {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    }
}

fn protocol_frame(event: &str) -> bool {
    [
        "pusher:",
        "pusher_internal:",
        "sockudo:",
        "sockudo_internal:",
    ]
    .iter()
    .any(|p| event.starts_with(p))
        && !event.ends_with(":delta")
}

async fn wait_suffix(ws: &mut Ws, suffix: &str) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .with_context(|| format!("no *{suffix} within 15 s"))?;
        match msg {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                let event = v["event"].as_str().unwrap_or_default();
                if event.ends_with(suffix) {
                    return Ok(v);
                }
                if event.ends_with(":error") {
                    bail!("server error while waiting for *{suffix}: {}", t.as_str());
                }
            }
            Some(Ok(Message::Close(f))) => bail!("closed while waiting for *{suffix}: {f:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("connection ended while waiting for *{suffix}"),
        }
    }
}

async fn open(target: &Target, protocol: u32, delta: bool) -> Result<Ws> {
    let url = format!(
        "ws://{}/app/{}?protocol={protocol}&client=sockudo-bench&version=0.1.0",
        target.ws, target.args.key
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .context("WebSocket handshake")?;
    wait_suffix(&mut ws, ":connection_established").await?;
    if delta {
        let enable = json!({"event": "pusher:enable_delta_compression", "data": {}});
        ws.send(Message::text(enable.to_string())).await?;
        let ok = wait_suffix(&mut ws, ":delta_compression_enabled").await?;
        if ok["data"]["enabled"] == false {
            bail!("the server refused delta compression: {ok}");
        }
    }
    let sub = json!({"event": "pusher:subscribe", "data": {"channel": CHANNEL}});
    ws.send(Message::text(sub.to_string())).await?;
    wait_suffix(&mut ws, ":subscription_succeeded").await?;
    Ok(ws)
}

/// Reads until `messages` application frames arrived or `stop` fires.
async fn receive(
    mut ws: Ws,
    published: Arc<Vec<String>>,
    messages: u64,
    seen: Arc<std::sync::Mutex<Seen>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut dec = DeltaDecoder::default();
    loop {
        let msg = tokio::select! {
            m = ws.next() => m,
            _ = stop.changed() => break,
        };
        let Some(Ok(msg)) = msg else { break };
        let Message::Text(t) = msg else { continue };
        let text = t.as_str();
        let v: Value = serde_json::from_str(text).unwrap_or_default();
        let event = v["event"].as_str().unwrap_or_default();
        if protocol_frame(event) {
            if event.ends_with(":ping") {
                let pong = json!({"event": "pusher:pong", "data": {}});
                let _ = ws.send(Message::text(pong.to_string())).await;
            }
            continue;
        }
        let mut s = lock(&seen);
        s.frames += 1;
        s.wire_bytes += text.len() as u64 + frame_overhead(text.len());
        let fail = |s: &mut Seen, why: String| {
            s.errors += 1;
            s.first_error.get_or_insert(why);
        };
        match dec.feed(text) {
            Ok(Some(d)) => {
                match d.kind {
                    Kind::Full => s.full += 1,
                    Kind::Delta { .. } => s.delta += 1,
                    Kind::Plain => s.plain += 1,
                }
                let plain: Value = serde_json::from_str(&d.plain).unwrap_or_default();
                let data = plain["data"].as_str().unwrap_or_default();
                let i = serde_json::from_str::<Value>(data).unwrap_or_default()["i"].as_u64();
                match i.and_then(|i| published.get(i as usize)) {
                    Some(p) if p == data => s.verified += 1,
                    _ => fail(
                        &mut s,
                        format!("decoded to an unpublished payload: {}", d.plain),
                    ),
                }
            }
            Ok(None) => {}
            Err(e) => fail(&mut s, format!("{e}: {text}")),
        }
        if s.frames >= messages {
            break;
        }
    }
}

pub async fn run(target: &Target, a: DeltaArgs) -> Result<Record> {
    if a.subscribers == 0 || a.messages == 0 || a.rate <= 0.0 {
        bail!("--subscribers, --messages and --rate must be positive");
    }
    let method = format!(
        "Two groups of {k} WebSocket subscribers (protocol {p}) on one channel of the target: one group \
         sends pusher:enable_delta_compression, the other does not. {m} ticker updates (JSON of \
         ~{size} bytes, a few numbers change each time, the rest is static; see tick() in \
         delta_bandwidth.rs) are published at {r}/s through the publish address. Per subscriber: \
         the bytes of every application frame of the channel (payload + WebSocket header) and, \
         for the delta group, each frame decoded with sockudo-delta-client and compared with the \
         published payload. Bandwidth saved = 1 - delta-group bytes / plain-group bytes.",
        k = a.subscribers,
        p = a.protocol,
        m = a.messages,
        size = tick(1).len(),
        r = a.rate
    );
    let mut record = Record::new(target, "delta-bandwidth", method, serde_json::to_value(&a)?);
    record.print_method();

    let published: Arc<Vec<String>> = Arc::new((0..a.messages).map(tick).collect());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut groups: Vec<(bool, Vec<Arc<std::sync::Mutex<Seen>>>)> = Vec::new();
    let mut tasks = Vec::new();
    for delta in [true, false] {
        let mut seen = Vec::new();
        for _ in 0..a.subscribers {
            let ws = open(target, a.protocol, delta)
                .await
                .with_context(|| format!("subscriber (delta {delta})"))?;
            let s = Arc::new(std::sync::Mutex::new(Seen::default()));
            seen.push(s.clone());
            tasks.push(tokio::spawn(receive(
                ws,
                published.clone(),
                a.messages,
                s,
                stop_rx.clone(),
            )));
        }
        groups.push((delta, seen));
    }
    // Subscriptions on the subscribers' node must be known to the publishing node.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let publisher = Publisher::new(
        target.http,
        &target.args.app_id,
        &target.args.key,
        &target.args.secret,
        1,
    );
    let mut failed_publishes = 0u64;
    let interval = Duration::from_secs_f64(1.0 / a.rate);
    let mut next = tokio::time::Instant::now();
    for data in published.iter() {
        tokio::time::sleep_until(next).await;
        next += interval;
        let body = Publisher::event_body(CHANNEL, EVENT, data);
        match publisher.post_events(body).await {
            Ok(s) if s.is_success() => {}
            _ => failed_publishes += 1,
        }
    }
    let drain = tokio::time::sleep(Duration::from_secs_f64(a.drain_secs));
    tokio::pin!(drain);
    let all = futures_util::future::join_all(tasks);
    tokio::select! {
        _ = all => {},
        _ = &mut drain => { let _ = stop_tx.send(true); },
    }

    let total = |delta: bool| -> Seen {
        let mut t = Seen::default();
        for (d, seen) in &groups {
            if *d != delta {
                continue;
            }
            for s in seen {
                let s = lock(s);
                t.frames += s.frames;
                t.wire_bytes += s.wire_bytes;
                t.full += s.full;
                t.delta += s.delta;
                t.plain += s.plain;
                t.verified += s.verified;
                t.errors += s.errors;
                if t.first_error.is_none() {
                    t.first_error = s.first_error.clone();
                }
            }
        }
        t
    };
    let (on, off) = (total(true), total(false));
    let per_msg = |s: &Seen| (s.frames > 0).then(|| s.wire_bytes as f64 / s.frames as f64);
    let expected = a.messages * a.subscribers as u64;
    let saved = match (per_msg(&on), per_msg(&off)) {
        (Some(x), Some(y)) if y > 0.0 => Some((1.0 - x / y) * 100.0),
        _ => None,
    };
    record.metric("bandwidth saved by delta", "%", saved, true);
    record.metric("bytes per message, delta on", "B", per_msg(&on), false);
    record.metric("bytes per message, delta off", "B", per_msg(&off), false);
    let frac = |x: u64| (on.frames > 0).then(|| x as f64 * 100.0 / on.frames as f64);
    record.metric("delta frames (delta group)", "%", frac(on.delta), true);
    record.metric(
        "decoded to the published payload (delta group)",
        "%",
        frac(on.verified),
        true,
    );
    record.metric(
        "delivered, delta group",
        "%",
        Some(on.frames as f64 * 100.0 / expected as f64),
        true,
    );
    record.metric(
        "delivered, plain group",
        "%",
        Some(off.frames as f64 * 100.0 / expected as f64),
        true,
    );
    record.details = json!({
        "delta_group": on,
        "plain_group": off,
        "failed_publishes": failed_publishes,
        "message_bytes": published.iter().map(|p| p.len()).sum::<usize>() / published.len(),
    });
    record.print_summary();
    if let Some(e) = &on.first_error {
        println!("  first decode error: {e}");
    }
    Ok(record)
}
