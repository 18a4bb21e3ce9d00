//! Signed `POST /apps/{id}/events` over a pooled HTTP/1.1 client.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::sign::signed_query;

/// One app on one server's HTTP API.
#[derive(Clone)]
pub struct Publisher {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    path: String,
    key: String,
    secret: String,
}

impl Publisher {
    /// `pool` is the most idle keep-alive connections kept; servers that answer
    /// `Connection: close` simply get a new connection per request.
    pub fn new(addr: SocketAddr, app_id: &str, key: &str, secret: &str, pool: usize) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(pool)
            .build(connector);
        Publisher {
            client,
            base: format!("http://{addr}"),
            path: format!("/apps/{app_id}/events"),
            key: key.to_string(),
            secret: secret.to_string(),
        }
    }

    /// The JSON body of a trigger to one channel; `data` is sent as a string, as pusher SDKs do.
    pub fn event_body(channel: &str, event: &str, data: &str) -> Bytes {
        let v = serde_json::json!({ "name": event, "channels": [channel], "data": data });
        Bytes::from(v.to_string())
    }

    /// Sends one signed trigger and reads the whole response (so the connection can be reused).
    pub async fn post_events(&self, body: Bytes) -> Result<StatusCode> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("clock before 1970")?
            .as_secs();
        let query = signed_query("POST", &self.path, &self.key, &self.secret, &body, now);
        let req = Request::post(format!("{}{}?{}", self.base, self.path, query))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))?;
        let resp = self.client.request(req).await?;
        let status = resp.status();
        resp.into_body().collect().await?;
        Ok(status)
    }
}
