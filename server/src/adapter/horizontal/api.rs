//! The [`Adapter`] face of the core: publishes, cluster-wide queries from the replicated
//! view, and the terminate request to every node.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::oneshot;

use super::envelope::{Envelope, Request};
use super::transport::{self, Topic};
use super::{Cmd, HorizontalAdapter, Pending};
use crate::adapter::{Adapter, AdapterError, BackendHealth, Completion};
use crate::connection::handle::Frame;
use crate::delta::DeltaDecision;
use crate::hub::{ChannelCounts, LocalHub};
use crate::socket_id::SocketId;
use crate::webhooks::Webhooks;

#[async_trait]
impl Adapter for HorizontalAdapter {
    fn driver(&self) -> &'static str {
        self.core.driver()
    }

    fn hub(&self) -> &Arc<LocalHub> {
        &self.core.hub
    }

    async fn broadcast(
        &self,
        app_id: &str,
        channel: &str,
        frame: &Frame,
        except: Option<SocketId>,
        delta: Option<&DeltaDecision>,
    ) -> Result<usize, AdapterError> {
        let core = &self.core;
        let env = Envelope::Event {
            from: core.me.clone(),
            app: app_id.to_string(),
            channel: Some(channel.to_string()),
            user: None,
            except: except.map(|s| s.to_string()),
            frame: frame.as_str().to_string(),
            delta: delta.cloned(),
        };
        let bucket = transport::bucket_of(app_id, channel, core.transport.buckets());
        core.publish_event(Topic::Events(bucket), env).await?;
        Ok(core
            .hub
            .deliver_to_channel(app_id, channel, frame, except, delta))
    }

    async fn send_to_user(
        &self,
        app_id: &str,
        user_id: &str,
        frame: &Frame,
    ) -> Result<usize, AdapterError> {
        let core = &self.core;
        let env = Envelope::Event {
            from: core.me.clone(),
            app: app_id.to_string(),
            channel: None,
            user: Some(user_id.to_string()),
            except: None,
            frame: frame.as_str().to_string(),
            delta: None,
        };
        let bucket = transport::bucket_of(app_id, user_id, core.transport.buckets());
        core.publish_event(Topic::Events(bucket), env).await?;
        Ok(core.hub.deliver_to_user(app_id, user_id, frame))
    }

    async fn channels(&self, app_id: &str) -> Result<Vec<(String, ChannelCounts)>, AdapterError> {
        Ok(self
            .core
            .cluster_channels(app_id)
            .into_iter()
            .map(|(name, (count, users))| {
                (
                    name,
                    ChannelCounts {
                        subscription_count: count,
                        user_count: users.map(|u| u.len()),
                    },
                )
            })
            .collect())
    }

    async fn channel_counts(
        &self,
        app_id: &str,
        channel: &str,
    ) -> Result<Option<ChannelCounts>, AdapterError> {
        let mut count = self
            .core
            .hub
            .existing(app_id)
            .and_then(|h| h.channel_counts(channel))
            .map_or(0, |c| c.subscription_count);
        let users = self.presence_user_ids(app_id, channel).await?;
        {
            let peers = self.core.peers.lock().expect("lock");
            for p in peers.map.values() {
                count += p
                    .state
                    .apps
                    .get(app_id)
                    .and_then(|a| a.channels.get(channel))
                    .map_or(0, |c| c.count);
            }
        }
        Ok((count > 0).then(|| ChannelCounts {
            subscription_count: count,
            user_count: crate::channel::ChannelType::of(channel)
                .is_presence()
                .then_some(users.len()),
        }))
    }

    async fn presence_user_ids(
        &self,
        app_id: &str,
        channel: &str,
    ) -> Result<Vec<String>, AdapterError> {
        let mut users: HashSet<Arc<str>> = self
            .core
            .hub
            .existing(app_id)
            .map(|h| {
                h.local_members(channel)
                    .into_iter()
                    .map(|(u, _)| u)
                    .collect()
            })
            .unwrap_or_default();
        let peers = self.core.peers.lock().expect("lock");
        for p in peers.map.values() {
            if let Some(c) = p
                .state
                .apps
                .get(app_id)
                .and_then(|a| a.channels.get(channel))
            {
                users.extend(c.members.keys().cloned());
            }
        }
        Ok(users.into_iter().map(|u| u.to_string()).collect())
    }

    async fn has_presence_user(
        &self,
        app_id: &str,
        channel: &str,
        user_id: &str,
    ) -> Result<bool, AdapterError> {
        Ok(self
            .presence_user_ids(app_id, channel)
            .await?
            .iter()
            .any(|u| u == user_id))
    }

    async fn connection_count(&self, app_id: &str) -> Result<u64, AdapterError> {
        let local = self
            .core
            .hub
            .existing(app_id)
            .map_or(0, |h| h.connection_count());
        Ok(local + self.remote_connections(app_id))
    }

    async fn terminate_user_connections(
        &self,
        app_id: &str,
        user_id: &str,
    ) -> Result<Completion, AdapterError> {
        let core = &self.core;
        let started = Instant::now();
        let id = core.next_id.fetch_add(1, Ordering::Relaxed);
        let waiting: HashSet<Arc<str>> = core
            .peers
            .lock()
            .expect("lock")
            .map
            .keys()
            .cloned()
            .collect();
        let (done_tx, done_rx) = oneshot::channel();
        let expected = waiting.len();
        core.pending.lock().expect("lock").insert(
            id,
            Pending {
                waiting,
                count: 0,
                done: Some(done_tx),
            },
        );
        let env = Envelope::Request {
            from: core.me.clone(),
            id,
            request: Request::TerminateUser {
                app: app_id.to_string(),
                user: user_id.to_string(),
            },
        };
        let published = core.publish(&Topic::Control, &env).await;
        let local = core.terminate_local(app_id, user_id);
        let answered = if published.is_ok() && expected > 0 {
            tokio::time::timeout(core.timeout(), done_rx).await.is_ok()
        } else {
            expected == 0
        };
        let pending = core.pending.lock().expect("lock").remove(&id);
        let remote = pending.as_ref().map_or(0, |p| p.count);
        core.metrics
            .adapter_request_seconds
            .with_label_values(&[core.driver()])
            .observe(started.elapsed().as_secs_f64());
        let complete = answered && published.is_ok();
        if !complete {
            core.metrics
                .adapter_timeouts
                .with_label_values(&[core.driver()])
                .inc();
            tracing::warn!(
                app_id,
                user_id,
                expected,
                missing = pending.map_or(0, |p| p.waiting.len()),
                "terminate_connections: some nodes did not answer in time"
            );
        }
        Ok(Completion {
            count: local + remote,
            complete,
        })
    }

    fn health(&self) -> BackendHealth {
        if self.core.healthy.load(Ordering::Acquire) {
            BackendHealth::Ok
        } else {
            let e = self
                .core
                .transport
                .last_error()
                .or_else(|| self.core.last_error.lock().expect("lock").clone());
            BackendHealth::Degraded(e.unwrap_or_else(|| "backend unreachable".into()))
        }
    }

    async fn wait_connected(&self, within: Duration) -> bool {
        let mut up = self.core.ever_up.subscribe();
        tokio::time::timeout(within, up.wait_for(|up| *up))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    fn answers_complete(&self) -> bool {
        self.core.healthy.load(Ordering::Acquire)
            && self
                .core
                .peers
                .lock()
                .expect("lock")
                .map
                .values()
                .all(|p| p.synced)
    }

    fn cluster_webhooks(&self) -> bool {
        true
    }

    fn attach_webhooks(&self, webhooks: Webhooks) {
        let _ = self.core.webhooks.set(webhooks);
    }

    fn remote_connections(&self, app_id: &str) -> u64 {
        let peers = self.core.peers.lock().expect("lock");
        peers
            .map
            .values()
            .filter_map(|p| p.state.apps.get(app_id))
            .map(|a| a.connections)
            .sum()
    }

    async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.core.cmds.send(Cmd::Bye(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), rx).await;
        }
    }
}
