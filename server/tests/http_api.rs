//! The signed HTTP API, health and metrics over real HTTP.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn trigger_and_batch() {
    let server = start(config()).await;
    let api = Api::new(&server);
    let mut c = connect(&server).await;
    c.subscribe("a").await;
    let (s, body) = api.trigger("a", "e", "d").await;
    assert_eq!((s, body), (200, json!({})));
    assert_eq!(c.next().await["event"], "e");

    // Non-string data is stringified.
    let (s, _) = api
        .post(
            &format!("/apps/{APP_ID}/events"),
            &json!({"name":"j","channels":["a"],"data":{"x":1}}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(c.next().await["data"], r#"{"x":1}"#);

    let (s, body) = api
        .post(
            &format!("/apps/{APP_ID}/events"),
            &json!({"name":"i","channels":["a","b"],"data":"x","info":"subscription_count"}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(body["channels"]["a"]["subscription_count"], 1);
    assert_eq!(body["channels"]["b"]["subscription_count"], 0);
    c.next().await;

    let (s, body) = api
        .post(
            &format!("/apps/{APP_ID}/batch_events"),
            &json!({"batch":[{"name":"b1","channel":"a","data":"1"},{"name":"b2","channel":"a","data":"2"}]}),
        )
        .await;
    assert_eq!((s, body), (200, json!({})));
    assert_eq!(c.next().await["event"], "b1");
    assert_eq!(c.next().await["event"], "b2");
}

#[tokio::test]
async fn limits_answer_400_and_413() {
    let mut cfg = config();
    cfg.apps[0].limits.max_event_batch_size = 2;
    cfg.apps[0].limits.max_event_channels_at_once = 2;
    cfg.apps[0].limits.max_event_payload_kb = 1;
    cfg.http_api.request_limit_kb = 8;
    let server = start(cfg).await;
    let api = Api::new(&server);
    let ev = format!("/apps/{APP_ID}/events");
    let (s, b) = api
        .post(
            &ev,
            &json!({"name":"e","channels":["a","b","c"],"data":"x"}),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["status"], 400);
    assert!(b["error"].as_str().unwrap().contains("limit"));
    let (s, b) = api
        .post(
            &ev,
            &json!({"name":"e".repeat(201),"channel":"a","data":"x"}),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    let (s, b) = api
        .post(
            &ev,
            &json!({"name":"e","channel":"a","data":"x".repeat(2000)}),
        )
        .await;
    assert_eq!((s, b["code"].as_str()), (413, Some("payload_too_large")));
    let (s, _) = api
        .post(
            &ev,
            &json!({"name":"e","channel":"a","data":"x".repeat(9000)}),
        )
        .await;
    assert_eq!(s, 413);
    let (s, _) = api
        .post(&ev, &json!({"name":"e","channel":"bad name","data":"x"}))
        .await;
    assert_eq!(s, 400);
    let (s, _) = api.post(&ev, &json!({"name":"e","data":"x"})).await;
    assert_eq!(s, 400);
    let (s, _) = api.post(&ev, &json!({"nope":1})).await;
    assert_eq!(s, 400);
    let (s, _) = api
        .post(
            &format!("/apps/{APP_ID}/batch_events"),
            &json!({"batch":[{"name":"1","channel":"a","data":""},{"name":"2","channel":"a","data":""},{"name":"3","channel":"a","data":""}]}),
        )
        .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn bad_signatures_replays_and_body_md5() {
    let server = start(config()).await;
    let api = Api::new(&server);
    let path = format!("/apps/{APP_ID}/events");
    let body = json!({"name":"e","channel":"a","data":"x"}).to_string();

    // Replayed: a timestamp outside the window.
    let url = api.signed_url("POST", &path, &[], body.as_bytes(), now() - 601);
    let (s, b) = api.send(api.http.post(url).body(body.clone())).await;
    assert_eq!(s, 401, "{b}");
    assert_eq!(b["code"], "auth_failed");
    // Identical requests inside the window are fine.
    let url = api.signed_url("POST", &path, &[], body.as_bytes(), now() - 30);
    assert_eq!(
        api.send(api.http.post(url.clone()).body(body.clone()))
            .await
            .0,
        200
    );
    assert_eq!(
        api.send(api.http.post(url.clone()).body(body.clone()))
            .await
            .0,
        200
    );
    // Same signature, other body: body_md5 mismatch.
    let (s, b) = api
        .send(
            api.http
                .post(url.clone())
                .body(body.replace("\"x\"", "\"y\"")),
        )
        .await;
    assert_eq!(s, 401);
    assert!(b["error"].as_str().unwrap().contains("body_md5"));
    // Tampered signature.
    let bad = url.replace("auth_signature=", "auth_signature=0");
    assert_eq!(api.send(api.http.post(bad).body(body.clone())).await.0, 401);
    // Wrong secret.
    let mut other = api.app.clone();
    other.secret = "wrong".into();
    let q = sockudo_server::http::signature::sign_query(
        &other,
        "POST",
        &path,
        &[],
        body.as_bytes(),
        now(),
    );
    assert_eq!(
        api.send(
            api.http
                .post(format!("{}{path}?{q}", api.base))
                .body(body.clone())
        )
        .await
        .0,
        401
    );
    // Missing auth params.
    assert_eq!(
        api.send(
            api.http
                .post(format!("{}{path}", api.base))
                .body(body.clone())
        )
        .await
        .0,
        400
    );
    // Unknown app.
    let (s, b) = api
        .send(
            api.http
                .post(format!("{}/apps/999/events?auth_key=x", api.base))
                .body(body),
        )
        .await;
    assert_eq!((s, b["code"].as_str()), (404, Some("app_not_found")));
}

#[tokio::test]
async fn get_with_empty_body_md5_is_accepted() {
    let server = start(config()).await;
    let api = Api::new(&server);
    let path = format!("/apps/{APP_ID}/channels");
    let url = api.signed_url(
        "GET",
        &path,
        &[("body_md5", "d41d8cd98f00b204e9800998ecf8427e")],
        b"",
        now(),
    );
    assert_eq!(api.send(api.http.get(url)).await.0, 200);
    let url = api.signed_url("GET", &path, &[("body_md5", "0123")], b"", now());
    assert_eq!(api.send(api.http.get(url)).await.0, 401);
}

#[tokio::test]
async fn channel_queries() {
    let server = start(config()).await;
    let api = Api::new(&server);
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;
    a.subscribe("news").await;
    a.subscribe_presence("presence-room", r#"{"user_id":"u1"}"#)
        .await;
    b.subscribe_presence("presence-room", r#"{"user_id":"u2"}"#)
        .await;
    let mut a2 = connect(&server).await;
    a2.subscribe_presence("presence-room", r#"{"user_id":"u1"}"#)
        .await;
    let base = format!("/apps/{APP_ID}");

    let (s, body) = api.get(&format!("{base}/channels"), &[]).await;
    assert_eq!(s, 200);
    assert!(body["channels"]["news"].is_object());
    assert!(body["channels"]["presence-room"].is_object());

    let (s, body) = api
        .get(
            &format!("{base}/channels"),
            &[("filter_by_prefix", "presence-"), ("info", "user_count")],
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(body["channels"]["presence-room"]["user_count"], 2);
    assert!(body["channels"].get("news").is_none());
    let (s, _) = api
        .get(&format!("{base}/channels"), &[("info", "user_count")])
        .await;
    assert_eq!(s, 400);

    let (s, body) = api
        .get(
            &format!("{base}/channels/presence-room"),
            &[("info", "user_count,subscription_count")],
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(body["occupied"], true);
    assert_eq!(body["user_count"], 2);
    assert_eq!(body["subscription_count"], 3);
    let (s, body) = api.get(&format!("{base}/channels/empty"), &[]).await;
    assert_eq!((s, body["occupied"].as_bool()), (200, Some(false)));
    assert_eq!(
        api.get(&format!("{base}/channels/news"), &[("info", "user_count")])
            .await
            .0,
        400
    );

    let (s, body) = api
        .get(&format!("{base}/channels/presence-room/users"), &[])
        .await;
    assert_eq!(s, 200);
    let mut ids: Vec<String> = body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["u1", "u2"]);
    assert_eq!(
        api.get(&format!("{base}/channels/news/users"), &[]).await.0,
        400
    );

    api.trigger("cache-x", "e", "cached").await;
    let (s, body) = api
        .get(&format!("{base}/channels/cache-x"), &[("info", "cache")])
        .await;
    assert_eq!(s, 200);
    assert_eq!(body["cache"]["data"], "cached");
    assert!(body["cache"]["ttl"].as_u64().unwrap() > 3000);
}

#[tokio::test]
async fn health_metrics_and_unknown_routes() {
    let server = start(config()).await;
    let base = format!("http://{}", server.addr);
    for path in ["/live", "/ready", "/up"] {
        let r = reqwest::get(format!("{base}{path}")).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let body: serde_json::Value = serde_json::from_str(
        &reqwest::get(format!("{base}/ready"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(body["status"], "ok");
    let r = reqwest::get(format!("{base}/nope")).await.unwrap();
    assert_eq!(r.status(), 404);

    let api = Api::new(&server);
    let mut c = connect(&server).await;
    c.subscribe("m").await;
    api.trigger("m", "e", "x").await;
    c.next().await;
    let text = reqwest::get(format!("http://{}/metrics", server.metrics_addr.unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "sockudo_connections 1",
        "sockudo_subscriptions 1",
        "sockudo_ws_messages_sent_total",
        "sockudo_ws_messages_received_total",
        "sockudo_broadcast_latency_seconds_bucket",
    ] {
        assert!(text.contains(name), "{name} missing in\n{text}");
    }
    // Per-app labels, for configured apps only.
    let sample = |parts: &[&str]| {
        text.lines()
            .find(|l| parts.iter().all(|p| l.contains(p)))
            .map(|l| l.rsplit(' ').next().unwrap().to_string())
    };
    assert_eq!(
        sample(&[
            "sockudo_http_requests_total{",
            "endpoint=\"events\"",
            "status=\"200\"",
            "app=\"1234\""
        ])
        .as_deref(),
        Some("1"),
        "{text}"
    );
    assert_eq!(
        sample(&[
            "sockudo_app_ws_messages_total{",
            "app=\"1234\"",
            "direction=\"sent\""
        ])
        .as_deref(),
        Some("1"),
        "the event's one delivery; {text}"
    );
    assert!(
        sample(&[
            "sockudo_app_ws_messages_total{",
            "app=\"1234\"",
            "direction=\"received\""
        ])
        .is_some(),
        "{text}"
    );
    // An unknown app id is counted (the extractor's 404) under app="unknown", not its id.
    let (s, _) = api.get("/apps/999999/channels", &[]).await;
    assert_eq!(s, 404);
    let text = reqwest::get(format!("http://{}/metrics", server.metrics_addr.unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains("999999"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("sockudo_http_requests_total{")
                && l.contains("app=\"unknown\"")
                && l.contains("status=\"404\"")),
        "{text}"
    );
}

#[tokio::test]
async fn api_rate_limit_per_ip_with_headers() {
    let mut cfg = config();
    cfg.rate_limiter.enabled = true;
    cfg.rate_limiter.api_rate_limit.max_requests = 3;
    cfg.rate_limiter.api_rate_limit.window_seconds = 60;
    let server = start(cfg).await;
    let api = Api::new(&server);
    let path = format!("/apps/{APP_ID}/channels");
    for i in 0..3 {
        let r = api
            .http
            .get(api.signed_url("GET", &path, &[], b"", now()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-ratelimit-limit"], "3");
        assert_eq!(
            r.headers()["x-ratelimit-remaining"],
            (2 - i).to_string().as_str()
        );
    }
    // A spoofed X-Forwarded-For is not trusted by default.
    let r = api
        .http
        .get(api.signed_url("GET", &path, &[], b"", now()))
        .header("x-forwarded-for", "9.9.9.9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(body["code"], "rate_limited");
}

#[tokio::test]
async fn websocket_connect_rate_limit() {
    let mut cfg = config();
    cfg.rate_limiter.enabled = true;
    cfg.rate_limiter.websocket_rate_limit.max_requests = 2;
    cfg.rate_limiter.websocket_rate_limit.window_seconds = 60;
    let server = start(cfg).await;
    let _a = connect(&server).await;
    let _b = connect(&server).await;
    // Upgraded, then refused the Pusher way: 4100 makes clients back off and retry.
    let mut ws = connect_raw(&server, KEY).await;
    let err = next_json(&mut ws).await;
    assert_eq!(err["event"], "pusher:error", "{err}");
    assert_eq!(err["data"]["code"], 4100, "{err}");
    assert!(
        err["data"]["message"]
            .as_str()
            .unwrap()
            .contains("retry in"),
        "{err}"
    );
    assert_eq!(
        close_code(&mut ws, std::time::Duration::from_secs(5)).await,
        4100
    );
}

#[tokio::test]
async fn no_config_generates_a_numeric_app() {
    let mut cfg = sockudo_config::ServerConfig {
        host: "127.0.0.1".into(),
        port: 0,
        ..Default::default()
    };
    cfg.metrics.enabled = false;
    let server = sockudo_server::start(cfg, None).await.unwrap();
    let app = server.generated_app.clone().unwrap();
    assert!(app.id.bytes().all(|b| b.is_ascii_digit()));
    let mut ws = connect_raw(&server, &app.key).await;
    assert_eq!(
        next_json(&mut ws).await["event"],
        "pusher:connection_established"
    );
}
