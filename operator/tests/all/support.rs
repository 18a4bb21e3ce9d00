//! Loading the example manifests and building fixed inputs for them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use sockudo_operator::build::{Capabilities, Inputs, SecretData};
use sockudo_operator::crd::{ManagedRedis, SockudoCluster};

pub fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// Every example file name, sorted.
pub fn example_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    names
}

/// The documents of an example file as JSON values.
pub fn documents(name: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(examples_dir().join(name)).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde_json::Value::deserialize(doc).unwrap_or_else(|e| panic!("{name}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// The SockudoCluster of an example as it would come back from the API server.
pub struct Example {
    pub cluster: SockudoCluster,
    pub secrets: BTreeMap<String, SecretData>,
    pub generated: BTreeMap<String, String>,
}

impl Example {
    pub fn load(name: &str) -> Example {
        let mut cluster = None;
        let mut secrets = BTreeMap::new();
        for doc in documents(name) {
            match doc["kind"].as_str() {
                Some("SockudoCluster") => {
                    let mut c: SockudoCluster =
                        serde_json::from_value(doc).unwrap_or_else(|e| panic!("{name}: {e}"));
                    c.metadata.namespace = Some("default".into());
                    c.metadata.uid = Some("00000000-0000-0000-0000-000000000001".into());
                    cluster = Some(c);
                }
                Some("Secret") => {
                    let data: SecretData = doc["stringData"]
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap().as_bytes().to_vec()))
                        .collect();
                    secrets.insert(doc["metadata"]["name"].as_str().unwrap().to_string(), data);
                }
                other => panic!("{name}: unexpected kind {other:?}"),
            }
        }
        let cluster = cluster.unwrap_or_else(|| panic!("{name}: no SockudoCluster"));
        // Fixed credentials for every managed backend, so snapshots are stable.
        let generated = ["redis", "cache-redis", "ratelimiter-redis"]
            .into_iter()
            .flat_map(|slug| [slug.to_string(), format!("{slug}-cluster")])
            .map(|component| {
                format!(
                    "{}-{component}-auth",
                    cluster.metadata.name.as_deref().unwrap()
                )
            })
            .chain([format!(
                "{}-nats-auth",
                cluster.metadata.name.as_deref().unwrap()
            )])
            .map(|name| (name, "generated-test-password".to_string()))
            .collect();
        Example {
            cluster,
            secrets,
            generated,
        }
    }

    /// The spec's managed Redis, which the example must have.
    pub fn managed_redis(&mut self) -> &mut ManagedRedis {
        self.cluster
            .spec
            .redis
            .as_mut()
            .and_then(|r| r.managed.as_mut())
            .expect("a managed Redis")
    }

    pub fn inputs(&self) -> Inputs<'_> {
        Inputs {
            cluster: &self.cluster,
            secrets: &self.secrets,
            generated: &self.generated,
            capabilities: Capabilities::ALL,
        }
    }
}
