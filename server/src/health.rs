//! Liveness and readiness. Readiness is 503 only while starting (which includes waiting, briefly,
//! for the adapter's first connection: see `server::run`) or draining: a lost backend is
//! reported as `degraded` in the body (and in metrics) but does not pull every pod out of the
//! Service at once.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::adapter::BackendHealth;
use crate::shutdown::Phase;
use crate::state::ServerState;

pub async fn live() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

pub async fn ready(State(state): State<Arc<ServerState>>) -> Response {
    let phase = state.lifecycle.phase();
    let backends = [
        ("adapter", state.adapter.driver(), state.adapter.health()),
        ("cache", state.cache.driver(), state.cache.health()),
        (
            "rate_limiter",
            state.limiter.driver(),
            state.limiter.health(),
        ),
        (
            "delta_coordination",
            state.delta.driver(),
            state.delta.health(),
        ),
    ];
    let mut degraded = false;
    let mut detail = Map::new();
    for (name, driver, health) in backends {
        let (status, error) = match health {
            BackendHealth::Ok => ("ok", None),
            BackendHealth::Degraded(e) => {
                degraded = true;
                ("degraded", Some(e))
            }
        };
        state
            .metrics
            .backend_up
            .with_label_values(&[name, driver])
            .set(i64::from(status == "ok"));
        let mut entry = json!({ "driver": driver, "status": status, "error": error });
        if name == "rate_limiter" {
            // What requests get while this backend is down (see `enforce`).
            entry["on_backend_failure"] = json!(state.config.rate_limiter.on_backend_failure);
        }
        detail.insert(name.into(), entry);
    }
    let (code, status) = match phase {
        Phase::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting"),
        Phase::Draining => (StatusCode::SERVICE_UNAVAILABLE, "draining"),
        Phase::Ready if degraded => (StatusCode::OK, "degraded"),
        Phase::Ready => (StatusCode::OK, "ok"),
    };
    let body = json!({
        "status": status,
        "connections": state.hub().connection_count(),
        "backends": Value::Object(detail),
    });
    (code, Json(body)).into_response()
}
