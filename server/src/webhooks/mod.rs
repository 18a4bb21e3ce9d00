//! Pusher-format webhooks: `{time_ms, events}` signed with the app secret, batched per app,
//! retried with backoff. `channel_vacated` and `member_removed` wait `vacate_delay_ms` and are
//! re-checked, so a quick leave-and-rejoin sends nothing, as on Pusher.

mod dedup;
mod sender;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use sockudo_config::WebhookEvent;
use sockudo_config::server::WebhooksConfig;
use tokio::sync::mpsc;

use crate::adapter::Adapter;
use crate::apps::{App, AppRegistry};
use crate::cache::Cache;
use crate::metrics::Metrics;

/// One event in a webhook body.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Event {
    pub name: &'static str,
    pub channel: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_count: Option<usize>,
}

impl Event {
    fn new(kind: WebhookEvent, channel: &str) -> Self {
        Event {
            name: name_of(kind),
            channel: channel.to_string(),
            user_id: None,
            event: None,
            data: None,
            socket_id: None,
            subscription_count: None,
        }
    }

    fn kind(&self) -> WebhookEvent {
        match self.name {
            "channel_occupied" => WebhookEvent::ChannelOccupied,
            "channel_vacated" => WebhookEvent::ChannelVacated,
            "member_added" => WebhookEvent::MemberAdded,
            "member_removed" => WebhookEvent::MemberRemoved,
            "client_event" => WebhookEvent::ClientEvent,
            "cache_miss" => WebhookEvent::CacheMiss,
            _ => WebhookEvent::SubscriptionCount,
        }
    }
}

fn name_of(kind: WebhookEvent) -> &'static str {
    match kind {
        WebhookEvent::ChannelOccupied => "channel_occupied",
        WebhookEvent::ChannelVacated => "channel_vacated",
        WebhookEvent::MemberAdded => "member_added",
        WebhookEvent::MemberRemoved => "member_removed",
        WebhookEvent::ClientEvent => "client_event",
        WebhookEvent::CacheMiss => "cache_miss",
        WebhookEvent::SubscriptionCount => "subscription_count",
    }
}

/// Whether any of the app's endpoints wants this kind of event for this channel.
fn wanted(app: &App, kind: WebhookEvent, channel: &str) -> bool {
    app.webhooks.iter().any(|w| {
        (w.event_types.is_empty() || w.event_types.contains(&kind))
            && w.channel_prefix
                .as_deref()
                .is_none_or(|p| channel.starts_with(p))
    })
}

struct Queued {
    app_id: String,
    event: Event,
}

/// A channel or member transition decided cluster-wide by a horizontal adapter's webhook
/// leader (see `adapter::horizontal::leader`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterEvent {
    Occupied,
    Vacated,
    MemberAdded(String),
    MemberRemoved(String),
    SubscriptionCount(usize),
}

/// Handle used by connections and the HTTP API to emit webhook events.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

struct Inner {
    tx: mpsc::Sender<Queued>,
    /// Cluster events waiting for their claim in the shared cache (in order); None without a
    /// shared cache.
    claims: Option<mpsc::Sender<(String, String, ClusterEvent)>>,
    apps: Arc<AppRegistry>,
    config: WebhooksConfig,
    adapter: Arc<dyn Adapter>,
    /// Channels / members announced as occupied / added and not yet as vacated / removed.
    occupied: Mutex<HashSet<(String, String)>>,
    members: Mutex<HashSet<(String, String, String)>>,
}

impl Webhooks {
    /// Starts the batching task; it runs until the returned handle and its clones are dropped.
    /// `cache`: with a shared one, cluster events are de-duplicated in it (see `dedup`).
    pub fn start(
        config: WebhooksConfig,
        apps: Arc<AppRegistry>,
        adapter: Arc<dyn Adapter>,
        metrics: Arc<Metrics>,
        cache: Arc<dyn Cache>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(10_000);
        tokio::spawn(sender::run(
            rx,
            config.clone(),
            apps.clone(),
            metrics.clone(),
        ));
        let claims = dedup::Claims::new(cache).map(|claims| {
            let (ctx, crx) = mpsc::channel(10_000);
            (ctx, crx, claims)
        });
        let (claims_tx, claimer) = match claims {
            Some((ctx, crx, claims)) => (Some(ctx), Some((crx, claims))),
            None => (None, None),
        };
        let webhooks = Webhooks {
            inner: Arc::new(Inner {
                tx,
                claims: claims_tx,
                apps,
                config,
                adapter,
                occupied: Mutex::default(),
                members: Mutex::default(),
            }),
        };
        if let Some((mut crx, claims)) = claimer {
            // A weak handle: the task ends when the last Webhooks is dropped.
            let weak = Arc::downgrade(&webhooks.inner);
            tokio::spawn(async move {
                while let Some((app, channel, event)) = crx.recv().await {
                    let Some(inner) = weak.upgrade() else { return };
                    if claims.claim(&app, &channel, &event).await {
                        Webhooks { inner }.send_cluster_event(&app, &channel, event);
                    } else {
                        metrics.webhooks.with_label_values(&["deduplicated"]).inc();
                        tracing::debug!(
                            app,
                            channel,
                            ?event,
                            "webhook already sent by another node"
                        );
                    }
                }
            });
        }
        webhooks
    }

    fn enqueue(&self, app: &App, event: Event) {
        if self
            .inner
            .tx
            .try_send(Queued {
                app_id: app.id.clone(),
                event,
            })
            .is_err()
        {
            tracing::warn!(app_id = %app.id, "webhook queue full; event dropped");
        }
    }

    /// Channel and member events are decided by the adapter's leader in a cluster; the
    /// per-node calls below then do nothing.
    fn cluster_decides(&self) -> bool {
        self.inner.adapter.cluster_webhooks()
    }

    /// Sends a transition the cluster's webhook leader decided (already deduplicated and
    /// delayed by it), once it is claimed in the shared cache if there is one.
    pub fn cluster_event(&self, app_id: &str, channel: &str, event: ClusterEvent) {
        match &self.inner.claims {
            Some(claims) => {
                if claims
                    .try_send((app_id.to_string(), channel.to_string(), event))
                    .is_err()
                {
                    tracing::warn!(app_id, "webhook claim queue full; event dropped");
                }
            }
            None => self.send_cluster_event(app_id, channel, event),
        }
    }

    fn send_cluster_event(&self, app_id: &str, channel: &str, event: ClusterEvent) {
        let Some(app) = self.inner.apps.by_id(app_id) else {
            return;
        };
        let (kind, user_id, count) = match event {
            ClusterEvent::Occupied => (WebhookEvent::ChannelOccupied, None, None),
            ClusterEvent::Vacated => (WebhookEvent::ChannelVacated, None, None),
            ClusterEvent::MemberAdded(u) => (WebhookEvent::MemberAdded, Some(u), None),
            ClusterEvent::MemberRemoved(u) => (WebhookEvent::MemberRemoved, Some(u), None),
            ClusterEvent::SubscriptionCount(n) => (WebhookEvent::SubscriptionCount, None, Some(n)),
        };
        if wanted(&app, kind, channel) {
            let mut e = Event::new(kind, channel);
            e.user_id = user_id;
            e.subscription_count = count;
            self.enqueue(&app, e);
        }
    }

    pub fn channel_occupied(&self, app: &App, channel: &str) {
        if self.cluster_decides() {
            return;
        }
        if !wanted(app, WebhookEvent::ChannelOccupied, channel)
            && !wanted(app, WebhookEvent::ChannelVacated, channel)
        {
            return;
        }
        let fresh = self
            .inner
            .occupied
            .lock()
            .expect("webhook lock")
            .insert((app.id.clone(), channel.to_string()));
        if fresh && wanted(app, WebhookEvent::ChannelOccupied, channel) {
            self.enqueue(app, Event::new(WebhookEvent::ChannelOccupied, channel));
        }
    }

    /// Sent after the delay if the channel is still empty then.
    pub fn channel_vacated(&self, app: &App, channel: &str) {
        if self.cluster_decides() {
            return;
        }
        if !wanted(app, WebhookEvent::ChannelOccupied, channel)
            && !wanted(app, WebhookEvent::ChannelVacated, channel)
        {
            return;
        }
        let this = self.clone();
        let app = app.clone();
        let channel = channel.to_string();
        let delay = Duration::from_millis(self.inner.config.vacate_delay_ms);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            match this.inner.adapter.channel_counts(&app.id, &channel).await {
                Ok(None) => {}
                Ok(Some(_)) => return,
                Err(e) => {
                    tracing::warn!(error = %e, %channel, "cannot re-check vacated channel; sending anyway");
                }
            }
            let was = this
                .inner
                .occupied
                .lock()
                .expect("webhook lock")
                .remove(&(app.id.clone(), channel.clone()));
            if was && wanted(&app, WebhookEvent::ChannelVacated, &channel) {
                this.enqueue(&app, Event::new(WebhookEvent::ChannelVacated, &channel));
            }
        });
    }

    pub fn member_added(&self, app: &App, channel: &str, user_id: &str) {
        if self.cluster_decides() {
            return;
        }
        if !wanted(app, WebhookEvent::MemberAdded, channel)
            && !wanted(app, WebhookEvent::MemberRemoved, channel)
        {
            return;
        }
        let fresh = self.inner.members.lock().expect("webhook lock").insert((
            app.id.clone(),
            channel.to_string(),
            user_id.to_string(),
        ));
        if fresh && wanted(app, WebhookEvent::MemberAdded, channel) {
            let mut e = Event::new(WebhookEvent::MemberAdded, channel);
            e.user_id = Some(user_id.to_string());
            self.enqueue(app, e);
        }
    }

    /// Sent after the delay if the user is still absent then.
    pub fn member_removed(&self, app: &App, channel: &str, user_id: &str) {
        if self.cluster_decides() {
            return;
        }
        if !wanted(app, WebhookEvent::MemberAdded, channel)
            && !wanted(app, WebhookEvent::MemberRemoved, channel)
        {
            return;
        }
        let this = self.clone();
        let app = app.clone();
        let channel = channel.to_string();
        let user_id = user_id.to_string();
        let delay = Duration::from_millis(self.inner.config.vacate_delay_ms);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Ok(true) = this
                .inner
                .adapter
                .has_presence_user(&app.id, &channel, &user_id)
                .await
            {
                return;
            }
            let was = this.inner.members.lock().expect("webhook lock").remove(&(
                app.id.clone(),
                channel.clone(),
                user_id.clone(),
            ));
            if was && wanted(&app, WebhookEvent::MemberRemoved, &channel) {
                let mut e = Event::new(WebhookEvent::MemberRemoved, &channel);
                e.user_id = Some(user_id);
                this.enqueue(&app, e);
            }
        });
    }

    pub fn client_event(
        &self,
        app: &App,
        channel: &str,
        event: &str,
        data: &str,
        socket_id: &str,
        user_id: Option<&str>,
    ) {
        if wanted(app, WebhookEvent::ClientEvent, channel) {
            let mut e = Event::new(WebhookEvent::ClientEvent, channel);
            e.event = Some(event.to_string());
            e.data = Some(data.to_string());
            e.socket_id = Some(socket_id.to_string());
            e.user_id = user_id.map(String::from);
            self.enqueue(app, e);
        }
    }

    pub fn cache_miss(&self, app: &App, channel: &str) {
        if wanted(app, WebhookEvent::CacheMiss, channel) {
            self.enqueue(app, Event::new(WebhookEvent::CacheMiss, channel));
        }
    }

    pub fn subscription_count(&self, app: &App, channel: &str, count: usize) {
        if self.cluster_decides() {
            return;
        }
        if wanted(app, WebhookEvent::SubscriptionCount, channel) {
            let mut e = Event::new(WebhookEvent::SubscriptionCount, channel);
            e.subscription_count = Some(count);
            self.enqueue(app, e);
        }
    }
}
