//! The single-node adapter: the local hub is the whole cluster.

use std::sync::Arc;

use async_trait::async_trait;

use crate::adapter::{Adapter, AdapterError, BackendHealth, Completion};
use crate::connection::handle::Frame;
use crate::delta::DeltaDecision;
use crate::hub::{ChannelCounts, LocalHub};
use crate::protocol::ErrorCode;
use crate::socket_id::SocketId;

pub struct LocalAdapter {
    hub: Arc<LocalHub>,
}

impl LocalAdapter {
    pub fn new(hub: Arc<LocalHub>) -> Self {
        LocalAdapter { hub }
    }
}

#[async_trait]
impl Adapter for LocalAdapter {
    fn driver(&self) -> &'static str {
        "local"
    }

    fn hub(&self) -> &Arc<LocalHub> {
        &self.hub
    }

    async fn broadcast(
        &self,
        app_id: &str,
        channel: &str,
        frame: &Frame,
        except: Option<SocketId>,
        delta: Option<&DeltaDecision>,
    ) -> Result<usize, AdapterError> {
        Ok(self
            .hub
            .deliver_to_channel(app_id, channel, frame, except, delta))
    }

    async fn send_to_user(
        &self,
        app_id: &str,
        user_id: &str,
        frame: &Frame,
    ) -> Result<usize, AdapterError> {
        Ok(self.hub.deliver_to_user(app_id, user_id, frame))
    }

    async fn channels(&self, app_id: &str) -> Result<Vec<(String, ChannelCounts)>, AdapterError> {
        Ok(self
            .hub
            .existing(app_id)
            .map(|h| h.channels())
            .unwrap_or_default())
    }

    async fn channel_counts(
        &self,
        app_id: &str,
        channel: &str,
    ) -> Result<Option<ChannelCounts>, AdapterError> {
        Ok(self
            .hub
            .existing(app_id)
            .and_then(|h| h.channel_counts(channel)))
    }

    async fn presence_user_ids(
        &self,
        app_id: &str,
        channel: &str,
    ) -> Result<Vec<String>, AdapterError> {
        Ok(self
            .hub
            .existing(app_id)
            .map(|h| h.presence_user_ids(channel))
            .unwrap_or_default())
    }

    async fn has_presence_user(
        &self,
        app_id: &str,
        channel: &str,
        user_id: &str,
    ) -> Result<bool, AdapterError> {
        Ok(self
            .hub
            .existing(app_id)
            .is_some_and(|h| h.has_presence_user(channel, user_id)))
    }

    async fn connection_count(&self, app_id: &str) -> Result<u64, AdapterError> {
        Ok(self
            .hub
            .existing(app_id)
            .map_or(0, |h| h.connection_count()))
    }

    async fn terminate_user_connections(
        &self,
        app_id: &str,
        user_id: &str,
    ) -> Result<Completion, AdapterError> {
        let conns = self
            .hub
            .existing(app_id)
            .map(|h| h.user_connections(user_id))
            .unwrap_or_default();
        for c in &conns {
            c.close(ErrorCode::Unauthorized);
        }
        Ok(Completion {
            count: conns.len(),
            complete: true,
        })
    }

    fn health(&self) -> BackendHealth {
        BackendHealth::Ok
    }
}
