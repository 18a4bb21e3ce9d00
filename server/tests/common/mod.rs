//! Test harness: an in-process server on ephemeral ports, a raw WebSocket client and a signed
//! HTTP client.
#![allow(dead_code)]

pub mod fleet;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use sockudo_config::{AppConfig, ServerConfig};
use sockudo_server::RunningServer;
use sockudo_server::apps::App;
use sockudo_server::http::signature::sign_query;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const APP_ID: &str = "1234";
pub const KEY: &str = "app-key";
pub const SECRET: &str = "app-secret";

/// A config listening on ephemeral loopback ports, with one app that has every feature on.
pub fn config() -> ServerConfig {
    let mut c = ServerConfig {
        host: "127.0.0.1".into(),
        port: 0,
        ..ServerConfig::default()
    };
    c.metrics.host = "127.0.0.1".into();
    c.metrics.port = 0;
    c.shutdown_grace_period = 0;
    c.rate_limiter.enabled = false;
    let mut app = AppConfig::new(APP_ID, KEY, SECRET);
    app.features.enable_client_messages = true;
    app.features.enable_watchlist_events = true;
    c.apps.push(app);
    c
}

pub async fn start(config: ServerConfig) -> RunningServer {
    sockudo_server::start(config, None)
        .await
        .expect("server starts")
}

pub fn app() -> App {
    App::resolve(0, &AppConfig::new(APP_ID, KEY, SECRET)).unwrap()
}

/// `/ready`'s body. Its status code is 200 whatever the backends do: a lost backend is
/// reported in the body, never by taking every pod out of the Service.
pub async fn readiness(server: &RunningServer) -> Value {
    let r = reqwest::get(format!("http://{}/ready", server.addr))
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a degraded backend never fails readiness");
    serde_json::from_str(&r.text().await.unwrap()).unwrap()
}

/// Polls `/ready` until its `status` is `status`; fails after `within`.
pub async fn wait_readiness(server: &RunningServer, status: &str, within: Duration) -> Value {
    let start = std::time::Instant::now();
    loop {
        let body = readiness(server).await;
        if body["status"] == status {
            return body;
        }
        assert!(
            start.elapsed() < within,
            "readiness never became {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sum of the server's metric samples whose lines start with `line_start` (name and labels).
pub fn metric_sum(server: &RunningServer, line_start: &str) -> f64 {
    server
        .state
        .metrics
        .render()
        .lines()
        .filter(|l| l.starts_with(line_start))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub socket_id: String,
}

pub async fn connect_raw(
    server: &RunningServer,
    key: &str,
) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
    let url = format!(
        "ws://{}/app/{key}?protocol=7&client=test&version=1",
        server.addr
    );
    tokio_tungstenite::connect_async(url)
        .await
        .expect("ws connect")
        .0
}

pub async fn connect(server: &RunningServer) -> Client {
    let mut ws = connect_raw(server, KEY).await;
    let first = next_json(&mut ws).await;
    assert_eq!(first["event"], "pusher:connection_established", "{first}");
    let data: Value =
        serde_json::from_str(first["data"].as_str().expect("data is a string")).unwrap();
    Client {
        ws,
        socket_id: data["socket_id"].as_str().unwrap().to_string(),
    }
}

/// Next text frame as JSON (panics after 5 s or on close).
pub async fn next_json(ws: &mut WebSocketStream<MaybeTlsStream<TcpStream>>) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame within 5 s")
            .expect("socket open")
            .expect("frame ok");
        match msg {
            Message::Text(t) => {
                return serde_json::from_str(t.as_str()).expect("server sends JSON");
            }
            Message::Close(c) => panic!("unexpected close {c:?}"),
            _ => {}
        }
    }
}

/// Waits for the close frame, skipping other frames; returns its code.
pub async fn close_code(
    ws: &mut WebSocketStream<MaybeTlsStream<TcpStream>>,
    wait: Duration,
) -> u16 {
    loop {
        let msg = tokio::time::timeout(wait, ws.next())
            .await
            .expect("close in time");
        match msg {
            Some(Ok(Message::Close(Some(CloseFrame { code, .. })))) => return code.into(),
            Some(Ok(Message::Close(None))) => return 1005,
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("error before close: {e}"),
            None => panic!("stream ended without a close frame"),
        }
    }
}

/// Asserts nothing arrives for `ms` milliseconds.
pub async fn silent(ws: &mut WebSocketStream<MaybeTlsStream<TcpStream>>, ms: u64) {
    if let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(ms), ws.next()).await {
        panic!("expected silence, got {m:?}");
    }
}

impl Client {
    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    pub async fn send_text(&mut self, t: &str) {
        self.ws
            .send(Message::Text(t.to_string().into()))
            .await
            .unwrap();
    }

    pub async fn next(&mut self) -> Value {
        next_json(&mut self.ws).await
    }

    /// Next frame whose event is `event` (others skipped).
    pub async fn expect_event(&mut self, event: &str) -> Value {
        loop {
            let f = self.next().await;
            if f["event"] == event {
                return f;
            }
        }
    }

    pub async fn subscribe(&mut self, channel: &str) -> Value {
        self.send(serde_json::json!({"event":"pusher:subscribe","data":{"channel":channel}}))
            .await;
        self.next().await
    }

    pub fn auth(&self, channel: &str, channel_data: Option<&str>) -> String {
        let s = sockudo_server::auth::channel_string(&self.socket_id, channel, channel_data);
        format!("{KEY}:{}", sockudo_server::auth::sign(SECRET, &s))
    }

    pub async fn subscribe_private(&mut self, channel: &str) -> Value {
        let auth = self.auth(channel, None);
        self.send(
            serde_json::json!({"event":"pusher:subscribe","data":{"channel":channel,"auth":auth}}),
        )
        .await;
        self.next().await
    }

    pub async fn subscribe_presence(&mut self, channel: &str, channel_data: &str) -> Value {
        let auth = self.auth(channel, Some(channel_data));
        self.send(serde_json::json!({"event":"pusher:subscribe","data":{"channel":channel,"auth":auth,"channel_data":channel_data}})).await;
        self.next().await
    }

    pub async fn signin(&mut self, user_data: &str) -> Value {
        let s = sockudo_server::auth::user_string(&self.socket_id, user_data);
        let auth = format!("{KEY}:{}", sockudo_server::auth::sign(SECRET, &s));
        self.send(
            serde_json::json!({"event":"pusher:signin","data":{"user_data":user_data,"auth":auth}}),
        )
        .await;
        self.next().await
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    pub app: App,
}

impl Api {
    pub fn new(server: &RunningServer) -> Self {
        Api {
            base: format!("http://{}", server.addr),
            http: reqwest::Client::new(),
            app: app(),
        }
    }

    pub fn signed_url(
        &self,
        method: &str,
        path: &str,
        params: &[(&str, &str)],
        body: &[u8],
        ts: u64,
    ) -> String {
        format!(
            "{}{path}?{}",
            self.base,
            sign_query(&self.app, method, path, params, body, ts)
        )
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let body = body.to_string();
        let url = self.signed_url("POST", path, &[], body.as_bytes(), now());
        self.send(
            self.http
                .post(url)
                .header("content-type", "application/json")
                .body(body),
        )
        .await
    }

    pub async fn get(&self, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
        let url = self.signed_url("GET", path, params, b"", now());
        self.send(self.http.get(url)).await
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = req.send().await.expect("http request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn trigger(&self, channel: &str, name: &str, data: &str) -> (u16, Value) {
        self.post(
            &format!("/apps/{APP_ID}/events"),
            &serde_json::json!({"name": name, "channel": channel, "data": data}),
        )
        .await
    }
}
