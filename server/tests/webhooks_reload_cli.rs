//! Webhooks to a real HTTP receiver, app hot reload from the config file, and the CLI.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use common::*;
use serde_json::{Value, json};
use sockudo_config::WebhookConfig;

type Received = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

async fn receiver() -> (String, Received) {
    let got: Received = Arc::default();
    let app = Router::new()
        .route(
            "/hook",
            post(
                |State(got): State<Received>, headers: HeaderMap, body: Bytes| async move {
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    // Verify the signature over the raw body here, where the bytes are exact.
                    let sig = headers["x-pusher-signature"].to_str().unwrap();
                    assert!(sockudo_server::auth::verify(
                        SECRET,
                        std::str::from_utf8(&body).unwrap(),
                        sig
                    ));
                    got.lock().unwrap().push((headers, v));
                    "ok"
                },
            ),
        )
        .with_state(got.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, got)
}

fn names(got: &Received) -> Vec<String> {
    got.lock()
        .unwrap()
        .iter()
        .flat_map(|(_, v)| v["events"].as_array().unwrap().clone())
        .map(|e| {
            format!(
                "{}:{}",
                e["name"].as_str().unwrap(),
                e["channel"].as_str().unwrap()
            )
        })
        .collect()
}

async fn wait_for(got: &Received, name: &str) {
    for _ in 0..100 {
        if names(got).iter().any(|n| n == name) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("webhook {name} not received; got {:?}", names(got));
}

#[tokio::test]
async fn webhooks_are_signed_batched_and_vacated_is_delayed() {
    let (url, got) = receiver().await;
    let mut cfg = config();
    cfg.webhooks.vacate_delay_ms = 300;
    cfg.webhooks.batch_duration_ms = 20;
    cfg.apps[0].webhooks.push(WebhookConfig {
        url,
        event_types: vec![],
        channel_prefix: None,
        headers: [("x-extra".to_string(), "1".to_string())].into(),
    });
    let server = start(cfg).await;
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;
    a.subscribe_presence("presence-w", r#"{"user_id":"u1"}"#)
        .await;
    wait_for(&got, "channel_occupied:presence-w").await;
    wait_for(&got, "member_added:presence-w").await;
    b.subscribe_presence("presence-w", r#"{"user_id":"u2"}"#)
        .await;
    a.expect_event("pusher_internal:member_added").await;
    a.send(json!({"event":"client-x","channel":"presence-w","data":{"k":1}}))
        .await;
    wait_for(&got, "client_event:presence-w").await;
    {
        let all = got.lock().unwrap();
        let (headers, body) = all.last().unwrap();
        assert_eq!(headers["x-pusher-key"], KEY);
        assert_eq!(headers["x-extra"], "1");
        assert!(body["time_ms"].as_u64().unwrap() > 0);
        let ev = body["events"].as_array().unwrap().last().unwrap();
        assert_eq!(ev["event"], "client-x");
        assert_eq!(ev["user_id"], "u1");
    }

    // Quick leave and rejoin: no member_removed.
    b.send(json!({"event":"pusher:unsubscribe","data":{"channel":"presence-w"}}))
        .await;
    b.subscribe_presence("presence-w", r#"{"user_id":"u2"}"#)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !names(&got).iter().any(|n| n.starts_with("member_removed")),
        "{:?}",
        names(&got)
    );

    drop(a);
    drop(b);
    wait_for(&got, "member_removed:presence-w").await;
    wait_for(&got, "channel_vacated:presence-w").await;
    let occupied = names(&got)
        .iter()
        .filter(|n| n.starts_with("channel_occupied"))
        .count();
    assert_eq!(occupied, 1);

    let mut c = connect(&server).await;
    c.subscribe("cache-w").await;
    wait_for(&got, "cache_miss:cache-w").await;
}

#[tokio::test]
async fn apps_reload_when_the_config_file_changes() {
    let dir = std::env::temp_dir().join(format!("sockudo-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config.json");
    let secret_file = dir.join("secret");
    std::fs::write(&secret_file, "s1\n").unwrap();
    let write = |apps: Value| {
        std::fs::write(&file, json!({"port": 0, "apps": apps}).to_string()).unwrap();
    };
    write(json!([{"id":"1","key":"k1","secret_file": secret_file.display().to_string()}]));
    let mut cfg = sockudo_config::load_file(&file).unwrap();
    cfg.host = "127.0.0.1".into();
    cfg.metrics.enabled = false;
    let server = sockudo_server::start(cfg, Some(file.clone()))
        .await
        .unwrap();
    let mut old = connect_raw(&server, "k1").await;
    assert_eq!(
        next_json(&mut old).await["event"],
        "pusher:connection_established"
    );

    // mtime granularity: make sure the new write is seen as a change.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    write(json!([
        {"id":"1","key":"k1","secret_file": secret_file.display().to_string()},
        {"id":"2","key":"k2","secret":"s2"}
    ]));
    std::fs::write(&secret_file, "s1-rotated\n").unwrap();
    let mut ok = false;
    for _ in 0..40 {
        if server.state.apps.by_key("k2").is_some() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "app 2 was not loaded");
    assert_eq!(server.state.apps.by_id("1").unwrap().secret, "s1-rotated");
    // The old connection is still served.
    use futures_util::SinkExt;
    old.send(tokio_tungstenite::tungstenite::Message::Text(
        r#"{"event":"pusher:ping"}"#.into(),
    ))
    .await
    .unwrap();
    assert_eq!(next_json(&mut old).await["event"], "pusher:pong");
    // A broken file keeps the current apps.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    std::fs::write(&file, "{ not json").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(server.state.apps.by_key("k2").is_some());
}

#[test]
fn cli_check_config_and_schema() {
    let bin = env!("CARGO_BIN_EXE_sockudo");
    let dir = std::env::temp_dir().join(format!("sockudo-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.json");
    std::fs::write(&good, r#"{"apps":[{"id":"1","key":"k","secret":"s"}]}"#).unwrap();
    let out = std::process::Command::new(bin)
        .args(["check-config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{\n \"cache\": {\"drvier\": 1}\n}").unwrap();
    let out = std::process::Command::new(bin)
        .args(["check-config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("drvier") && err.contains("line 2"), "{err}");
    // A rule across keys: coordination needs a cluster adapter; the error names both keys.
    let invalid = dir.join("coordination.json");
    std::fs::write(
        &invalid,
        r#"{"delta_compression":{"cluster_coordination":true}}"#,
    )
    .unwrap();
    let out = std::process::Command::new(bin)
        .args(["check-config"])
        .arg(&invalid)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("delta_compression.cluster_coordination") && err.contains("adapter.driver"),
        "{err}"
    );
    let out = std::process::Command::new(bin)
        .arg("config-schema")
        .output()
        .unwrap();
    let schema: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(schema["properties"]["adapter"].is_object());
    let out = std::process::Command::new(bin)
        .args(["healthcheck", "--url", "http://127.0.0.1:1/ready"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
