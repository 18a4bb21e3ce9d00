//! Which optional APIs the cluster serves. A missing one is skipped and reported in status, not
//! retried as an error (a 1.20 API server has no policy/v1 nor autoscaling/v2).

use kube::Client;
use tracing::debug;

use crate::build::Capabilities;

async fn serves(client: &Client, group_version: &str, resource: &str) -> bool {
    match client.list_api_group_resources(group_version).await {
        Ok(list) => list.resources.iter().any(|r| r.name == resource),
        Err(e) => {
            debug!(group_version, error = %e, "optional API not served");
            false
        }
    }
}

pub async fn capabilities(client: &Client) -> Capabilities {
    Capabilities {
        pdb_v1: serves(client, "policy/v1", "poddisruptionbudgets").await,
        hpa_v2: serves(client, "autoscaling/v2", "horizontalpodautoscalers").await,
        service_monitor: serves(client, "monitoring.coreos.com/v1", "servicemonitors").await,
    }
}
