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

/// True when the API server is at least 1.`minor` (unknown versions count as current).
async fn at_least(client: &Client, minor: u32) -> bool {
    match client.apiserver_version().await {
        Ok(info) => parse_minor(&info.major, &info.minor).is_none_or(|m| m >= minor),
        Err(e) => {
            debug!(error = %e, "cannot read the API server version");
            true
        }
    }
}

/// `("1", "20+")` -> 20 (managed clusters append `+` to the minor).
fn parse_minor(major: &str, minor: &str) -> Option<u32> {
    if major.trim_end_matches('+') != "1" {
        return None;
    }
    minor.trim_end_matches('+').parse().ok()
}

pub async fn capabilities(client: &Client) -> Capabilities {
    Capabilities {
        pdb_v1: serves(client, "policy/v1", "poddisruptionbudgets").await,
        hpa_v2: serves(client, "autoscaling/v2", "horizontalpodautoscalers").await,
        service_monitor: serves(client, "monitoring.coreos.com/v1", "servicemonitors").await,
        native_sleep: at_least(client, 29).await,
        pvc_retention: at_least(client, 27).await,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_minor;

    #[test]
    fn minor_versions() {
        assert_eq!(parse_minor("1", "20"), Some(20));
        assert_eq!(parse_minor("1", "29+"), Some(29));
        assert_eq!(parse_minor("2", "0"), None);
        assert_eq!(parse_minor("1", ""), None);
    }
}
