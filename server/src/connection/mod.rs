//! One WebSocket connection: the upgrade, admission checks, and the per-socket task that reads
//! client frames, writes the frames that had to wait (senders write to an idle socket
//! themselves, see [`outbox`]), and keeps the activity / sign-in timers.

pub mod frame;
pub mod handle;
pub mod outbox;
mod session;
pub mod upgrade;
mod wake;

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;

use crate::apps::App;
use crate::http::error::ApiError;
use crate::protocol::server as frames;
use crate::protocol::{ErrorCode, codes::CLOSE_MESSAGE_TOO_BIG};
use crate::rate_limit::client_ip::client_ip;
use crate::rate_limit::{Verdict, enforce};
use crate::socket_id::SocketId;
use crate::state::ServerState;
use handle::{ConnHandle, Frame};
use session::Session;
use upgrade::{Socket, WsUpgrade};

/// A small read buffer keeps idle connections cheap; bursts grow it temporarily.
const READ_BUFFER: usize = 4 * 1024;
/// How long a server-initiated close waits for the client's close frame, and a closing
/// connection for its last frames to be written.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// `GET /app/{key}`: upgrade, unless draining. Over the connect rate limit: 4100 after the upgrade.
pub async fn upgrade(
    State(state): State<Arc<ServerState>>,
    Path(key): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: WsUpgrade,
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
    let max_queued = state.config.websocket.max_outbound_messages;
    let max_payload = state.config.websocket.max_payload_kb * 1024;
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        // Everything tungstenite writes goes straight to the outbox.
        .write_buffer_size(0)
        .max_message_size(Some(max_payload))
        .max_frame_size(Some(max_payload));
    // The app the key names, if any: the handle carries its id from the start.
    let app = state.apps.by_key(&key);
    let app_id: Arc<str> = app
        .as_ref()
        .map_or_else(|| Arc::from(""), |app| Arc::from(app.id.as_str()));
    if let Some(message) = refusal {
        return ws.on_upgrade(move |upgraded| async move {
            let (mut socket, conn) = upgraded
                .into_socket(config, SocketId::random(), app_id, max_queued)
                .await;
            refuse_with(&mut socket, &conn, ErrorCode::OverCapacity, &message).await;
            finish(&conn).await;
        });
    }
    let origin = headers
        .get("origin")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    ws.on_upgrade(move |upgraded| async move {
        let (socket, conn) = upgraded
            .into_socket(config, SocketId::random(), app_id, max_queued)
            .await;
        run(state, socket, conn, app, origin).await;
    })
}

/// Writes what is still queued (for a while), then closes the socket's sending side.
async fn finish(conn: &ConnHandle) {
    let _ = tokio::time::timeout(CLOSE_WAIT, conn.outbox.flushed()).await;
    conn.outbox.close();
}

/// Sends a close frame and waits briefly for the client's reply, writing queued frames
/// meanwhile: dropping the TCP stream at once could reset it and lose the close code.
async fn close(socket: &mut Socket, conn: &ConnHandle, code: u16, reason: &'static str) {
    let frame = Message::Close(Some(CloseFrame {
        code: code.into(),
        reason: reason.into(),
    }));
    if socket.send(frame).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(
        CLOSE_WAIT,
        poll_fn(|cx| {
            if conn.outbox.poll_write(cx).is_ready() {
                return Poll::Ready(());
            }
            loop {
                match socket.poll_next_unpin(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(Ok(Message::Close(_))) | Some(Err(_)) | None) => {
                        return Poll::Ready(());
                    }
                    Poll::Ready(Some(Ok(_))) => {}
                }
            }
        }),
    )
    .await;
}

async fn refuse(socket: &mut Socket, conn: &ConnHandle, code: ErrorCode, message: &'static str) {
    conn.send(&Frame::text(frames::error(code, message)));
    close(socket, conn, code.code(), message).await;
}

/// Like [`refuse`], with a message built at run time (the close reason stays generic).
async fn refuse_with(socket: &mut Socket, conn: &ConnHandle, code: ErrorCode, message: &str) {
    conn.send(&Frame::text(frames::error(code, message)));
    close(socket, conn, code.code(), close_reason(code.code())).await;
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
    socket: &mut Socket,
    conn: &ConnHandle,
    app: Option<Arc<App>>,
    origin: Option<&str>,
) -> Option<Arc<App>> {
    let Some(app) = app else {
        refuse(
            socket,
            conn,
            ErrorCode::AppNotFound,
            "application does not exist",
        )
        .await;
        return None;
    };
    if !app.enabled {
        refuse(
            socket,
            conn,
            ErrorCode::AppDisabled,
            "application is disabled",
        )
        .await;
        return None;
    }
    if !app.origin_allowed(origin) {
        refuse(socket, conn, ErrorCode::Unauthorized, "origin not allowed").await;
        return None;
    }
    if !state.hub().try_add_connection(state.config.max_connections) {
        refuse(
            socket,
            conn,
            ErrorCode::OverCapacity,
            "server is over capacity",
        )
        .await;
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
            conn,
            ErrorCode::OverQuota,
            "application is over its connection quota",
        )
        .await;
        return None;
    }
    Some(app)
}

async fn run(
    state: Arc<ServerState>,
    mut socket: Socket,
    handle: Arc<ConnHandle>,
    app: Option<Arc<App>>,
    origin: Option<String>,
) {
    let Some(app) = admit(&state, &mut socket, &handle, app, origin.as_deref()).await else {
        finish(&handle).await;
        return;
    };
    let socket_id = handle.socket_id;
    state.metrics.connections.inc();
    state.metrics.connections_total.inc();
    let established =
        frames::connection_established(&socket_id.to_string(), state.config.activity_timeout);
    let session = if handle.send(&Frame::text(established)) {
        tracing::debug!(%socket_id, app_id = %app.id, "connected");
        let mut session = Session::new(state.clone(), app.clone(), handle.clone());
        session.run(&mut socket).await;
        Some(session)
    } else {
        None
    };
    // What is queued still leaves (the close frame, a reply to the client's close); then
    // nothing more is accepted, so later deliveries are not counted as sent.
    finish(&handle).await;
    if let Some(mut session) = session {
        session.cleanup();
    }
    state.metrics.connections.dec();
    state.hub().app(&app.id).remove_connection();
    state.hub().remove_connection();
}
