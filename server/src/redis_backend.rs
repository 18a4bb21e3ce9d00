//! Connections to Redis and Redis Cluster: the one path every Redis consumer takes (cache, rate
//! limiter, delta coordination, and the `redis` / `redis-cluster` adapters, which add their
//! pub/sub connections from the same client via [`RedisBackend::pubsub`] and
//! [`cluster_builder`]), so credentials, TLS, timeouts and reconnection are the same for all.
//!
//! [`RedisBackend::connect`] turns a [`RedisTarget`] (already resolved by the config crate, with
//! password files read) into a cheap-to-clone handle:
//!
//! - standalone: a [`ConnectionManager`] (one multiplexed connection, reconnects itself);
//! - cluster: a `cluster_async` connection (slot-aware routing, follows MOVED/ASK).
//!
//! TLS is `rediss://` (rustls, system roots) plus the config's `tls` block: a CA file, a client
//! certificate and key for mutual TLS, and `insecure_skip_verify` for tests.
//!
//! An unreachable backend never fails startup (the rule: retried and reported, never
//! silently replaced): the handle starts degraded and a supervisor task reconnects with
//! exponential backoff. The same task health-checks while connected (PING, plus slot coverage
//! on a cluster), so readiness and the `backend_up` gauge recover by themselves even without
//! traffic. Each command result also updates the
//! health at once, so an outage shows up on the first failed request, not one interval later.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use prometheus::IntGauge;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, FromRedisValue, Pipeline, RedisError, RedisFuture, TlsCertificates, Value};
use sockudo_config::{RedisClusterConnection, RedisConnection, RedisTarget, TlsConfig};

use crate::adapter::BackendHealth;

/// Timeouts and retry pacing of one backend.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// One connection attempt (TCP + TLS + AUTH).
    pub connect_timeout: Duration,
    /// One command's round trip; past it the command fails (and the caller falls back).
    pub response_timeout: Duration,
    /// PING period while connected.
    pub health_interval: Duration,
    /// First and last delay between reconnection attempts (doubling in between).
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            connect_timeout: Duration::from_secs(2),
            // Short: these commands sit on the request path (a rate-limit check per API call).
            response_timeout: Duration::from_millis(500),
            health_interval: Duration::from_secs(1),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedisBackendError {
    #[error("invalid {name} redis configuration: {detail}")]
    Config { name: &'static str, detail: String },
    #[error("{name} redis is not connected ({detail})")]
    NotConnected { name: &'static str, detail: String },
    #[error("{name} redis did not answer within {ms} ms")]
    Timeout { name: &'static str, ms: u128 },
    #[error("{name} redis: {source}")]
    Command {
        name: &'static str,
        #[source]
        source: RedisError,
    },
}

/// A live connection, standalone or cluster. Cloning is cheap (both are multiplexed handles), and
/// it implements [`ConnectionLike`] so `redis::cmd(..).query_async(&mut conn)`, pipelines and
/// `Script::invoke_async` work on either.
#[derive(Clone)]
pub enum RedisConn {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Standalone(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Standalone(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Standalone(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}

/// How to (re)build the connection: what the supervisor keeps.
// Built once per backend and kept in an Arc: the size difference is irrelevant.
#[allow(clippy::large_enum_variant)]
enum Recipe {
    Standalone(redis::Client),
    Cluster(redis::cluster::ClusterClient),
}

struct Inner {
    name: &'static str,
    recipe: Recipe,
    options: RedisOptions,
    conn: RwLock<Option<RedisConn>>,
    health: RwLock<BackendHealth>,
    /// Whether the last health check passed and no command has failed since. While one cluster
    /// master is down, commands on the other masters' slots still succeed, and must not report
    /// the backend healthy again (readiness would flap); only a passing check clears it.
    ping_ok: AtomicBool,
    up: Option<IntGauge>,
}

/// A handle on one Redis deployment. See the module docs.
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

/// Errors that say the backend (not the command) is the problem.
fn is_backend_down(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_cluster_error()
        || matches!(
            e.kind(),
            redis::ErrorKind::ClusterConnectionNotFound
                | redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading)
        )
}

fn read_pem(name: &'static str, what: &str, path: &str) -> Result<Vec<u8>, RedisBackendError> {
    std::fs::read(path).map_err(|e| RedisBackendError::Config {
        name,
        detail: format!("cannot read tls.{what} {path}: {e}"),
    })
}

/// The certificates named by a `tls` block, if it names any.
fn certificates(
    name: &'static str,
    tls: Option<&TlsConfig>,
) -> Result<Option<TlsCertificates>, RedisBackendError> {
    let Some(tls) = tls.filter(|t| t.enabled) else {
        return Ok(None);
    };
    let root_cert = tls
        .ca_file
        .as_deref()
        .map(|p| read_pem(name, "ca_file", p))
        .transpose()?;
    let client_tls = match (&tls.cert_file, &tls.key_file) {
        (Some(c), Some(k)) => Some(redis::ClientTlsConfig {
            client_cert: read_pem(name, "cert_file", c)?,
            client_key: read_pem(name, "key_file", k)?,
        }),
        (None, None) => None,
        _ => {
            return Err(RedisBackendError::Config {
                name,
                detail: "tls.cert_file and tls.key_file go together".into(),
            });
        }
    };
    if root_cert.is_none() && client_tls.is_none() {
        return Ok(None);
    }
    Ok(Some(TlsCertificates {
        client_tls,
        root_cert,
    }))
}

/// A standalone client from a connection section: credentials, `rediss://` and the `tls` block.
/// The adapter's pub/sub connections and every [`RedisBackend`] are made from it.
pub fn standalone_client(
    name: &'static str,
    conn: &RedisConnection,
) -> Result<redis::Client, RedisBackendError> {
    let bad = |detail: String| RedisBackendError::Config { name, detail };
    let mut url = conn.to_url().map_err(|e| bad(e.to_string()))?;
    let tls = conn.tls.as_ref().filter(|t| t.enabled);
    if tls.is_some() && url.starts_with("redis://") {
        url = format!("rediss://{}", &url["redis://".len()..]);
    }
    if tls.is_some_and(|t| t.insecure_skip_verify) && !url.contains('#') {
        url.push_str("#insecure");
    }
    match certificates(name, conn.tls.as_ref())? {
        Some(certs) => redis::Client::build_with_tls(url.as_str(), certs),
        None => redis::Client::open(url.as_str()),
    }
    .map_err(|e| bad(e.to_string()))
}

/// A cluster client builder from a cluster section: credentials, TLS and the timeouts of `o`.
/// Callers may add protocol options (the adapter adds RESP3 pushes) before `build()`.
pub fn cluster_builder(
    name: &'static str,
    cluster: &RedisClusterConnection,
    o: &RedisOptions,
) -> Result<ClusterClientBuilder, RedisBackendError> {
    let bad = |detail: String| RedisBackendError::Config { name, detail };
    let urls = cluster.to_urls().map_err(|e| bad(e.to_string()))?;
    let mut b = ClusterClientBuilder::new(urls)
        .connection_timeout(o.connect_timeout)
        .response_timeout(o.response_timeout)
        // Few quick retries: MOVED/ASK and failovers are retried inside; a dead node
        // should fail the request fast and let the caller's failure policy decide.
        .retries(2)
        .min_retry_wait(10)
        .max_retry_wait(200);
    if let Some(tls) = cluster.tls.as_ref().filter(|t| t.enabled) {
        b = b.tls(if tls.insecure_skip_verify {
            redis::TlsMode::Insecure
        } else {
            redis::TlsMode::Secure
        });
    }
    if let Some(certs) = certificates(name, cluster.tls.as_ref())? {
        b = b.certs(certs);
    }
    Ok(b)
}

fn recipe(
    name: &'static str,
    target: &RedisTarget,
    o: &RedisOptions,
) -> Result<Recipe, RedisBackendError> {
    match target {
        RedisTarget::Standalone(conn) => Ok(Recipe::Standalone(standalone_client(name, conn)?)),
        RedisTarget::Cluster(cluster) => Ok(Recipe::Cluster(
            cluster_builder(name, cluster, o)?
                .build()
                .map_err(|e| RedisBackendError::Config {
                    name,
                    detail: e.to_string(),
                })?,
        )),
    }
}

impl Inner {
    async fn build(&self) -> Result<RedisConn, RedisError> {
        let o = &self.options;
        let attempt = async {
            match &self.recipe {
                Recipe::Standalone(client) => {
                    let config = ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(o.connect_timeout))
                        .set_response_timeout(Some(o.response_timeout))
                        .set_min_delay(o.min_backoff)
                        .set_max_delay(o.max_backoff)
                        .set_number_of_retries(2);
                    client
                        .get_connection_manager_with_config(config)
                        .await
                        .map(RedisConn::Standalone)
                }
                Recipe::Cluster(client) => {
                    client.get_async_connection().await.map(RedisConn::Cluster)
                }
            }
        };
        match tokio::time::timeout(o.connect_timeout * 2, attempt).await {
            Ok(r) => r,
            Err(_) => Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connection attempt timed out",
            ))),
        }
    }

    fn set_health(&self, health: BackendHealth) {
        if let Some(g) = &self.up {
            g.set(i64::from(health == BackendHealth::Ok));
        }
        let mut h = self.health.write().expect("health lock");
        if *h != health {
            match &health {
                BackendHealth::Ok => tracing::info!(backend = self.name, "redis reachable"),
                BackendHealth::Degraded(e) => {
                    tracing::warn!(backend = self.name, error = %e, "redis unreachable")
                }
            }
            *h = health;
        }
    }
}

impl RedisBackend {
    /// Builds the client and tries one connection. Only a bad configuration (unreadable
    /// certificate, malformed URL) is an error; an unreachable server gives a degraded handle that
    /// keeps reconnecting in the background. `name` labels logs and errors (`cache`,
    /// `rate_limiter`, ...); `up` is set to 1/0 as the backend comes and goes.
    pub async fn connect(
        name: &'static str,
        target: &RedisTarget,
        options: RedisOptions,
        up: Option<IntGauge>,
    ) -> Result<RedisBackend, RedisBackendError> {
        let recipe = recipe(name, target, &options)?;
        let inner = Arc::new(Inner {
            name,
            recipe,
            options,
            conn: RwLock::new(None),
            health: RwLock::new(BackendHealth::Degraded("connecting".into())),
            ping_ok: AtomicBool::new(true),
            up,
        });
        match inner.build().await {
            Ok(c) => {
                *inner.conn.write().expect("conn lock") = Some(c);
                inner.set_health(BackendHealth::Ok);
            }
            Err(e) => inner.set_health(BackendHealth::Degraded(e.to_string())),
        }
        tokio::spawn(supervise(Arc::downgrade(&inner)));
        Ok(RedisBackend { inner })
    }

    pub fn name(&self) -> &'static str {
        self.inner.name
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self.inner.recipe, Recipe::Cluster(_))
    }

    /// `redis` or `redis-cluster`, as driver names go.
    pub fn driver(&self) -> &'static str {
        if self.is_cluster() {
            "redis-cluster"
        } else {
            "redis"
        }
    }

    pub fn health(&self) -> BackendHealth {
        self.inner.health.read().expect("health lock").clone()
    }

    /// The current connection, or `NotConnected` while the supervisor is still reconnecting.
    pub fn conn(&self) -> Result<RedisConn, RedisBackendError> {
        self.inner
            .conn
            .read()
            .expect("conn lock")
            .clone()
            .ok_or_else(|| RedisBackendError::NotConnected {
                name: self.inner.name,
                detail: match self.health() {
                    BackendHealth::Degraded(e) => e,
                    BackendHealth::Ok => "connecting".into(),
                },
            })
    }

    /// Runs `f` on a connection with the response timeout, and records the outcome in the
    /// backend's health. Every driver command goes through here.
    pub async fn run<T, F, Fut>(&self, f: F) -> Result<T, RedisBackendError>
    where
        F: FnOnce(RedisConn) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let conn = self.conn()?;
        let name = self.inner.name;
        let timeout = self.inner.options.response_timeout;
        match tokio::time::timeout(timeout, f(conn)).await {
            Ok(Ok(v)) => {
                if self.inner.ping_ok.load(Ordering::Acquire) {
                    self.inner.set_health(BackendHealth::Ok);
                }
                Ok(v)
            }
            Ok(Err(source)) => {
                if is_backend_down(&source) {
                    // Only a passing health check clears it: on a cluster, commands on the
                    // other masters' slots keep succeeding.
                    self.inner.ping_ok.store(false, Ordering::Release);
                    self.inner
                        .set_health(BackendHealth::Degraded(source.to_string()));
                }
                Err(RedisBackendError::Command { name, source })
            }
            Err(_) => {
                let e = RedisBackendError::Timeout {
                    name,
                    ms: timeout.as_millis(),
                };
                self.inner.ping_ok.store(false, Ordering::Release);
                self.inner
                    .set_health(BackendHealth::Degraded(e.to_string()));
                Err(e)
            }
        }
    }

    /// A dedicated pub/sub connection (standalone only), made from the same client as the
    /// backend's own connection: same credentials, TLS and connect timeout. The caller owns its
    /// reconnection (subscriptions live on it).
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub, RedisBackendError> {
        let name = self.inner.name;
        let Recipe::Standalone(client) = &self.inner.recipe else {
            return Err(RedisBackendError::Config {
                name,
                detail: "classic pub/sub connections need a standalone Redis".into(),
            });
        };
        let timeout = self.inner.options.connect_timeout;
        match tokio::time::timeout(timeout, client.get_async_pubsub()).await {
            Ok(Ok(ps)) => Ok(ps),
            Ok(Err(source)) => Err(RedisBackendError::Command { name, source }),
            Err(_) => Err(RedisBackendError::Timeout {
                name,
                ms: timeout.as_millis(),
            }),
        }
    }

    /// One command, e.g. `backend.query(redis::cmd("GET").arg(key))`.
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, RedisBackendError> {
        self.run(|mut c| async move { cmd.query_async(&mut c).await })
            .await
    }
}

/// One health probe. Standalone: PING. Cluster: PING to every master that owns slots (listed
/// by `CLUSTER NODES` from any node, so masters the client itself has dropped are included),
/// and `CLUSTER INFO`'s slot coverage: a cluster with a master down is degraded even while the
/// surviving masters answer.
async fn health_check(conn: &mut RedisConn, cluster: bool) -> Result<(), String> {
    let cluster_conn = match conn {
        RedisConn::Cluster(c) if cluster => c,
        _ => {
            return redis::cmd("PING")
                .query_async::<Value>(conn)
                .await
                .map(drop)
                .map_err(|e| format!("PING failed: {e}"));
        }
    };
    let nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(cluster_conn)
        .await
        .map_err(|e| format!("CLUSTER NODES failed: {e}"))?;
    for (host, port) in slot_owners(&nodes) {
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
            host: host.clone(),
            port,
        });
        cluster_conn
            .route_command(redis::cmd("PING"), routing)
            .await
            .map_err(|e| format!("redis cluster master {host}:{port} unreachable: {e}"))?;
    }
    let info: String = redis::cmd("CLUSTER")
        .arg("INFO")
        .query_async(cluster_conn)
        .await
        .map_err(|e| format!("CLUSTER INFO failed: {e}"))?;
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
            .unwrap_or("?")
    };
    let slots_ok = field("cluster_slots_ok");
    if field("cluster_state") == "ok" && slots_ok == "16384" {
        return Ok(());
    }
    Err(format!(
        "redis cluster state {}: {slots_ok} of 16384 slots served ({} on masters suspected down, {} on failed masters)",
        field("cluster_state"),
        field("cluster_slots_pfail"),
        field("cluster_slots_fail"),
    ))
}

/// `(host, port)` of every master owning slots, from `CLUSTER NODES` lines
/// (`id host:port@bus[,hostname] flags master-id ping pong epoch link slot...`).
fn slot_owners(nodes: &str) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 9 || !f[2].split(',').any(|flag| flag == "master") {
                return None;
            }
            let addr = f[1].split(['@', ',']).next()?;
            let (host, port) = addr.rsplit_once(':')?;
            Some((host.to_string(), port.parse().ok()?))
        })
        .collect()
}

/// Keeps one backend connected and its health current; ends when the backend is dropped.
async fn supervise(weak: Weak<Inner>) {
    // Consecutive failed PINGs after which the connection is rebuilt from scratch (a cluster
    // whose every node restarted may otherwise keep stale node connections).
    const REBUILD_AFTER: u32 = 3;
    let mut backoff = None::<Duration>;
    let mut failed_pings = 0u32;
    loop {
        let (wait, connected) = {
            let Some(inner) = weak.upgrade() else { return };
            let connected = inner.conn.read().expect("conn lock").is_some();
            let o = &inner.options;
            let wait = match backoff {
                Some(b) if !connected => b,
                _ => o.health_interval,
            };
            (wait, connected)
        };
        tokio::time::sleep(wait).await;
        let Some(inner) = weak.upgrade() else { return };
        if connected {
            let conn = inner.conn.read().expect("conn lock").clone();
            let Some(mut conn) = conn else { continue };
            let cluster = matches!(inner.recipe, Recipe::Cluster(_));
            let check = tokio::time::timeout(
                inner.options.response_timeout,
                health_check(&mut conn, cluster),
            )
            .await;
            let failure = match check {
                Ok(r) => r.err(),
                Err(_) => Some("health check timed out".to_string()),
            };
            inner.ping_ok.store(failure.is_none(), Ordering::Release);
            match failure {
                None => {
                    failed_pings = 0;
                    inner.set_health(BackendHealth::Ok);
                }
                Some(e) => {
                    failed_pings += 1;
                    inner.set_health(BackendHealth::Degraded(e));
                }
            }
            if failed_pings >= REBUILD_AFTER {
                failed_pings = 0;
                // The old connection keeps serving while a fresh one is tried: with one
                // cluster master down, the other masters' slots must keep working.
                match inner.build().await {
                    Ok(c) => *inner.conn.write().expect("conn lock") = Some(c),
                    Err(e) => {
                        tracing::debug!(backend = inner.name, error = %e, "rebuilding the redis connection failed; keeping the current one")
                    }
                }
            }
        } else {
            match inner.build().await {
                Ok(c) => {
                    *inner.conn.write().expect("conn lock") = Some(c);
                    inner.ping_ok.store(true, Ordering::Release);
                    inner.set_health(BackendHealth::Ok);
                    backoff = None;
                }
                Err(e) => {
                    inner.set_health(BackendHealth::Degraded(e.to_string()));
                    let o = &inner.options;
                    backoff = Some(backoff.map_or(o.min_backoff, |b| b * 2).min(o.max_backoff));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::slot_owners;

    #[test]
    fn slot_owners_are_masters_with_slots() {
        let nodes = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7002@17002,redis-1 master,fail - 0 0 2 disconnected 5461-10922
c3 127.0.0.1:7003@17003 slave a1 0 0 1 connected
d4 127.0.0.1:7004@17004 master - 0 0 3 connected
";
        assert_eq!(
            slot_owners(nodes),
            vec![("127.0.0.1".into(), 7001), ("127.0.0.1".into(), 7002)]
        );
    }
}
