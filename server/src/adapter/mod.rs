//! How nodes share channels. The adapter answers cluster-wide questions and fans publishes out
//! to every node; each node's [`LocalHub`](crate::hub::LocalHub) does its local delivery.
//!
//! A horizontal adapter (redis, redis-cluster, nats: later issues) implements this trait by
//! delivering locally through the hub and relaying to peers; queries gather peers' answers.

pub mod local;

use std::sync::Arc;

use async_trait::async_trait;

use crate::connection::handle::Frame;
use crate::delta::DeltaDecision;
use crate::hub::{ChannelCounts, LocalHub};
use crate::socket_id::SocketId;

/// Failures talking to the adapter's backend.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("adapter backend unavailable: {0}")]
    Unavailable(String),
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
    /// number of local deliveries. `delta` is the publish's delta decision, taken once at this
    /// node: a horizontal adapter carries it in its envelope and every receiving node passes it
    /// unchanged to its hub's `broadcast` (never re-deciding).
    fn broadcast(
        &self,
        app_id: &str,
        channel: &str,
        frame: &Frame,
        except: Option<SocketId>,
        delta: Option<&DeltaDecision>,
    ) -> Result<usize, AdapterError>;

    /// Sends a frame to every socket signed in as `user_id`, on every node.
    fn send_to_user(
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
    ) -> Result<usize, AdapterError>;

    fn health(&self) -> BackendHealth;
}
