//! Delta compression end to end on one node, over real WebSockets and the signed HTTP API.

mod common;
use sockudo_delta_client as delta_client;

use std::time::Duration;

use common::{Api, Client, config, connect, start};
use delta_client::{DeltaDecoder, Kind};
use futures_util::StreamExt;
use serde_json::{Value, json};
use sockudo_server::protocol::server::{EventData, event};
use tokio_tungstenite::tungstenite::Message;

/// Next raw text frame.
async fn next_text(c: &mut Client) -> String {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), c.ws.next())
            .await
            .expect("frame within 5 s")
            .expect("open")
            .expect("ok");
        if let Message::Text(t) = m {
            return t.as_str().to_string();
        }
    }
}

async fn opt_in(c: &mut Client, algorithm: Option<&str>) {
    let data = algorithm.map_or(json!({}), |a| json!({ "algorithm": a }));
    c.send(json!({"event":"pusher:enable_delta_compression","data":data}))
        .await;
    let r = c.next().await;
    assert_eq!(r["event"], "pusher:delta_compression_enabled", "{r}");
    assert_eq!(r["data"]["enabled"], true);
}

/// A realistic ticker payload: a few changing numbers among static descriptive fields.
fn tick(asset: &str, i: u64) -> String {
    json!({
        "asset": asset,
        "name": format!("{asset} / US Dollar perpetual"),
        "exchange": "loopback-exchange",
        "market": "spot",
        "currency": "USD",
        "price": format!("{}.{:02}", 64000 + i * 3, i % 100),
        "volume_24h": 1000 + i * 7,
        "bid": format!("{}.10", 63990 + i),
        "ask": format!("{}.90", 64010 + i),
        "high_24h": "65123.00",
        "low_24h": "62011.50",
        "open_24h": "63500.25",
        "status": "trading",
        "precision": {"price": 2, "quantity": 6},
        "ts": 1_700_000_000_000u64 + i,
    })
    .to_string()
}

fn plain(name: &str, channel: &str, data: &str) -> String {
    event(name, channel, EventData::Str(data), None)
}

/// Receives `n` events through the decoder, checking each decodes to what was published.
async fn receive(
    c: &mut Client,
    dec: &mut DeltaDecoder,
    expected: &[String],
) -> Vec<delta_client::Decoded> {
    let mut out = Vec::new();
    while out.len() < expected.len() {
        let text = next_text(c).await;
        if let Some(d) = dec.feed(&text).expect("decodes") {
            assert_eq!(d.plain, expected[out.len()], "message {}", out.len());
            out.push(d);
        }
    }
    out
}

#[tokio::test]
async fn schedule_late_joiner_and_plain_clients() {
    let mut cfg = config();
    cfg.delta_compression.full_message_interval = 5;
    let server = start(cfg).await;
    let api = Api::new(&server);
    let mut plain_client = connect(&server).await;
    let mut a = connect(&server).await;
    opt_in(&mut a, None).await;
    for c in [&mut plain_client, &mut a] {
        c.subscribe("prices").await;
    }
    let msgs: Vec<String> = (1..=23)
        .map(|i| plain("tick", "prices", &tick("BTC", i)))
        .collect();
    let mut dec_a = DeltaDecoder::default();
    let mut late = None;
    let mut dec_late = DeltaDecoder::default();
    let mut late_got = Vec::new();
    let mut a_got = Vec::new();
    for i in 1..=23u64 {
        if i == 8 {
            let mut b = connect(&server).await;
            opt_in(&mut b, None).await;
            b.subscribe("prices").await;
            late = Some(b);
        }
        let (status, _) = api.trigger("prices", "tick", &tick("BTC", i)).await;
        assert_eq!(status, 200);
        let m = &msgs[(i - 1) as usize..i as usize];
        // The plain client receives exactly the frame it always did.
        assert_eq!(next_text(&mut plain_client).await, m[0]);
        a_got.extend(receive(&mut a, &mut dec_a, m).await);
        if let Some(b) = late.as_mut() {
            late_got.extend(receive(b, &mut dec_late, m).await);
        }
    }
    let fulls = |v: &[delta_client::Decoded]| -> Vec<u64> {
        v.iter()
            .filter(|d| d.kind == Kind::Full)
            .map(|d| d.seq.unwrap())
            .collect()
    };
    assert_eq!(
        a_got.iter().map(|d| d.seq.unwrap()).collect::<Vec<_>>(),
        (1..=23).collect::<Vec<_>>()
    );
    // First message (no base) then the schedule: multiples of 5.
    assert_eq!(fulls(&a_got), vec![1, 5, 10, 15, 20]);
    // The late joiner's extra full comes first and does not shift the schedule.
    assert_eq!(fulls(&late_got), vec![8, 10, 15, 20]);
    assert!(a_got.iter().any(|d| matches!(d.kind, Kind::Delta { .. })));
    let text = reqwest::get(format!("http://{}/metrics", server.metrics_addr.unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let metric = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {text}"))
    };
    assert!(
        metric("sockudo_delta_bytes_sent_total") < metric("sockudo_delta_bytes_original_total")
    );
    assert!(metric("sockudo_delta_messages_total{kind=\"delta\"}") > 0.0);
    server.shutdown().await;
}

#[tokio::test]
async fn conflation_resync_resubscribe_force_and_bypass() {
    let mut cfg = config();
    cfg.delta_compression.full_message_interval = 100;
    cfg.delta_compression.conflation_key = Some("asset".into());
    let server = start(cfg).await;
    let api = Api::new(&server);
    let mut c = connect(&server).await;
    opt_in(&mut c, None).await;
    c.subscribe("ticker").await;
    let mut dec = DeltaDecoder::default();
    let assets = ["BTC", "ETH", "SOL"];
    let mut got = Vec::new();
    for i in 0..12u64 {
        let asset = assets[(i % 3) as usize];
        let data = tick(asset, i);
        api.trigger("ticker", "tick", &data).await;
        got.extend(receive(&mut c, &mut dec, &[plain("tick", "ticker", &data)]).await);
    }
    // Each stream starts full, then deltas against its own previous message.
    for (i, d) in got.iter().enumerate() {
        assert_eq!(d.conflation_key.as_deref(), Some(assets[i % 3]));
        assert_eq!(d.seq, Some(i as u64 / 3 + 1));
        let want_full = i < 3;
        assert_eq!(d.kind == Kind::Full, want_full, "{i}: {:?}", d.kind);
    }

    // The client reports a delta it could not apply: the next message is full.
    c.send(json!({"event":"pusher:delta_sync_error","data":{"channel":"ticker"}}))
        .await;
    dec.forget("ticker");
    let data = tick("BTC", 50);
    api.trigger("ticker", "tick", &data).await;
    let d = receive(&mut c, &mut dec, &[plain("tick", "ticker", &data)]).await;
    assert_eq!(d[0].kind, Kind::Full);

    // Publisher forces a full message.
    let data = tick("BTC", 51);
    let (s, _) = api
        .post(
            &format!("/apps/{}/events", common::APP_ID),
            &json!({"name":"tick","channel":"ticker","data":data,"delta":false}),
        )
        .await;
    assert_eq!(s, 200);
    let d = receive(&mut c, &mut dec, &[plain("tick", "ticker", &data)]).await;
    assert_eq!(d[0].kind, Kind::Full);

    // Small messages bypass the stream; the next delta still applies to the held base.
    api.trigger("ticker", "tick", r#"{"asset":"BTC"}"#).await;
    let d = receive(
        &mut c,
        &mut dec,
        &[plain("tick", "ticker", r#"{"asset":"BTC"}"#)],
    )
    .await;
    assert_eq!(d[0].kind, Kind::Plain);
    let data = tick("BTC", 52);
    api.trigger("ticker", "tick", &data).await;
    let d = receive(&mut c, &mut dec, &[plain("tick", "ticker", &data)]).await;
    assert!(matches!(d[0].kind, Kind::Delta { .. }), "{:?}", d[0].kind);

    // Resubscribe starts from full.
    c.send(json!({"event":"pusher:unsubscribe","data":{"channel":"ticker"}}))
        .await;
    c.subscribe("ticker").await;
    dec.forget("ticker");
    let data = tick("BTC", 53);
    api.trigger("ticker", "tick", &data).await;
    let d = receive(&mut c, &mut dec, &[plain("tick", "ticker", &data)]).await;
    assert_eq!(d[0].kind, Kind::Full);
    server.shutdown().await;
}

#[tokio::test]
async fn per_subscription_settings_encrypted_and_shared_encoding() {
    let mut cfg = config();
    cfg.delta_compression.full_message_interval = 1000;
    let server = start(cfg).await;
    let api = Api::new(&server);

    // Per-subscription xdelta3 without the connection-wide opt-in.
    let mut x = connect(&server).await;
    x.send(json!({"event":"pusher:subscribe","data":{"channel":"doc","delta":{"enabled":true,"algorithm":"vcdiff"}}}))
        .await;
    let mut saw = Vec::new();
    for _ in 0..2 {
        saw.push(x.next().await);
    }
    let conf = saw
        .iter()
        .find(|f| f["event"] == "pusher:delta_compression_enabled")
        .expect("per-channel confirmation");
    assert_eq!(conf["channel"], "doc");
    assert_eq!(conf["data"]["algorithm"], "xdelta3");

    // Opted in, but this channel explicitly off.
    let mut off = connect(&server).await;
    opt_in(&mut off, None).await;
    off.send(json!({"event":"pusher:subscribe","data":{"channel":"doc","delta":false}}))
        .await;
    assert_eq!(
        off.next().await["event"],
        "pusher_internal:subscription_succeeded"
    );
    let conf = off.next().await;
    assert_eq!(conf["event"], "pusher:delta_compression_enabled");
    assert_eq!(conf["data"]["enabled"], false);
    // Three fossil sockets share one encoding per publish.
    let mut fossil = Vec::new();
    for _ in 0..3 {
        let mut c = connect(&server).await;
        opt_in(&mut c, Some("fossil")).await;
        c.subscribe("doc").await;
        fossil.push((c, DeltaDecoder::default()));
    }
    let mut doc = json!({"title":"Quarterly report","owner":"ana","status":"draft","body":"Lorem ipsum dolor sit amet, consectetur adipiscing elit.","tags":["finance","q3"],"version":0});
    let mut dec_x = DeltaDecoder::default();
    let metrics_url = format!("http://{}/metrics", server.metrics_addr.unwrap());
    let encodes = || async {
        let t = reqwest::get(&metrics_url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        t.lines()
            .find(|l| l.starts_with("sockudo_delta_encodes_total"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    for v in 1..=6u64 {
        doc["version"] = json!(v);
        doc["status"] = json!(format!("rev-{v}"));
        let data = doc.to_string();
        let before = encodes().await;
        api.trigger("doc", "update", &data).await;
        let want = [plain("update", "doc", &data)];
        let d = receive(&mut x, &mut dec_x, &want).await;
        if v > 1 {
            assert!(matches!(d[0].kind, Kind::Delta { .. }));
        }
        assert_eq!(next_text(&mut off).await, want[0], "delta off: plain frame");
        for (c, dec) in fossil.iter_mut() {
            receive(c, dec, &want).await;
        }
        if v > 1 {
            // One fossil + one vcdiff encoding, whatever the number of sockets.
            assert_eq!(encodes().await - before, 2, "version {v}");
        }
    }

    // Encrypted channels are never delta-encoded.
    let mut e = connect(&server).await;
    opt_in(&mut e, None).await;
    e.subscribe_private("private-encrypted-x").await;
    let payload = json!({"ciphertext":"a".repeat(200),"nonce":"n"}).to_string();
    for _ in 0..2 {
        api.trigger("private-encrypted-x", "secret", &payload).await;
        let t = next_text(&mut e).await;
        assert_eq!(t, plain("secret", "private-encrypted-x", &payload));
    }
    server.shutdown().await;
}

#[tokio::test]
async fn disabled_in_config_answers_not_enabled() {
    let mut cfg = config();
    cfg.delta_compression.enabled = false;
    let server = start(cfg).await;
    let api = Api::new(&server);
    let mut c = connect(&server).await;
    c.send(json!({"event":"pusher:enable_delta_compression","data":{}}))
        .await;
    let r: Value = c.next().await;
    assert_eq!(r["data"]["enabled"], false);
    c.subscribe("x").await;
    let data = tick("BTC", 1);
    for _ in 0..3 {
        api.trigger("x", "tick", &data).await;
        assert_eq!(next_text(&mut c).await, plain("tick", "x", &data));
    }
    server.shutdown().await;
}
