//! Startup: drivers chosen once from the config, listeners bound, background tasks started.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use sockudo_config::{ConfigError, ServerConfig};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::adapter::AdapterError;
use crate::apps::{App, AppRegistry, AppReloader, resolve_apps};
use crate::delta::DeltaService;
use crate::metrics::Metrics;
use crate::shutdown::Lifecycle;
use crate::state::ServerState;
use crate::webhooks::Webhooks;

/// How long startup waits for the adapter's first connection before reporting ready anyway.
const ADAPTER_STARTUP_WAIT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Adapter(#[from] AdapterError),
    #[error(transparent)]
    Driver(#[from] crate::drivers::DriverError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

/// A running node.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub state: Arc<ServerState>,
    /// The app generated because the config had none.
    pub generated_app: Option<App>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// Drains (see [`Lifecycle::drain`]) and waits for the listeners to stop.
    pub async fn shutdown(self) {
        let grace = Duration::from_secs(self.state.config.shutdown_grace_period);
        self.state.lifecycle.drain(grace).await;
        for t in self.tasks {
            let _ = t.await;
        }
        self.state.adapter.shutdown().await;
    }

    /// Waits until the listeners stop (after a drain).
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
        // Sockets are closed by now: tell peers this node left.
        self.state.adapter.shutdown().await;
    }
}

async fn bind(host: &str, port: u16) -> Result<TcpListener, StartError> {
    let addr = format!("{host}:{port}");
    TcpListener::bind(&addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

/// Starts a node. `config_path` enables app hot reload from that file.
pub async fn start(
    config: ServerConfig,
    config_path: Option<PathBuf>,
) -> Result<RunningServer, StartError> {
    let mut apps = resolve_apps(&config.apps)?;
    let generated_app = if apps.is_empty() {
        let app = App::generated();
        apps.push(app.clone());
        Some(app)
    } else {
        None
    };
    let registry = Arc::new(AppRegistry::new(apps));
    let metrics = Arc::new(Metrics::new(&config.metrics.prefix));
    let delta = Arc::new(DeltaService::from_config(&config, metrics.delta.clone()).await?);
    let adapter = crate::adapter::build(&config, metrics.clone()).await?;
    let cache = crate::drivers::cache(&config, &metrics).await?;
    let limiter = crate::drivers::rate_limiter(&config, &metrics).await?;
    let webhooks = Webhooks::start(
        config.webhooks.clone(),
        registry.clone(),
        adapter.clone(),
        metrics.clone(),
        cache.clone(),
    );
    // A horizontal adapter's webhook leader emits channel and member events cluster-wide.
    adapter.attach_webhooks(webhooks.clone());
    let lifecycle = Arc::new(Lifecycle::default());

    let listener = bind(&config.host, config.port).await?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: format!("{}:{}", config.host, config.port),
        source,
    })?;
    let metrics_listener = if config.metrics.enabled {
        Some(bind(&config.metrics.host, config.metrics.port).await?)
    } else {
        None
    };
    let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());

    let state = Arc::new(ServerState {
        config,
        apps: registry.clone(),
        adapter,
        cache,
        limiter,
        metrics: metrics.clone(),
        webhooks,
        lifecycle: lifecycle.clone(),
        delta,
    });

    let mut tasks = Vec::new();
    let app = crate::http::router(state.clone());
    // Both ports are served the same way, under the same time limits.
    let serve_options = |listener| crate::http::serve::ServeOptions {
        deadlines: crate::http::deadlines::Deadlines::from_config(&state.config.http_api),
        timed_out: metrics.http_connections_timed_out.clone(),
        listener,
    };
    tasks.push(tokio::spawn(crate::http::serve::serve(
        listener,
        app,
        serve_options("main"),
        lifecycle.stop_signal(),
    )));
    if let Some(l) = metrics_listener {
        let m = metrics.clone();
        let router = Router::new().route("/metrics", get(move || async move { m.render() }));
        tasks.push(tokio::spawn(crate::http::serve::serve(
            l,
            router,
            serve_options("metrics"),
            lifecycle.stop_signal(),
        )));
    }
    if let Some(path) = config_path {
        let reloader = AppReloader::new(path, registry, generated_app.clone());
        tokio::spawn(reloader.run(lifecycle.stop_signal()));
    }
    // Not ready until this node hears the others: a client routed here earlier could miss an
    // event published on another node. Bounded: a node whose backend is down still serves its
    // local clients (reported as degraded), as after losing the backend later.
    if !state.adapter.wait_connected(ADAPTER_STARTUP_WAIT).await {
        tracing::warn!(
            adapter = state.adapter.driver(),
            waited_ms = ADAPTER_STARTUP_WAIT.as_millis() as u64,
            "adapter not connected yet; ready as degraded"
        );
    }
    lifecycle.set_ready();
    tracing::info!(%addr, metrics = ?metrics_addr, adapter = state.adapter.driver(), cache = state.cache.driver(), rate_limiter = state.limiter.driver(), "sockudo listening");
    Ok(RunningServer {
        addr,
        metrics_addr,
        state,
        generated_app,
        tasks,
    })
}
