//! The WebSocket handshake (RFC 6455 §4.2) and the socket it hands over.
//!
//! The upgraded TCP stream is split: the connection task reads client frames through
//! tungstenite, while every write (frames, pongs, close frames) goes through the socket's
//! [`Outbox`], which senders may write to directly.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::FromRequestParts;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hyper::upgrade::OnUpgrade;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::handle::ConnHandle;
use super::outbox::Outbox;
use crate::http::error::ApiError;
use crate::http::serve::ServedIo;
use crate::socket_id::SocketId;

/// A WebSocket as the connection task uses it: reads through tungstenite, writes via the outbox.
pub type Socket = WebSocketStream<SocketIo>;

/// A valid upgrade request, not yet answered.
pub struct WsUpgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

impl<S: Send + Sync> FromRequestParts<S> for WsUpgrade {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let refuse = |status, message: &str| Err(ApiError::new(status, "bad_upgrade", message));
        if parts.method != Method::GET {
            return refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                "a WebSocket upgrade is a GET request",
            );
        }
        if !has_token(&parts.headers, header::CONNECTION, "upgrade") {
            return refuse(
                StatusCode::BAD_REQUEST,
                "the Connection header must include 'upgrade'",
            );
        }
        if !has_token(&parts.headers, header::UPGRADE, "websocket") {
            return refuse(
                StatusCode::BAD_REQUEST,
                "the Upgrade header must be 'websocket'",
            );
        }
        if parts
            .headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_none_or(|v| v != "13")
        {
            return refuse(StatusCode::BAD_REQUEST, "Sec-WebSocket-Version must be 13");
        }
        let Some(key) = parts.headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
            return refuse(StatusCode::BAD_REQUEST, "Sec-WebSocket-Key is missing");
        };
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            return refuse(
                StatusCode::UPGRADE_REQUIRED,
                "this connection cannot be upgraded",
            );
        };
        Ok(WsUpgrade { key, on_upgrade })
    }
}

/// Whether a comma-separated header holds `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// The upgraded connection, before the WebSocket layer is put on it.
pub struct Upgraded {
    tcp: TcpStream,
    /// Bytes the client sent after its request head, already read by the HTTP layer.
    read_ahead: Bytes,
}

impl Upgraded {
    /// The WebSocket, and the connection's handle, whose outbox writes everything to it.
    /// `app_id` is the app the key names (empty when it names none: admission refuses it).
    pub async fn into_socket(
        self,
        config: WebSocketConfig,
        socket_id: SocketId,
        app_id: Arc<str>,
        max_queued: usize,
    ) -> (Socket, Arc<ConnHandle>) {
        let outbox = Outbox::attached(self.tcp, max_queued);
        let conn = Arc::new(ConnHandle::with_outbox(socket_id, app_id, outbox));
        let io = SocketIo { conn: conn.clone() };
        let socket = WebSocketStream::from_partially_read(
            io,
            self.read_ahead.to_vec(),
            Role::Server,
            Some(config),
        )
        .await;
        (socket, conn)
    }
}

impl WsUpgrade {
    /// Answers 101 and runs `callback` on the connection once the HTTP layer hands it over.
    pub fn on_upgrade<F, Fut>(self, callback: F) -> Response
    where
        F: FnOnce(Upgraded) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let accept = derive_accept_key(self.key.as_bytes());
        tokio::spawn(async move {
            let upgraded = match self.on_upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    tracing::debug!(error = %e, "WebSocket upgrade failed");
                    return;
                }
            };
            match upgraded.downcast::<ServedIo>() {
                Ok(parts) => {
                    callback(Upgraded {
                        tcp: parts.io.into_inner().into_tcp(),
                        read_ahead: parts.read_buf,
                    })
                    .await
                }
                Err(_) => tracing::error!(
                    "the upgraded connection is not a TCP stream from http::serve; dropping it"
                ),
            }
        });
        (
            StatusCode::SWITCHING_PROTOCOLS,
            [
                (header::CONNECTION, HeaderValue::from_static("upgrade")),
                (header::UPGRADE, HeaderValue::from_static("websocket")),
                (
                    header::SEC_WEBSOCKET_ACCEPT,
                    HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
                ),
            ],
        )
            .into_response()
    }
}

/// The socket as tungstenite sees it: reads from the TCP stream, writes into the outbox (which
/// always accepts at once, so tungstenite never holds bytes of its own).
pub struct SocketIo {
    conn: Arc<ConnHandle>,
}

impl AsyncRead for SocketIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let Some(tcp) = self.conn.outbox.socket() else {
            return Poll::Ready(Ok(()));
        };
        loop {
            std::task::ready!(tcp.poll_read_ready(cx))?;
            // A WouldBlock clears tokio's readiness, so the next poll waits for the reactor.
            match tcp.try_read_buf(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return Poll::Ready(other.map(|_| ())),
            }
        }
    }
}

impl AsyncWrite for SocketIo {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(
            match self.conn.outbox.send_raw(Bytes::copy_from_slice(buf)) {
                Ok(()) => Ok(buf.len()),
                Err(_) => Err(io::ErrorKind::BrokenPipe.into()),
            },
        )
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The outbox closes the sending side once the last frame is written.
        Poll::Ready(Ok(()))
    }
}
