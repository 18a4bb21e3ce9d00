//! What every reconcile shares: the client, configuration, event recorder, backoff state, health
//! and metrics, and the discovered optional APIs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{EventType, Recorder, Reporter};
use tokio::sync::Mutex;
use tracing::warn;

use super::backoff::Backoff;
use super::discovery;
use super::health::Health;
use super::leader::LeaseConfig;
use super::reconcile::{event, event_with_action};
use crate::build::Capabilities;
use crate::build::names::MANAGER;

/// How long discovered APIs are trusted before asking again (a CRD such as ServiceMonitor may be
/// installed while the operator runs).
const DISCOVERY_TTL: Duration = Duration::from_secs(60);

/// How the controller runs.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Watch only this namespace (namespace-scoped RBAC); `None`: every namespace.
    pub namespace: Option<String>,
    /// Where to serve `/healthz`, `/readyz` and `/metrics`; `None`: not served.
    pub health_addr: Option<SocketAddr>,
    /// Lease-based leader election; `None`: this replica always leads.
    pub leader: Option<LeaseConfig>,
    /// Identity of this replica in Events (its pod name).
    pub instance: Option<String>,
    /// Addresses the operator itself uses to reach managed backends (Redis Cluster bootstrap and
    /// health checks), from the in-cluster `host:port` to another `host:port`. Tests point them at
    /// local `redis-server` / `nats-server` processes.
    pub backend_addresses: BTreeMap<String, String>,
}

impl Config {
    /// The address to dial for the in-cluster `address`.
    pub fn backend_address(&self, address: &str) -> String {
        self.backend_addresses
            .get(address)
            .cloned()
            .unwrap_or_else(|| address.to_string())
    }
}

pub struct Context {
    pub client: Client,
    pub config: Config,
    pub recorder: Recorder,
    pub backoff: Backoff,
    pub health: Arc<Health>,
    capabilities: Mutex<Option<(Instant, Capabilities)>>,
}

impl Context {
    pub fn new(client: Client, config: Config, health: Arc<Health>) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: config.instance.clone(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            config,
            backoff: Backoff::default(),
            health,
            capabilities: Mutex::new(None),
        }
    }

    pub async fn capabilities(&self) -> Capabilities {
        let mut cached = self.capabilities.lock().await;
        if let Some((at, caps)) = *cached
            && at.elapsed() < DISCOVERY_TTL
        {
            return caps;
        }
        let caps = discovery::capabilities(&self.client).await;
        *cached = Some((Instant::now(), caps));
        caps
    }

    /// Records the Event of a condition transition (its action is the condition type).
    pub async fn event_for_condition(
        &self,
        reference: &ObjectReference,
        type_: EventType,
        condition: &str,
        reason: &str,
        note: &str,
    ) {
        let event = event_with_action(type_, &format!("Set{condition}"), reason, note);
        if let Err(e) = self.recorder.publish(&event, reference).await {
            warn!(error = %e, reason, "cannot record Event");
        }
    }

    /// Records an Event; failing to record one never fails a reconcile.
    pub async fn event(
        &self,
        reference: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: &str,
    ) {
        if let Err(e) = self
            .recorder
            .publish(&event(type_, reason, note), reference)
            .await
        {
            warn!(error = %e, reason, "cannot record Event");
        }
    }
}
