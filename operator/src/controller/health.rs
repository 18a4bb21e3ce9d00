//! `/healthz`, `/readyz` and `/metrics` for the kubelet and Prometheus.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::Store;
use tokio::net::TcpListener;
use tracing::info;

use super::error::Error;
use super::metrics::Metrics;
use crate::crd::SockudoCluster;

#[derive(Debug, Default)]
pub struct Health {
    /// Set once the controller's watches run (or the replica stands by for the Lease).
    pub ready: AtomicBool,
    pub metrics: Metrics,
    /// The controller's cache of SockudoClusters, once it runs (a standby replica has none).
    pub clusters: OnceLock<Store<DeserializeGuard<SockudoCluster>>>,
}

async fn readyz(State(h): State<Arc<Health>>) -> StatusCode {
    if h.ready.load(Ordering::Relaxed) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn metrics(State(h): State<Arc<Health>>) -> String {
    let mut out = h.metrics.render();
    if let Some(store) = h.clusters.get() {
        out.push_str(&super::cluster_metrics::render(&store.state()));
    }
    out
}

/// Binds `addr` and serves until the task is dropped. Returns the bound address (port 0 picks one).
pub async fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), Error> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health);
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    info!(%bound, "serving /healthz, /readyz and /metrics");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((bound, task))
}
