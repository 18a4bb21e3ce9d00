//! One WebSocket connection: the upgrade, admission checks, and the per-socket task that reads
//! frames, writes queued frames in batches, and keeps the activity / sign-in timers.

pub mod handle;
pub mod outbox;
mod session;
mod wake;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::apps::App;
use crate::http::error::ApiError;
use crate::protocol::server as frames;
use crate::protocol::{ErrorCode, codes::CLOSE_MESSAGE_TOO_BIG};
use crate::rate_limit::client_ip::client_ip;
use crate::rate_limit::{Verdict, enforce};
use crate::socket_id::SocketId;
use crate::state::ServerState;
use handle::ConnHandle;
use session::Session;

/// Small per-socket buffers keep idle connections cheap; bursts grow them temporarily.
const READ_BUFFER: usize = 4 * 1024;
const WRITE_BUFFER: usize = 8 * 1024;
/// Bytes buffered for one slow socket before writes fail and the socket is dropped.
const MAX_WRITE_BUFFER: usize = 1024 * 1024;
/// How long a server-initiated close waits for the client's close frame.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// `GET /app/{key}`: upgrade, unless draining. Over the connect rate limit: 4100 after the upgrade.
pub async fn upgrade(
    State(state): State<Arc<ServerState>>,
    Path(key): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if state.lifecycle.is_draining() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "server is shutting down",
        )
        .into_response();
    }
    // Over the connect limit the upgrade is still accepted, so the client reads a Pusher error
    // (4100: back off and retry) instead of an HTTP 429 that pusher-js sees as a generic failure.
    let mut refusal = None;
    let rl = &state.config.rate_limiter;
    if rl.is_active() {
        let ip = client_ip(peer, &headers, rl.trusted_proxy_hops);
        match enforce(
            &state,
            "websocket",
            &format!("ws:{ip}"),
            &rl.websocket_rate_limit,
        )
        .await
        {
            Verdict::Refused(d) => {
                refusal = Some(format!(
                    "too many connections from this address; retry in {} s",
                    d.retry_after.as_secs_f64().ceil().max(1.0)
                ));
            }
            Verdict::Unavailable(why) => {
                refusal = Some(format!("connection rate limiter unavailable: {why}"));
            }
            Verdict::Allowed(_) => {}
        }
    }
    if let Some(message) = refusal {
        return ws
            .on_upgrade(move |mut socket| async move {
                refuse_with(&mut socket, ErrorCode::OverCapacity, &message).await;
            })
            .into_response();
    }
    let origin = headers
        .get("origin")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let max_payload = state.config.websocket.max_payload_kb * 1024;
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(max_payload)
        .max_frame_size(max_payload)
        .on_upgrade(move |socket| run(state, socket, key, origin))
}

/// Sends a close frame and waits briefly for the client's reply: dropping the TCP stream at
/// once could reset it and lose the close code on the way.
async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let sent = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        })))
        .await;
    if sent.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(msg)) = socket.recv().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

async fn refuse(socket: &mut WebSocket, code: ErrorCode, message: &'static str) {
    let _ = socket
        .send(Message::Text(frames::error(code, message).into()))
        .await;
    close(socket, code.code(), message).await;
}

/// Like [`refuse`], with a message built at run time (the close reason stays generic).
async fn refuse_with(socket: &mut WebSocket, code: ErrorCode, message: &str) {
    let _ = socket
        .send(Message::Text(frames::error(code, message).into()))
        .await;
    close(socket, code.code(), close_reason(code.code())).await;
}

pub(crate) fn close_reason(code: u16) -> &'static str {
    match code {
        4009 => "connection not authorized",
        4100 => "over capacity",
        4200 => "server shutting down, reconnect",
        4201 => "pong reply not received in time",
        CLOSE_MESSAGE_TOO_BIG => "message too big",
        _ => "closed by server",
    }
}

/// Admission: app known and enabled, origin allowed, node and app quotas.
async fn admit(
    state: &ServerState,
    socket: &mut WebSocket,
    key: &str,
    origin: Option<&str>,
) -> Option<Arc<App>> {
    let Some(app) = state.apps.by_key(key) else {
        refuse(socket, ErrorCode::AppNotFound, "application does not exist").await;
        return None;
    };
    if !app.enabled {
        refuse(socket, ErrorCode::AppDisabled, "application is disabled").await;
        return None;
    }
    if !app.origin_allowed(origin) {
        refuse(socket, ErrorCode::Unauthorized, "origin not allowed").await;
        return None;
    }
    if !state.hub().try_add_connection(state.config.max_connections) {
        refuse(socket, ErrorCode::OverCapacity, "server is over capacity").await;
        return None;
    }
    // The quota is cluster-wide: other nodes' connections (replicated) count against it.
    let remote = state.adapter.remote_connections(&app.id);
    if !state
        .hub()
        .app(&app.id)
        .try_add_connection(app.limits.max_connections.saturating_sub(remote))
    {
        state.hub().remove_connection();
        refuse(
            socket,
            ErrorCode::OverQuota,
            "application is over its connection quota",
        )
        .await;
        return None;
    }
    Some(app)
}

async fn run(state: Arc<ServerState>, mut socket: WebSocket, key: String, origin: Option<String>) {
    let Some(app) = admit(&state, &mut socket, &key, origin.as_deref()).await else {
        return;
    };
    let socket_id = SocketId::random();
    let handle = Arc::new(ConnHandle::new(
        socket_id,
        Arc::from(app.id.as_str()),
        state.config.websocket.max_outbound_messages,
    ));
    state.metrics.connections.inc();
    state.metrics.connections_total.inc();
    let established =
        frames::connection_established(&socket_id.to_string(), state.config.activity_timeout);
    if socket.send(Message::Text(established.into())).await.is_ok() {
        tracing::debug!(%socket_id, app_id = %app.id, "connected");
        let mut session = Session::new(state.clone(), app.clone(), handle.clone());
        session.run(&mut socket).await;
        // Nothing is written any more: later deliveries are not counted as sent.
        handle.outbox.close();
        session.cleanup();
    }
    state.metrics.connections.dec();
    state.hub().app(&app.id).remove_connection();
    state.hub().remove_connection();
}
