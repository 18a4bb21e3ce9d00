//! How nodes share channels. The adapter answers cluster-wide questions and fans publishes out
//! to every node; each node's [`LocalHub`](crate::hub::LocalHub) does its local delivery.
//!
//! The horizontal adapters (redis, redis-cluster, nats) share one core (`horizontal`): they
//! publish to the backend first and deliver locally only once it accepted, and they answer
//! queries from a replicated view of every node's channels and presence members.

pub mod horizontal;
pub mod local;
pub mod nats;
pub mod redis;
pub mod redis_cluster;
mod redis_conn;

use std::sync::Arc;

use async_trait::async_trait;
use sockudo_config::{AdapterDriver, ServerConfig};
use tokio::sync::mpsc;

use crate::connection::handle::Frame;
use crate::delta::DeltaDecision;
use crate::hub::{ChannelCounts, LocalHub};
use crate::socket_id::SocketId;

/// Failures talking to the adapter's backend.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("adapter backend unavailable: {0}")]
    Unavailable(String),
    #[error("cannot set up the adapter: {0}")]
    Setup(String),
}

/// An action on every node, and whether every live node confirmed it in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// Sockets affected, summed over the nodes that answered.
    pub count: usize,
    /// False when a peer did not answer within `adapter.request_timeout_ms`.
    pub complete: bool,
}

/// Builds the configured adapter. A horizontal driver starts connecting in the background: a
/// backend that is down at startup is retried and reported as degraded, never replaced by
/// local mode.
pub async fn build(
    config: &ServerConfig,
    metrics: Arc<crate::metrics::Metrics>,
) -> Result<Arc<dyn Adapter>, AdapterError> {
    use horizontal::transport::Transport;
    let driver = config.adapter.driver;
    if driver == AdapterDriver::Local {
        return Ok(Arc::new(local::LocalAdapter::new(Arc::new(LocalHub::new(
            metrics.delta.clone(),
            None,
        )))));
    }
    let me = horizontal::node_ref(config.node_id.as_deref());
    let inbox = horizontal::inbox_of(&me);
    let (in_tx, in_rx) = mpsc::channel(horizontal::INCOMING_CAPACITY);
    let transport: Arc<dyn Transport> = match driver {
        AdapterDriver::Redis => redis::RedisTransport::start(config, &inbox, in_tx).await?,
        AdapterDriver::RedisCluster => {
            redis_cluster::RedisClusterTransport::start(config, &inbox, in_tx)?
        }
        AdapterDriver::Nats => nats::NatsTransport::start(config, &me.name, &inbox, in_tx).await?,
        AdapterDriver::Local => unreachable!("handled above"),
    };
    tracing::info!(driver = driver.as_str(), node = %me.name, boot = me.boot, prefix = %config.adapter.prefix, "horizontal adapter starting");
    let (hub_tx, hub_rx) = mpsc::unbounded_channel();
    let hub = Arc::new(LocalHub::new(metrics.delta.clone(), Some(hub_tx)));
    Ok(Arc::new(horizontal::HorizontalAdapter::start(
        me,
        hub,
        hub_rx,
        transport,
        in_rx,
        horizontal::Settings {
            adapter: config.adapter.clone(),
            vacate_delay: std::time::Duration::from_millis(config.webhooks.vacate_delay_ms),
        },
        metrics,
    )))
}

/// Whether a backend is reachable, as shown by `/ready` and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendHealth {
    Ok,
    Degraded(String),
}

#[async_trait]
pub trait Adapter: Send + Sync {
    /// Driver name, for logs and readiness.
    fn driver(&self) -> &'static str;

    /// This node's sockets.
    fn hub(&self) -> &Arc<LocalHub>;

    /// Sends a frame to `channel`'s subscribers on every node, except one socket. Returns the
    /// number of local deliveries. Errors (nothing delivered anywhere) when the backend did not
    /// accept the message. `delta` is the publish's delta decision, taken once at this node: a
    /// horizontal adapter carries it in its envelope and every receiving node passes it unchanged
    /// to its hub's `broadcast` (never re-deciding).
    async fn broadcast(
        &self,
        app_id: &str,
        channel: &str,
        frame: &Frame,
        except: Option<SocketId>,
        delta: Option<&DeltaDecision>,
    ) -> Result<usize, AdapterError>;

    /// Sends a frame to every socket signed in as `user_id`, on every node.
    async fn send_to_user(
        &self,
        app_id: &str,
        user_id: &str,
        frame: &Frame,
    ) -> Result<usize, AdapterError>;

    /// Occupied channels and their counts, cluster-wide.
    async fn channels(&self, app_id: &str) -> Result<Vec<(String, ChannelCounts)>, AdapterError>;

    /// One channel's counts, cluster-wide (None: no subscriber anywhere).
    async fn channel_counts(
        &self,
        app_id: &str,
        channel: &str,
    ) -> Result<Option<ChannelCounts>, AdapterError>;

    /// User ids present in a presence channel, cluster-wide.
    async fn presence_user_ids(
        &self,
        app_id: &str,
        channel: &str,
    ) -> Result<Vec<String>, AdapterError>;

    /// Whether a user is still present in a channel anywhere (webhook re-checks).
    async fn has_presence_user(
        &self,
        app_id: &str,
        channel: &str,
        user_id: &str,
    ) -> Result<bool, AdapterError>;

    /// Connections of an app, cluster-wide (the per-app quota).
    async fn connection_count(&self, app_id: &str) -> Result<u64, AdapterError>;

    /// Closes every socket signed in as `user_id`, on every node.
    async fn terminate_user_connections(
        &self,
        app_id: &str,
        user_id: &str,
    ) -> Result<Completion, AdapterError>;

    fn health(&self) -> BackendHealth;

    /// Waits (at most `within`) until this node hears the other nodes: its own subscriptions are
    /// live on the backend. Startup waits for it before reporting ready, so a client routed here
    /// cannot miss an event another node publishes in that window. False on timeout.
    async fn wait_connected(&self, _within: std::time::Duration) -> bool {
        true
    }

    /// Whether the cluster-wide answers are complete right now (every peer's state is known).
    /// Query answers carry `"incomplete": true` otherwise, instead of silently under-counting.
    fn answers_complete(&self) -> bool {
        true
    }

    /// The app's connections on other nodes, for the cluster-wide per-app quota.
    fn remote_connections(&self, _app_id: &str) -> u64 {
        0
    }

    /// Whether channel and member webhooks are decided cluster-wide by the adapter (by one
    /// leader node) rather than by each node's own sockets.
    fn cluster_webhooks(&self) -> bool {
        false
    }

    /// Gives the adapter the webhook emitter (the adapter is created first).
    fn attach_webhooks(&self, _webhooks: crate::webhooks::Webhooks) {}

    /// Graceful stop: tells peers this node is leaving. Runs after sockets are closed.
    async fn shutdown(&self) {}
}
