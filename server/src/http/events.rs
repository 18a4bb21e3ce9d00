//! `POST /apps/{id}/events` and `POST /apps/{id}/batch_events`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::apps::App;
use crate::cache::cache_channel_key;
use crate::channel::{ChannelKind, ChannelType, SERVER_TO_USER_PREFIX, validate_name};
use crate::connection::handle::Frame;
use crate::http::Authed;
use crate::http::error::ApiError;
use crate::protocol::server::{self as frames, EventData};
use crate::socket_id::SocketId;
use crate::state::ServerState;

/// One event as the SDKs send it.
#[derive(Debug, Deserialize)]
pub struct PublishEvent {
    pub name: String,
    /// A string (the SDKs stringify) or any JSON, which is stringified.
    pub data: Box<RawValue>,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub channels: Option<Vec<String>>,
    #[serde(default)]
    pub socket_id: Option<String>,
    /// Comma-separated attributes wanted back: `subscription_count`, `user_count`.
    #[serde(default)]
    pub info: Option<String>,
    /// `false` sends this event in full to delta-compression clients (`true`: the default).
    #[serde(default)]
    pub delta: Option<bool>,
}

#[derive(Deserialize)]
struct Batch {
    batch: Vec<PublishEvent>,
}

/// `POST /apps/{id}/events`
pub async fn trigger(
    State(state): State<Arc<ServerState>>,
    authed: Authed,
) -> Result<Response, ApiError> {
    let event: PublishEvent = parse_json(&authed)?;
    let info = publish(&state, &authed.app, &event).await?;
    Ok(match info {
        Some(channels) => Json(json!({ "channels": channels })).into_response(),
        None => Json(json!({})).into_response(),
    })
}

/// `POST /apps/{id}/batch_events`
pub async fn trigger_batch(
    State(state): State<Arc<ServerState>>,
    authed: Authed,
) -> Result<Response, ApiError> {
    let batch: Batch = parse_json(&authed)?;
    let max = authed.app.limits.max_event_batch_size;
    if batch.batch.len() > max {
        return Err(ApiError::bad_request(format!(
            "batch has {} events; the limit is {max}",
            batch.batch.len()
        )));
    }
    // Validate every event before publishing any, so a bad batch publishes nothing.
    for event in &batch.batch {
        validate(&authed.app, event)?;
    }
    let mut infos = Vec::with_capacity(batch.batch.len());
    let mut any_info = false;
    for event in &batch.batch {
        let info = publish(&state, &authed.app, event).await?;
        any_info |= info.is_some();
        infos.push(
            info.and_then(|mut m| m.values_mut().next().map(std::mem::take))
                .unwrap_or(json!({})),
        );
    }
    Ok(if any_info {
        Json(json!({ "batch": infos })).into_response()
    } else {
        Json(json!({})).into_response()
    })
}

fn parse_json<'a, T: Deserialize<'a>>(authed: &'a Authed) -> Result<T, ApiError> {
    serde_json::from_slice(&authed.body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

fn channels_of(event: &PublishEvent) -> Vec<&str> {
    match (&event.channels, &event.channel) {
        (Some(list), _) => list.iter().map(String::as_str).collect(),
        (None, Some(c)) => vec![c.as_str()],
        (None, None) => Vec::new(),
    }
}

/// The event's data as the string clients receive.
fn data_text(event: &PublishEvent) -> Result<String, ApiError> {
    let raw = event.data.get();
    if raw.starts_with('"') {
        serde_json::from_str(raw).map_err(|e| ApiError::bad_request(format!("invalid data: {e}")))
    } else {
        Ok(raw.to_string())
    }
}

fn validate(app: &App, event: &PublishEvent) -> Result<(), ApiError> {
    let limits = &app.limits;
    if event.name.is_empty() || event.name.len() > limits.max_event_name_length {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "limit_exceeded",
            format!(
                "event name must be 1 to {} characters",
                limits.max_event_name_length
            ),
        ));
    }
    let channels = channels_of(event);
    if channels.is_empty() {
        return Err(ApiError::bad_request("`channel` or `channels` is required"));
    }
    if channels.len() > limits.max_event_channels_at_once {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "limit_exceeded",
            format!(
                "event is for {} channels; the limit is {}",
                channels.len(),
                limits.max_event_channels_at_once
            ),
        ));
    }
    for c in &channels {
        validate_name(c, limits.max_channel_name_length)
            .map_err(|e| ApiError::bad_request(format!("channel {c:?}: {e}")))?;
    }
    let max = limits.max_event_payload_kb * 1024;
    let len = data_text(event)?.len();
    if len > max {
        return Err(ApiError::too_large(format!(
            "event data is {len} bytes; the limit is {max}"
        )));
    }
    if let Some(s) = &event.socket_id {
        s.parse::<SocketId>()
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    Ok(())
}

/// Publishes to each channel; returns the requested `info` per channel, if any.
async fn publish(
    state: &ServerState,
    app: &App,
    event: &PublishEvent,
) -> Result<Option<Map<String, Value>>, ApiError> {
    validate(app, event)?;
    let data = data_text(event)?;
    let except = event
        .socket_id
        .as_deref()
        .and_then(|s| s.parse::<SocketId>().ok());
    let started = Instant::now();
    for channel in channels_of(event) {
        let frame = Frame::from(frames::event(
            &event.name,
            channel,
            EventData::Str(&data),
            None,
        ));
        let sent = if let Some(user) = channel.strip_prefix(SERVER_TO_USER_PREFIX) {
            state.adapter.send_to_user(&app.id, user, &frame).await
        } else {
            // Taken once here, at the publishing node; the adapter carries it to every node.
            let decision = state
                .delta
                .decide(
                    &app.id,
                    channel,
                    &event.name,
                    &data,
                    frame.len(),
                    event.delta == Some(false),
                )
                .await;
            state
                .adapter
                .broadcast(&app.id, channel, &frame, except, decision.as_ref())
                .await
        }
        // Nothing was delivered anywhere: the client may retry without duplicates.
        .map_err(|e| ApiError::unavailable(e.to_string(), 1))?;
        state.metrics.delivered(&app.id, sent, frame.len());
        if ChannelType::of(channel).cache {
            let ttl = Duration::from_secs(state.config.cache.cache_channel_ttl_seconds);
            if let Err(e) = state
                .cache
                .set(
                    &cache_channel_key(&app.id, channel),
                    frame.as_str().to_string(),
                    ttl,
                )
                .await
            {
                tracing::warn!(error = %e, %channel, "cache channel event not stored");
            }
        }
    }
    state
        .metrics
        .broadcast_latency
        .observe(started.elapsed().as_secs_f64());
    let Some(info) = event.info.as_deref().filter(|i| !i.is_empty()) else {
        return Ok(None);
    };
    let wants = |attr: &str| info.split(',').any(|a| a.trim() == attr);
    let mut out = Map::new();
    let complete = state.adapter.answers_complete();
    for channel in channels_of(event) {
        let counts = state
            .adapter
            .channel_counts(&app.id, channel)
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service_unavailable",
                    e.to_string(),
                )
            })?;
        let mut attrs = Map::new();
        if wants("subscription_count") {
            attrs.insert(
                "subscription_count".into(),
                json!(counts.map_or(0, |c| c.subscription_count)),
            );
        }
        if wants("user_count") && ChannelType::of(channel).kind == ChannelKind::Presence {
            attrs.insert(
                "user_count".into(),
                json!(counts.and_then(|c| c.user_count).unwrap_or(0)),
            );
        }
        if !complete {
            attrs.insert("incomplete".into(), json!(true));
        }
        out.insert(channel.to_string(), Value::Object(attrs));
    }
    Ok(Some(out))
}
