//! The pod-template hash: a change rolls the server pods. It covers the server settings and the
//! backend credentials, and deliberately not the apps or their Secrets (the server reloads those
//! from its mounted files, so rotating an app secret drops no connection).

use sha2::{Digest, Sha256};

use super::credentials;
use super::inputs::Inputs;
use super::server_config;
use super::topology::Topology;

/// Pod-template annotation carrying the hash.
pub const CONFIG_HASH_ANNOTATION: &str = "sockudo.io/config-hash";

pub fn pod_template_hash(inputs: &Inputs) -> String {
    let mut hasher = Sha256::new();
    let settings = server_config::render_settings(inputs);
    hasher.update(serde_json::to_vec(&settings).expect("ServerConfig serialises"));
    let topology = Topology::of(&inputs.cluster.spec);
    let mut mounts: Vec<_> = topology
        .used_redis()
        .iter()
        .flat_map(|i| credentials::redis(i, inputs).mounts)
        .collect();
    if let Some(nats) = topology.nats {
        mounts.extend(credentials::nats(nats, inputs).mounts);
    }
    for mount in mounts {
        hasher.update(mount.secret.as_bytes());
        for (key, _) in &mount.items {
            hasher.update(key.as_bytes());
            // A managed backend's password lives in `generated`, an external one's in `secrets`.
            let value = inputs
                .generated
                .get(&mount.secret)
                .map(|s| s.as_bytes().to_vec())
                .or_else(|| {
                    inputs
                        .secrets
                        .get(&mount.secret)
                        .and_then(|d| d.get(key).cloned())
                })
                .unwrap_or_default();
            hasher.update(Sha256::digest(&value));
        }
    }
    let digest = hasher.finalize();
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}
