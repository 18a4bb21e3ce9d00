//! The WebSocket protocol over real sockets.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sockudo_server::RunningServer;
use tokio_tungstenite::tungstenite::Message;

fn data(frame: &Value) -> Value {
    match &frame["data"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
        other => other.clone(),
    }
}

#[tokio::test]
async fn connection_established_and_ping_pong() {
    let server = start(config()).await;
    let mut c = connect(&server).await;
    assert!(c.socket_id.split('.').count() == 2);
    c.send(json!({"event":"pusher:ping","data":{}})).await;
    assert_eq!(c.next().await["event"], "pusher:pong");
}

#[tokio::test]
async fn unknown_app_is_refused_with_4001() {
    let server = start(config()).await;
    let mut ws = connect_raw(&server, "nope").await;
    let f = next_json(&mut ws).await;
    assert_eq!(f["event"], "pusher:error");
    assert_eq!(f["data"]["code"], 4001);
    assert_eq!(close_code(&mut ws, Duration::from_secs(2)).await, 4001);
}

#[tokio::test]
async fn disabled_app_is_refused_with_4003() {
    let mut cfg = config();
    cfg.apps[0].enabled = false;
    let server = start(cfg).await;
    let mut ws = connect_raw(&server, KEY).await;
    assert_eq!(next_json(&mut ws).await["data"]["code"], 4003);
    assert_eq!(close_code(&mut ws, Duration::from_secs(2)).await, 4003);
}

#[tokio::test]
async fn malformed_frames_get_errors_and_the_socket_stays() {
    let server = start(config()).await;
    let mut c = connect(&server).await;
    for bad in [
        "{",
        "not json",
        "[]",
        r#"{"event":"pusher:subscribe","data":{}}"#,
        r#"{"event":"client-x"}"#,
    ] {
        c.send_text(bad).await;
        let f = c.next().await;
        assert_eq!(f["event"], "pusher:error", "{bad}: {f}");
        assert_eq!(f["data"]["code"], 4000, "{bad}");
        assert!(f["data"]["message"].as_str().unwrap().len() > 5);
    }
    c.ws.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(c.next().await["event"], "pusher:error");
    c.send(json!({"event":"pusher:ping"})).await;
    assert_eq!(c.next().await["event"], "pusher:pong");
}

#[tokio::test]
async fn oversized_frame_closes_with_1009() {
    let mut cfg = config();
    cfg.websocket.max_payload_kb = 4;
    let server = start(cfg).await;
    let mut c = connect(&server).await;
    let big = format!(
        r#"{{"event":"client-x","channel":"private-a","data":"{}"}}"#,
        "x".repeat(8 * 1024)
    );
    c.send_text(&big).await;
    assert_eq!(close_code(&mut c.ws, Duration::from_secs(3)).await, 1009);
    // The node is fine.
    let mut d = connect(&server).await;
    d.send(json!({"event":"pusher:ping"})).await;
    assert_eq!(d.next().await["event"], "pusher:pong");
}

#[tokio::test]
async fn public_channel_receives_http_events_with_socket_exclusion() {
    let server = start(config()).await;
    let api = Api::new(&server);
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;
    let ok = a.subscribe("news").await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(ok["channel"], "news");
    b.subscribe("news").await;
    let (status, _) = api.trigger("news", "update", r#"{"n":1}"#).await;
    assert_eq!(status, 200);
    for c in [&mut a, &mut b] {
        let f = c.next().await;
        assert_eq!(f["event"], "update");
        assert_eq!(f["channel"], "news");
        assert_eq!(f["data"], r#"{"n":1}"#);
    }
    let (status, _) = api
        .post(
            &format!("/apps/{APP_ID}/events"),
            &json!({"name":"e2","channel":"news","data":"x","socket_id":a.socket_id}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(b.next().await["event"], "e2");
    silent(&mut a.ws, 200).await;
}

#[tokio::test]
async fn invalid_channel_names_are_refused() {
    let server = start(config()).await;
    let mut c = connect(&server).await;
    let f = c.subscribe("bad name").await;
    assert_eq!(f["event"], "pusher:error");
    assert_eq!(f["data"]["code"], 4300);
    let f = c.subscribe(&"a".repeat(201)).await;
    assert_eq!(f["data"]["code"], 4300);
}

#[tokio::test]
async fn bad_signatures_are_refused_on_every_private_and_presence_variant() {
    let server = start(config()).await;
    let mut c = connect(&server).await;
    for channel in [
        "private-a",
        "private-cache-a",
        "private-encrypted-a",
        "private-encrypted-cache-a",
        "presence-a",
        "presence-cache-a",
    ] {
        let auth = format!("{KEY}:{}", "0".repeat(64));
        c.send(json!({"event":"pusher:subscribe","data":{"channel":channel,"auth":auth,"channel_data":"{\"user_id\":\"u\"}"}})).await;
        let f = c.next().await;
        assert_eq!(f["event"], "pusher:subscription_error", "{channel}: {f}");
        assert_eq!(f["channel"], channel);
        assert_eq!(f["data"]["type"], "AuthError");
        assert_eq!(f["data"]["status"], 401);
        // A signature made for another socket is refused too.
        let other = sockudo_server::auth::sign(SECRET, &format!("1.1:{channel}"));
        c.send(json!({"event":"pusher:subscribe","data":{"channel":channel,"auth":format!("{KEY}:{other}")}})).await;
        assert_eq!(c.next().await["event"], "pusher:subscription_error");
        // No auth at all.
        c.send(json!({"event":"pusher:subscribe","data":{"channel":channel}}))
            .await;
        assert_eq!(c.next().await["event"], "pusher:subscription_error");
    }
    // Still open and usable.
    let ok = c.subscribe_private("private-a").await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
}

#[tokio::test]
async fn presence_members_once_per_user() {
    let server = start(config()).await;
    let mut a = connect(&server).await;
    let mut b1 = connect(&server).await;
    let mut b2 = connect(&server).await;
    let ch = "presence-room";
    let ok = a
        .subscribe_presence(ch, r#"{"user_id":"a","user_info":{"name":"A"}}"#)
        .await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    let d = data(&ok);
    assert_eq!(d["presence"]["count"], 1);
    assert_eq!(d["presence"]["hash"]["a"]["name"], "A");

    // Numeric user ids (Laravel) are accepted, and the verbatim channel_data (with spaces) is signed.
    let ok = b1
        .subscribe_presence(ch, r#"{"user_id": 42, "user_info": {"name": "B"}}"#)
        .await;
    assert_eq!(data(&ok)["presence"]["count"], 2);
    let added = a.next().await;
    assert_eq!(added["event"], "pusher_internal:member_added");
    assert_eq!(data(&added)["user_id"], "42");
    assert_eq!(data(&added)["user_info"]["name"], "B");

    // Second socket of the same user: no member_added.
    let ok = b2.subscribe_presence(ch, r#"{"user_id":42}"#).await;
    assert_eq!(data(&ok)["presence"]["count"], 2);
    silent(&mut a.ws, 200).await;

    b1.send(json!({"event":"pusher:unsubscribe","data":{"channel":ch}}))
        .await;
    silent(&mut a.ws, 200).await;
    drop(b2);
    let removed = a.next().await;
    assert_eq!(removed["event"], "pusher_internal:member_removed");
    assert_eq!(data(&removed)["user_id"], "42");
}

#[tokio::test]
async fn presence_limits() {
    let mut cfg = config();
    cfg.apps[0].limits.max_presence_members_per_channel = 1;
    cfg.apps[0].limits.max_presence_member_size_kb = 1;
    let server = start(cfg).await;
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;
    assert_eq!(
        a.subscribe_presence("presence-x", r#"{"user_id":"a"}"#)
            .await["event"],
        "pusher_internal:subscription_succeeded"
    );
    let f = b
        .subscribe_presence("presence-x", r#"{"user_id":"b"}"#)
        .await;
    assert_eq!(f["data"]["code"], 4100, "{f}");
    let big = format!(r#"{{"user_id":"c","user_info":"{}"}}"#, "x".repeat(2000));
    let f = b.subscribe_presence("presence-y", &big).await;
    assert_eq!(f["event"], "pusher:subscription_error");
    let f = b
        .subscribe_presence("presence-y", r#"{"user_id":{"x":1}}"#)
        .await;
    assert_eq!(f["event"], "pusher:subscription_error");
}

#[tokio::test]
async fn client_events_rules() {
    let mut cfg = config();
    cfg.apps[0].limits.max_client_events_per_second = 3;
    let server = start(cfg).await;
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;
    a.subscribe_private("private-chat").await;
    b.subscribe_private("private-chat").await;
    a.send(json!({"event":"client-typing","channel":"private-chat","data":{"who":"a"}}))
        .await;
    let f = b.next().await;
    assert_eq!(f["event"], "client-typing");
    assert_eq!(f["data"]["who"], "a");
    silent(&mut a.ws, 150).await; // never echoed

    // Not subscribed.
    a.send(json!({"event":"client-x","channel":"private-other","data":{}}))
        .await;
    assert_eq!(a.next().await["data"]["code"], 4301);
    // Public and encrypted channels refuse them.
    a.subscribe("public").await;
    a.send(json!({"event":"client-x","channel":"public","data":{}}))
        .await;
    assert_eq!(a.next().await["data"]["code"], 4301);
    a.subscribe_private("private-encrypted-e").await;
    a.send(json!({"event":"client-x","channel":"private-encrypted-e","data":{}}))
        .await;
    assert_eq!(a.next().await["data"]["code"], 4301);

    // Rate limit: 3 per second, then 4301 (the socket stays open).
    let mut refused = 0;
    for _ in 0..5 {
        a.send(json!({"event":"client-burst","channel":"private-chat","data":{}}))
            .await;
    }
    let mut delivered = 0;
    for _ in 0..5 {
        let f = a.next().await;
        if f["data"]["code"] == 4301 {
            refused += 1;
        }
        if refused == 2 {
            break;
        }
    }
    while let Ok(Some(Ok(Message::Text(_)))) = tokio::time::timeout(
        Duration::from_millis(200),
        futures_util::StreamExt::next(&mut b.ws),
    )
    .await
    {
        delivered += 1;
    }
    assert_eq!(refused, 2);
    assert!(delivered <= 3, "{delivered}");
}

#[tokio::test]
async fn client_events_need_the_app_feature() {
    let mut cfg = config();
    cfg.apps[0].features.enable_client_messages = false;
    let server = start(cfg).await;
    let mut a = connect(&server).await;
    a.subscribe_private("private-chat").await;
    a.send(json!({"event":"client-typing","channel":"private-chat","data":{}}))
        .await;
    assert_eq!(a.next().await["data"]["code"], 4301);
}

#[tokio::test]
async fn presence_client_events_carry_user_id() {
    let server = start(config()).await;
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;
    a.subscribe_presence("presence-p", r#"{"user_id":"ua"}"#)
        .await;
    b.subscribe_presence("presence-p", r#"{"user_id":"ub"}"#)
        .await;
    a.expect_event("pusher_internal:member_added").await;
    a.send(json!({"event":"client-hi","channel":"presence-p","data":"x"}))
        .await;
    let f = b.next().await;
    assert_eq!(f["event"], "client-hi");
    assert_eq!(f["user_id"], "ua");
}

#[tokio::test]
async fn cache_channels_replay_or_miss() {
    let server = start(config()).await;
    let api = Api::new(&server);
    let mut a = connect(&server).await;
    assert_eq!(
        a.subscribe("cache-prices").await["event"],
        "pusher_internal:subscription_succeeded"
    );
    let miss = a.next().await;
    assert_eq!(miss["event"], "pusher:cache_miss");
    assert_eq!(miss["channel"], "cache-prices");
    api.trigger("cache-prices", "price", "1").await;
    api.trigger("cache-prices", "price", "2").await;
    let mut b = connect(&server).await;
    b.subscribe("cache-prices").await;
    let last = b.next().await;
    assert_eq!(last["event"], "price");
    assert_eq!(last["data"], "2");
    // Private cache channel with good auth also replays.
    api.trigger("private-cache-p", "e", "p").await;
    let ok = b.subscribe_private("private-cache-p").await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(b.next().await["data"], "p");
}

#[tokio::test]
async fn signin_and_send_to_user() {
    let server = start(config()).await;
    let api = Api::new(&server);
    let mut a = connect(&server).await;
    let ok = a.signin(r#"{"id":"u1","user_info":{"n":1}}"#).await;
    assert_eq!(ok["event"], "pusher:signin_success");
    assert_eq!(
        ok["data"]["user_data"],
        r#"{"id":"u1","user_info":{"n":1}}"#
    );
    // pusher-js subscribes to its own server-to-user channel.
    assert_eq!(
        a.subscribe("#server-to-user-u1").await["event"],
        "pusher_internal:subscription_succeeded"
    );
    assert_eq!(
        a.subscribe("#server-to-user-u2").await["event"],
        "pusher:subscription_error"
    );
    let (status, _) = api.trigger("#server-to-user-u1", "hello", "hi u1").await;
    assert_eq!(status, 200);
    let f = a.next().await;
    assert_eq!(f["event"], "hello");
    assert_eq!(f["channel"], "#server-to-user-u1");

    // Terminate closes that user's sockets with 4009.
    let (status, _) = api
        .post(
            &format!("/apps/{APP_ID}/users/u1/terminate_connections"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(close_code(&mut a.ws, Duration::from_secs(2)).await, 4009);
}

#[tokio::test]
async fn bad_signin_closes_with_4009() {
    let server = start(config()).await;
    let mut a = connect(&server).await;
    a.send(json!({"event":"pusher:signin","data":{"user_data":"{\"id\":\"u\"}","auth":format!("{KEY}:{}", "ab".repeat(32))}})).await;
    let f = a.next().await;
    assert_eq!(f["data"]["code"], 4009);
    assert_eq!(close_code(&mut a.ws, Duration::from_secs(2)).await, 4009);
}

#[tokio::test]
async fn watchlist_events_in_pusher_js_format() {
    let server = start(config()).await;
    let mut a = connect(&server).await;
    a.signin(r#"{"id":"alice","watchlist":["bob"]}"#).await;
    let mut b = connect(&server).await;
    b.signin(r#"{"id":"bob","watchlist":["alice"]}"#).await;
    let online = b.next().await;
    assert_eq!(online["event"], "pusher_internal:watchlist_events");
    assert_eq!(online["data"]["events"][0]["name"], "online");
    assert_eq!(online["data"]["events"][0]["user_ids"][0], "alice");
    let f = a.next().await;
    assert_eq!(f["data"]["events"][0]["name"], "online");
    assert_eq!(f["data"]["events"][0]["user_ids"][0], "bob");
    drop(b);
    let f = a.next().await;
    assert_eq!(f["data"]["events"][0]["name"], "offline");
}

#[tokio::test]
async fn subscription_count_when_enabled() {
    let mut cfg = config();
    cfg.apps[0].features.enable_subscription_count = true;
    let server = start(cfg).await;
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;
    a.subscribe("room").await;
    let f = a.next().await;
    assert_eq!(f["event"], "pusher_internal:subscription_count");
    assert_eq!(data(&f)["subscription_count"], 1);
    b.subscribe("room").await;
    assert_eq!(data(&a.next().await)["subscription_count"], 2);
    assert_eq!(data(&b.next().await)["subscription_count"], 2);
}

#[tokio::test]
async fn server_pings_then_closes_4201_without_pong() {
    let mut cfg = config();
    cfg.activity_timeout = 1;
    cfg.pong_timeout = 1;
    let server = start(cfg).await;
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;
    assert_eq!(a.next().await["event"], "pusher:ping");
    assert_eq!(b.next().await["event"], "pusher:ping");
    b.send(json!({"event":"pusher:pong","data":{}})).await;
    assert_eq!(close_code(&mut a.ws, Duration::from_secs(3)).await, 4201);
    // b answered, so it got a fresh ping instead of a close.
    assert_eq!(b.next().await["event"], "pusher:ping");
}

#[tokio::test]
async fn user_authentication_timeout_closes_4009() {
    let mut cfg = config();
    cfg.apps[0].features.enable_user_authentication = true;
    cfg.user_authentication_timeout = 1;
    let server = start(cfg).await;
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;
    b.signin(r#"{"id":"b"}"#).await;
    assert_eq!(close_code(&mut a.ws, Duration::from_secs(3)).await, 4009);
    b.send(json!({"event":"pusher:ping"})).await;
    assert_eq!(b.next().await["event"], "pusher:pong");
}

#[tokio::test]
async fn connection_quotas() {
    let mut cfg = config();
    cfg.apps[0].limits.max_connections = 1;
    let server = start(cfg).await;
    let _a = connect(&server).await;
    let mut ws = connect_raw(&server, KEY).await;
    assert_eq!(next_json(&mut ws).await["data"]["code"], 4004);
    assert_eq!(close_code(&mut ws, Duration::from_secs(2)).await, 4004);

    let mut cfg = config();
    cfg.max_connections = 1;
    let server = start(cfg).await;
    let _a = connect(&server).await;
    let mut ws = connect_raw(&server, KEY).await;
    assert_eq!(next_json(&mut ws).await["data"]["code"], 4100);
}

#[tokio::test]
async fn allowed_origins() {
    let mut cfg = config();
    cfg.apps[0].allowed_origins = vec!["https://good.example".into()];
    let server = start(cfg).await;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("ws://{}/app/{KEY}", server.addr);
    let mut req = url.clone().into_client_request().unwrap();
    req.headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(next_json(&mut ws).await["data"]["code"], 4009);
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("origin", "https://good.example".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(
        next_json(&mut ws).await["event"],
        "pusher:connection_established"
    );
}

#[tokio::test]
async fn graceful_shutdown_drains_then_closes_4200() {
    let mut cfg = config();
    cfg.shutdown_grace_period = 1;
    let server = start(cfg).await;
    let base = format!("http://{}", server.addr);
    let mut a = connect(&server).await;
    let state = server.state.clone();
    let drain = tokio::spawn(async move {
        state
            .lifecycle
            .drain(std::time::Duration::from_secs(1))
            .await;
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ready = reqwest::get(format!("{base}/ready")).await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(
        reqwest::get(format!("{base}/live")).await.unwrap().status(),
        200
    );
    let url = format!("ws://{}/app/{KEY}", server.addr);
    assert!(
        tokio_tungstenite::connect_async(url).await.is_err(),
        "upgrade refused while draining"
    );
    // Still served during the grace period.
    a.send(json!({"event":"pusher:ping"})).await;
    assert_eq!(a.next().await["event"], "pusher:pong");
    assert_eq!(close_code(&mut a.ws, Duration::from_secs(3)).await, 4200);
    drain.await.unwrap();
}

/// Events of 16 KiB, numbered; many enough (12.5 MiB) to fill a stalled reader's socket buffers.
const BULK_EVENTS: usize = 800;

async fn publish_bulk(api: &Api, channel: &str) {
    let pad = "x".repeat(16 * 1024);
    for seq in 0..BULK_EVENTS {
        let (status, body) = api
            .trigger(channel, "bulk", &format!("{seq:05}{pad}"))
            .await;
        assert_eq!(status, 200, "{body}");
    }
}

/// Reads the bulk events in order, each whole.
async fn read_bulk(c: &mut Client) {
    for seq in 0..BULK_EVENTS {
        let f = c.next().await;
        assert_eq!(f["event"], "bulk");
        let data = f["data"].as_str().unwrap();
        assert_eq!(&data[..5], format!("{seq:05}"), "in order");
        assert_eq!(data.len(), 5 + 16 * 1024, "whole");
    }
}

/// Two subscribers of "bulk": `other` does not read while the bulk events are published;
/// `reading` reads them all meanwhile (within 30 s) and is returned still subscribed.
struct Bulk {
    server: RunningServer,
    api: Api,
    other: Client,
    reading: Client,
}

async fn publish_bulk_past_a_stalled_reader(max_outbound_messages: usize) -> Bulk {
    let mut cfg = config();
    cfg.apps[0].limits.max_event_payload_kb = 32;
    cfg.websocket.max_outbound_messages = max_outbound_messages;
    let server = start(cfg).await;
    let api = Api::new(&server);
    let mut other = connect(&server).await;
    let mut reading = connect(&server).await;
    other.subscribe("bulk").await;
    reading.subscribe("bulk").await;
    let reader = tokio::spawn(async move {
        read_bulk(&mut reading).await;
        reading
    });
    publish_bulk(&api, "bulk").await;
    let reading = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("the reading subscriber got everything while the other did not read")
        .unwrap();
    Bulk {
        server,
        api,
        other,
        reading,
    }
}

async fn bulk_subscribers(api: &Api) -> Value {
    let (_, info) = api
        .get(
            &format!("/apps/{APP_ID}/channels/bulk"),
            &[("info", "subscription_count")],
        )
        .await;
    info["subscription_count"].clone()
}

/// Publishers write to an idle socket themselves and queue behind a busy one: a subscriber that
/// stops reading gets every frame whole and in order once it reads again, and the subscriber
/// next to it is not held up meanwhile.
#[tokio::test]
async fn a_reader_that_pauses_gets_every_frame_whole_and_in_order() {
    let mut bulk = publish_bulk_past_a_stalled_reader(10_000).await;
    read_bulk(&mut bulk.other).await;
    assert_eq!(bulk_subscribers(&bulk.api).await, 2, "nobody was dropped");
    silent(&mut bulk.reading.ws, 100).await;
}

/// A subscriber that does not read while its queue passes `max_outbound_messages` is dropped;
/// the others on the channel get everything.
#[tokio::test]
async fn a_consumer_too_slow_is_dropped_without_holding_up_the_others() {
    let Bulk {
        server: _server,
        api,
        other: mut stalled,
        reading: _reading,
    } = publish_bulk_past_a_stalled_reader(20).await;
    // The close waits a while for the client's reply and for its last frames to leave.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let count = bulk_subscribers(&api).await;
        if count == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stalled subscriber is still there ({count} subscribers)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Reading again, the stalled client finds the frames that were already on their way, then
    // the end of the connection (the close frame, or a cut if its buffers never drained).
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        let mut frames = 0;
        loop {
            match stalled.ws.next().await {
                Some(Ok(Message::Text(_))) => frames += 1,
                Some(Ok(Message::Close(c))) => break (frames, c.map(|c| u16::from(c.code))),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break (frames, None),
            }
        }
    })
    .await
    .expect("the connection ends");
    assert!(
        ended.0 < BULK_EVENTS,
        "it did not get everything: {ended:?}"
    );
    assert!(matches!(ended.1, None | Some(4100)), "{ended:?}");
}

/// Connections opened together are not all pinged in the same instant: each waits between
/// `activity_timeout` and 10% more.
#[tokio::test]
async fn pings_of_connections_opened_together_are_spread() {
    let mut cfg = config();
    cfg.activity_timeout = 2;
    let server = start(cfg).await;
    let mut pinged = Vec::new();
    for _ in 0..40 {
        let opened = tokio::time::Instant::now();
        let mut c = connect(&server).await;
        pinged.push(tokio::spawn(async move {
            assert_eq!(c.next().await["event"], "pusher:ping");
            opened.elapsed()
        }));
    }
    let mut waits = Vec::new();
    for p in pinged {
        waits.push(p.await.unwrap());
    }
    let (min, max) = (waits.iter().min().unwrap(), waits.iter().max().unwrap());
    assert!(
        *min >= Duration::from_secs(2) && *max <= Duration::from_millis(2_400),
        "between activity_timeout and 10% more (plus slack): {waits:?}"
    );
    assert!(
        *max - *min >= Duration::from_millis(50),
        "spread over the 200 ms allowed: {waits:?}"
    );
}
