//! The accept loop of the main and metrics ports: HTTP/1.1 with upgrades, one task per TCP
//! connection, under the time limits of `deadlines`.
//!
//! axum's `serve` wraps each stream in a private type, so an upgraded WebSocket could only be
//! used through hyper's boxed `Upgraded`. Serving the connections here keeps the stream a plain
//! `TcpStream` after the upgrade: publishers can then write frames to an idle socket themselves
//! (see `connection::outbox`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use prometheus::IntCounterVec;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tower::ServiceExt;

use super::deadlines::{Deadlines, GuardedIo, Progress, Verdict};

/// The stream type an upgraded request hands back (see `connection::upgrade`).
pub type ServedIo = TokioIo<GuardedIo>;

/// How connections are served: time limits, and the counter of connections they ended.
#[derive(Clone)]
pub struct ServeOptions {
    pub deadlines: Deadlines,
    /// Labelled by listener and phase (`header_read`, `request`, `keep_alive`).
    pub timed_out: IntCounterVec,
    /// This listener's name in `timed_out` (`main`, `metrics`).
    pub listener: &'static str,
}

/// Serves `router` until `stop` turns true, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    mut stop: watch::Receiver<bool>,
) {
    // Every connection task holds a sender: when all are gone, every connection has ended.
    let (live, mut all_done) = mpsc::channel::<()>(1);
    let (closing_tx, closing) = watch::channel(false);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::error!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Small frames must leave at once: with Nagle's algorithm a frame written while the
        // previous one is unacknowledged waits for the client's delayed ACK (up to 40 ms).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        tokio::spawn(serve_connection(
            tcp,
            peer,
            router.clone(),
            options.clone(),
            closing.clone(),
            live.clone(),
        ));
    }
    drop(listener);
    let _ = closing_tx.send(true);
    drop(live);
    let _ = all_done.recv().await;
}

async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    router: Router,
    options: ServeOptions,
    mut closing: watch::Receiver<bool>,
    _live: mpsc::Sender<()>,
) {
    let progress = Arc::new(Progress::default());
    let in_service = progress.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let answered = router.clone().oneshot(request);
        let progress = in_service.clone();
        progress.request_started();
        async move {
            let response = answered.await;
            progress.request_finished();
            response
        }
    });
    // hyper's own header-read timeout is off (no Timer given): see `deadlines`.
    let conn = http1::Builder::new()
        .serve_connection(TokioIo::new(GuardedIo::new(tcp, progress.clone())), service)
        .with_upgrades();
    tokio::pin!(conn);
    let closing = async move {
        let _ = closing.wait_for(|c| *c).await;
    };
    tokio::pin!(closing);
    // One timer per connection, re-armed only when it fires (see `deadlines`).
    let timer = tokio::time::sleep(progress.check(&options.deadlines).delay());
    tokio::pin!(timer);
    let mut shutting_down = false;
    let result = loop {
        tokio::select! {
            result = conn.as_mut() => break result,
            () = &mut closing, if !shutting_down => {
                // Finish the request in flight, then close instead of keeping the connection
                // alive. The limits still apply: a stalled client must not hold up the drain.
                conn.as_mut().graceful_shutdown();
                shutting_down = true;
            }
            () = &mut timer => match progress.check(&options.deadlines) {
                Verdict::Expired(phase) => {
                    tracing::debug!(%peer, listener = options.listener, phase = phase.name(), "HTTP connection timed out; closing it");
                    options
                        .timed_out
                        .with_label_values(&[options.listener, phase.name()])
                        .inc();
                    // Dropping hyper's connection closes the socket.
                    return;
                }
                later => timer.as_mut().reset(tokio::time::Instant::now() + later.delay()),
            },
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
}

/// Errors that concern one connection only (the peer gave up during the handshake).
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}
