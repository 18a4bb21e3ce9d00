//! Channel queries and user termination.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::cache::{cache_channel_key, channels_listing_key};
use crate::channel::ChannelType;
use crate::http::Authed;
use crate::http::error::ApiError;
use crate::http::signature::QueryParams;
use crate::hub::ChannelCounts;
use crate::state::ServerState;

fn service(e: impl std::fmt::Display) -> ApiError {
    ApiError::unavailable(e.to_string(), 1)
}

/// Marks an answer that misses some peer's state (see `Adapter::answers_complete`).
fn mark_incomplete(state: &ServerState, out: &mut Map<String, Value>) {
    if !state.adapter.answers_complete() {
        out.insert("incomplete".into(), json!(true));
    }
}

fn attributes(params: &QueryParams) -> Vec<String> {
    params
        .get("info")
        .map(|i| {
            i.split(',')
                .map(|a| a.trim().to_string())
                .filter(|a| !a.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// An app's channels, from the short-lived listing cache (`cache.channels_listing_ttl_ms`, 0 turns
/// it off) or the adapter. With a horizontal adapter the listing is a cluster-wide query; the
/// cache spares repeating it for every poll within the TTL. Cache trouble falls back to the
/// adapter: the cache is an optimisation, never a reason to fail the request.
async fn channels_listing(
    state: &ServerState,
    app_id: &str,
) -> Result<Vec<(String, ChannelCounts)>, ApiError> {
    let ttl = state.config.cache.channels_listing_ttl_ms;
    let key = channels_listing_key(app_id);
    if ttl > 0
        && let Ok(Some(hit)) = state.cache.get(&key).await
        && let Ok(rows) = serde_json::from_str::<Vec<(String, usize, Option<usize>)>>(&hit.value)
    {
        return Ok(rows
            .into_iter()
            .map(|(name, subscription_count, user_count)| {
                (
                    name,
                    ChannelCounts {
                        subscription_count,
                        user_count,
                    },
                )
            })
            .collect());
    }
    let channels = state.adapter.channels(app_id).await.map_err(service)?;
    if ttl > 0 {
        let rows: Vec<(&str, usize, Option<usize>)> = channels
            .iter()
            .map(|(n, c)| (n.as_str(), c.subscription_count, c.user_count))
            .collect();
        let value = serde_json::to_string(&rows).unwrap_or_default();
        if let Err(e) = state
            .cache
            .set(&key, value, std::time::Duration::from_millis(ttl))
            .await
        {
            tracing::debug!(error = %e, "channel listing not cached");
        }
    }
    Ok(channels)
}

/// `GET /apps/{id}/channels?filter_by_prefix=&info=user_count,subscription_count`
pub async fn list(
    State(state): State<Arc<ServerState>>,
    authed: Authed,
) -> Result<Response, ApiError> {
    let prefix = authed
        .params
        .get("filter_by_prefix")
        .unwrap_or_default()
        .to_owned();
    let attrs = attributes(&authed.params);
    if attrs.iter().any(|a| a == "user_count") && !prefix.starts_with("presence-") {
        return Err(ApiError::bad_request(
            "info=user_count needs filter_by_prefix=presence-",
        ));
    }
    let channels = channels_listing(&state, &authed.app.id).await?;
    let mut out = Map::new();
    for (name, counts) in channels {
        if !name.starts_with(&prefix) {
            continue;
        }
        let mut a = Map::new();
        if attrs.iter().any(|x| x == "user_count") {
            a.insert("user_count".into(), json!(counts.user_count.unwrap_or(0)));
        }
        if attrs.iter().any(|x| x == "subscription_count") {
            a.insert(
                "subscription_count".into(),
                json!(counts.subscription_count),
            );
        }
        out.insert(name, Value::Object(a));
    }
    let mut body = Map::new();
    body.insert("channels".into(), Value::Object(out));
    mark_incomplete(&state, &mut body);
    Ok(Json(Value::Object(body)).into_response())
}

/// `GET /apps/{id}/channels/{channel}?info=subscription_count,user_count,cache`
pub async fn one(
    State(state): State<Arc<ServerState>>,
    Path((_app_id, channel)): Path<(String, String)>,
    authed: Authed,
) -> Result<Response, ApiError> {
    let attrs = attributes(&authed.params);
    let kind = ChannelType::of(&channel);
    if attrs.iter().any(|a| a == "user_count") && !kind.is_presence() {
        return Err(ApiError::bad_request(
            "info=user_count is only for presence channels",
        ));
    }
    let counts = state
        .adapter
        .channel_counts(&authed.app.id, &channel)
        .await
        .map_err(service)?;
    let mut out = Map::new();
    out.insert("occupied".into(), json!(counts.is_some()));
    if attrs.iter().any(|a| a == "subscription_count") {
        out.insert(
            "subscription_count".into(),
            json!(counts.map_or(0, |c| c.subscription_count)),
        );
    }
    if attrs.iter().any(|a| a == "user_count") {
        out.insert(
            "user_count".into(),
            json!(counts.and_then(|c| c.user_count).unwrap_or(0)),
        );
    }
    if attrs.iter().any(|a| a == "cache") && kind.cache {
        let cached = state
            .cache
            .get(&cache_channel_key(&authed.app.id, &channel))
            .await
            .map_err(service)?;
        if let Some(c) = cached {
            let frame: Value = serde_json::from_str(&c.value).unwrap_or(Value::Null);
            out.insert(
                    "cache".into(),
                    json!({ "data": frame.get("data").cloned().unwrap_or(Value::Null), "ttl": c.ttl.as_secs() }),
                );
        }
    }
    mark_incomplete(&state, &mut out);
    Ok(Json(Value::Object(out)).into_response())
}

/// `GET /apps/{id}/channels/{channel}/users`
pub async fn users(
    State(state): State<Arc<ServerState>>,
    Path((_app_id, channel)): Path<(String, String)>,
    authed: Authed,
) -> Result<Response, ApiError> {
    if !ChannelType::of(&channel).is_presence() {
        return Err(ApiError::bad_request(
            "users are only listed for presence channels",
        ));
    }
    let ids = state
        .adapter
        .presence_user_ids(&authed.app.id, &channel)
        .await
        .map_err(service)?;
    let users: Vec<Value> = ids.into_iter().map(|id| json!({ "id": id })).collect();
    let mut body = Map::new();
    body.insert("users".into(), Value::Array(users));
    mark_incomplete(&state, &mut body);
    Ok(Json(Value::Object(body)).into_response())
}

/// `POST /apps/{id}/users/{user}/terminate_connections`
pub async fn terminate(
    State(state): State<Arc<ServerState>>,
    Path((_app_id, user_id)): Path<(String, String)>,
    authed: Authed,
) -> Result<Response, ApiError> {
    let n = state
        .adapter
        .terminate_user_connections(&authed.app.id, &user_id)
        .await
        .map_err(service)?;
    tracing::info!(app_id = %authed.app.id, %user_id, connections = n.count, complete = n.complete, "terminated user connections");
    Ok(Json(if n.complete {
        json!({})
    } else {
        json!({ "incomplete": true })
    })
    .into_response())
}
