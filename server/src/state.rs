//! Everything a request or a connection needs, shared.

use std::sync::Arc;

use sockudo_config::ServerConfig;

use crate::adapter::Adapter;
use crate::apps::AppRegistry;
use crate::cache::Cache;
use crate::delta::DeltaService;
use crate::hub::LocalHub;
use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;
use crate::shutdown::Lifecycle;
use crate::webhooks::Webhooks;

pub struct ServerState {
    pub config: ServerConfig,
    pub apps: Arc<AppRegistry>,
    pub adapter: Arc<dyn Adapter>,
    pub cache: Arc<dyn Cache>,
    pub limiter: Arc<dyn RateLimiter>,
    pub metrics: Arc<Metrics>,
    pub webhooks: Webhooks,
    pub lifecycle: Arc<Lifecycle>,
    pub delta: Arc<DeltaService>,
}

impl ServerState {
    pub fn hub(&self) -> &Arc<LocalHub> {
        self.adapter.hub()
    }
}
