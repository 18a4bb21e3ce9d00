//! `sockudo-operator`: runs the SockudoCluster controller.
//!
//! Configuration from the environment (set by the Helm chart):
//! - `WATCH_NAMESPACE`: watch only this namespace (default: all);
//! - `HEALTH_ADDR`: address of `/healthz`, `/readyz`, `/metrics` (default `0.0.0.0:8080`);
//! - `LEADER_ELECTION=true` with `POD_NAME` and `POD_NAMESPACE`: Lease-based leader election;
//! - `RUST_LOG`, `LOG_FORMAT=json`: logging.
//!
//! `sockudo-operator healthcheck` probes the local `/healthz` and exits 0 or 1: container images
//! without curl use it as their health check.

use std::net::SocketAddr;

use sockudo_operator::controller::{self, Config, LeaseConfig};
use tracing_subscriber::EnvFilter;

#[derive(Debug, thiserror::Error)]
enum MainError {
    #[error("{name}={value:?} is not valid: {message}")]
    Env {
        name: &'static str,
        value: String,
        message: String,
    },
    #[error("cannot connect to Kubernetes: {0}")]
    Client(#[from] kube::Error),
    #[error(transparent)]
    Controller(#[from] controller::Error),
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn config() -> Result<Config, MainError> {
    let health = env("HEALTH_ADDR").unwrap_or_else(|| "0.0.0.0:8080".into());
    let health_addr: SocketAddr =
        health
            .parse()
            .map_err(|e: std::net::AddrParseError| MainError::Env {
                name: "HEALTH_ADDR",
                value: health.clone(),
                message: e.to_string(),
            })?;
    let instance = env("POD_NAME");
    let leader = match env("LEADER_ELECTION").as_deref() {
        Some("true") => {
            let identity = instance.clone().ok_or(MainError::Env {
                name: "POD_NAME",
                value: String::new(),
                message: "leader election needs this replica's name".into(),
            })?;
            let namespace = env("POD_NAMESPACE").unwrap_or_else(|| "default".into());
            Some(LeaseConfig::new(&namespace, &identity))
        }
        _ => None,
    };
    Ok(Config {
        namespace: env("WATCH_NAMESPACE"),
        health_addr: Some(health_addr),
        leader,
        instance,
        ..Config::default()
    })
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

/// GET /healthz on the local health address; true on HTTP 200.
fn healthcheck(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let target = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let timeout = std::time::Duration::from_secs(3);
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&target, timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    if stream
        .write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

#[tokio::main]
async fn main() -> Result<(), MainError> {
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        let config = config()?;
        let healthy = config.health_addr.is_some_and(healthcheck);
        std::process::exit(if healthy { 0 } else { 1 });
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if env("LOG_FORMAT").as_deref() == Some("json") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .json()
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let config = config()?;
    let client = kube::Client::try_default().await?;
    controller::run_until(client, config, shutdown_signal()).await?;
    Ok(())
}
