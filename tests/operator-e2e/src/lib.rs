//! Harness of the operator's end-to-end tests: a real kube-apiserver + kube-controller-manager +
//! etcd (`tests/control-plane/control-plane.sh`), the SockudoCluster CRD installed from `crds/`,
//! the operator running in-process under the RBAC the Helm chart grants, and one namespace per
//! test.
//!
//! Two control planes at most are started per test binary, lazily and once each:
//! - [`shared`]: one operator watching every namespace (the chart's default `watchScope:
//!   cluster`, its ClusterRole rendered with the Helm SDK). Most tests use it, concurrently, each
//!   in its own namespace.
//! - [`scoped`]: no operator of its own; tests start namespace-scoped operators there (the chart's
//!   `watchScope: namespace`, leader election, the Redis Cluster address override), which must not
//!   meet a cluster-wide operator.
//!
//! Every control plane is stopped when the test binary exits (an `atexit` handler), and a detached
//! watchdog stops it too if the binary is killed, so no etcd or kube-apiserver outlives the run.
//!
//! Tests never skip: a missing dependency is a failure that says how to install it.

pub mod k8s;
pub mod plane;

use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use plane::{OperatorHandle, Plane, Shared, scoped, shared};

/// The one runtime of the test binary: the in-process operators and every test's clients live on
/// it (a kube `Client` is bound to the runtime it was created on).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn,sockudo_operator=info".into()),
            )
            .with_test_writer()
            .try_init();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// Runs one test body on the shared runtime.
pub fn run<F: Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

/// Polls `check` until it returns `Some`, or panics after `timeout` with `what` and the last
/// state `check` reported. Deadlines are generous: this is about eventual behaviour, not speed.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    let mut last;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(e) => last = e,
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last state: {last}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The default deadline of [`eventually`].
pub const PATIENCE: Duration = Duration::from_secs(90);

/// The workspace root.
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// The body of `GET path` on a local HTTP/1.0 endpoint (the operator's `/metrics`).
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    tcp.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    tcp.read_to_string(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    match response.split_once("\r\n\r\n") {
        Some((head, body))
            if head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200") =>
        {
            Ok(body.to_string())
        }
        _ => Err(format!("unexpected response: {response}")),
    }
}
