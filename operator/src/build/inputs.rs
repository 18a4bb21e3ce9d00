//! Everything the pure builders need besides the SockudoCluster itself: data of the referenced
//! Secrets, credentials generated earlier, which optional APIs the cluster serves, and the
//! addresses the operator itself uses to reach managed backends.

use std::collections::BTreeMap;

use crate::crd::SockudoCluster;

/// Data of one Secret, key to bytes.
pub type SecretData = BTreeMap<String, Vec<u8>>;

/// Optional APIs found by discovery. Objects of a missing API are skipped and reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// `policy/v1` PodDisruptionBudget (Kubernetes 1.21+).
    pub pdb_v1: bool,
    /// `autoscaling/v2` HorizontalPodAutoscaler (Kubernetes 1.23+).
    pub hpa_v2: bool,
    /// `monitoring.coreos.com/v1` ServiceMonitor (the Prometheus Operator's CRD).
    pub service_monitor: bool,
    /// The native `preStop` `sleep` action (Kubernetes 1.29+). Older API servers refuse the
    /// field, so the hook is left out there (the server still drains on SIGTERM).
    pub native_sleep: bool,
    /// A StatefulSet's `persistentVolumeClaimRetentionPolicy` (on by default from Kubernetes
    /// 1.27). Older API servers refuse the field, so it is left out there and reported.
    pub pvc_retention: bool,
}

impl Capabilities {
    /// Every optional API present: what a current cluster with the Prometheus Operator has.
    pub const ALL: Capabilities = Capabilities {
        pdb_v1: true,
        hpa_v2: true,
        service_monitor: true,
        native_sleep: true,
        pvc_retention: true,
    };
}

/// Inputs of one build.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub cluster: &'a SockudoCluster,
    /// Data of the Secrets the spec references (apps, external backends), by name. A missing
    /// Secret is reported by the controller before building.
    pub secrets: &'a BTreeMap<String, SecretData>,
    /// Passwords and tokens of managed backends, by auth Secret name: read back from the
    /// existing Secret, or freshly generated on first build.
    pub generated: &'a BTreeMap<String, String>,
    pub capabilities: Capabilities,
}

impl Inputs<'_> {
    pub fn secret_value(&self, secret: &str, key: &str) -> Option<String> {
        self.secrets
            .get(secret)
            .and_then(|d| d.get(key))
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}
