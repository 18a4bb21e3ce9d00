//! What every signed API endpoint shares: the [`Authed`] extractor (app lookup, body limit,
//! signature check) and the [`record`] middleware (one `http_requests_total` sample per
//! request, including refusals by the extractor or the rate limiter).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{FromRequest, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;

use crate::apps::App;
use crate::http::error::ApiError;
use crate::http::signature::{self, QueryParams};
use crate::state::ServerState;

/// A verified API request for the app named by the `/apps/{app_id}/...` path.
pub struct Authed {
    pub app: Arc<App>,
    pub body: Bytes,
    pub params: QueryParams,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The `{app_id}` of an `/apps/{app_id}/...` path.
fn app_id_of(path: &str) -> &str {
    path.strip_prefix("/apps/")
        .and_then(|p| p.split('/').next())
        .unwrap_or("")
}

impl FromRequest<Arc<ServerState>> for Authed {
    type Rejection = ApiError;

    /// Reads the body (413 past `http_api.request_limit_kb`) and checks the signature.
    async fn from_request(req: Request, state: &Arc<ServerState>) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let app_id = app_id_of(parts.uri.path());
        let app = state.apps.by_id(app_id).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "app_not_found",
                format!("no app with id {app_id:?}"),
            )
        })?;
        let limit = state.config.http_api.request_limit_kb * 1024;
        let body = axum::body::to_bytes(body, limit)
            .await
            .map_err(|_| ApiError::too_large(format!("request body is over {limit} bytes")))?;
        let params = QueryParams::parse(parts.uri.query());
        signature::verify(
            &app,
            &signature::SignedRequest {
                method: parts.method.as_str(),
                path: parts.uri.path(),
                params: params.as_slice(),
                body: &body,
            },
            now_secs(),
            state.config.http_api.timestamp_window_secs,
        )?;
        if !app.enabled {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "app is disabled",
            ));
        }
        Ok(Authed { app, body, params })
    }
}

/// The `endpoint` label of a signed route.
fn endpoint_of(route: &str) -> &'static str {
    match route {
        "/apps/{app_id}/events" => "events",
        "/apps/{app_id}/batch_events" => "batch_events",
        "/apps/{app_id}/channels" => "channels",
        "/apps/{app_id}/channels/{channel}" => "channel",
        "/apps/{app_id}/channels/{channel}/users" => "users",
        "/apps/{app_id}/users/{user_id}/terminate_connections" => "terminate_connections",
        _ => "other",
    }
}

/// Counts every signed API request by endpoint, status and app. The app label is the app id
/// only for configured apps ("unknown" otherwise), so its values are bounded by the config.
pub async fn record(State(state): State<Arc<ServerState>>, req: Request, next: Next) -> Response {
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("other", |m| endpoint_of(m.as_str()));
    let app = match state.apps.by_id(app_id_of(req.uri().path())) {
        Some(app) => app.id.clone(),
        None => "unknown".to_string(),
    };
    let resp = next.run(req).await;
    state
        .metrics
        .http_requests
        .with_label_values(&[endpoint, resp.status().as_str(), &app])
        .inc();
    resp
}
