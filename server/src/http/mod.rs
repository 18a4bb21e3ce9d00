//! The signed Pusher HTTP API, plus the operational endpoints and WebSocket route.

pub mod channels;
pub mod deadlines;
pub mod error;
pub mod events;
pub mod serve;
pub mod signature;
pub mod signed;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::connection;
use crate::health;
use crate::rate_limit::client_ip::client_ip;
use crate::rate_limit::{Decision, Verdict, enforce};
use crate::state::ServerState;
use error::ApiError;

/// The main port's routes.
pub fn router(state: Arc<ServerState>) -> Router {
    let api = Router::new()
        .route("/apps/{app_id}/events", post(events::trigger))
        .route("/apps/{app_id}/batch_events", post(events::trigger_batch))
        .route("/apps/{app_id}/channels", get(channels::list))
        .route("/apps/{app_id}/channels/{channel}", get(channels::one))
        .route(
            "/apps/{app_id}/channels/{channel}/users",
            get(channels::users),
        )
        .route(
            "/apps/{app_id}/users/{user_id}/terminate_connections",
            post(channels::terminate),
        )
        .layer(middleware::from_fn_with_state(state.clone(), limit_api))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            signed::record,
        ));
    Router::new()
        .merge(api)
        .route("/app/{key}", get(connection::upgrade))
        .route("/live", get(health::live))
        .route("/ready", get(health::ready))
        .route("/up", get(health::ready))
        .fallback(|| async { ApiError::not_found("no such route") })
        .with_state(state)
}

pub use signed::Authed;

fn rate_headers(resp: &mut Response, d: &Decision) {
    let h = resp.headers_mut();
    h.insert("x-ratelimit-limit", HeaderValue::from(d.limit));
    h.insert("x-ratelimit-remaining", HeaderValue::from(d.remaining));
    h.insert(
        "x-ratelimit-reset",
        HeaderValue::from(d.reset_after.as_secs_f64().ceil() as u64),
    );
}

/// Per-IP and per-app limits on the API; answers carry the tighter limit's X-RateLimit-*.
async fn limit_api(
    State(state): State<Arc<ServerState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let rl = &state.config.rate_limiter;
    if !rl.is_active() {
        return next.run(req).await;
    }
    let ip = client_ip(peer, req.headers(), rl.trusted_proxy_hops);
    let app_id = req
        .uri()
        .path()
        .strip_prefix("/apps/")
        .and_then(|p| p.split('/').next())
        .unwrap_or("")
        .to_string();
    let checks = [
        ("api_ip", format!("api:ip:{ip}"), &rl.api_rate_limit),
        (
            "api_app",
            format!("api:app:{app_id}"),
            &rl.app_api_rate_limit,
        ),
    ];
    let mut tightest: Option<Decision> = None;
    for (name, key, limit) in checks {
        match enforce(&state, name, &key, limit).await {
            Verdict::Refused(d) => {
                let mut resp = ApiError::rate_limited(d).into_response();
                rate_headers(&mut resp, &d);
                return resp;
            }
            Verdict::Unavailable(why) => return ApiError::limiter_unavailable(why).into_response(),
            Verdict::Allowed(Some(d)) => {
                if tightest.is_none_or(|t| d.remaining < t.remaining) {
                    tightest = Some(d);
                }
            }
            Verdict::Allowed(None) => {}
        }
    }
    let mut resp = next.run(req).await;
    if let Some(d) = tightest {
        rate_headers(&mut resp, &d);
    }
    resp
}
