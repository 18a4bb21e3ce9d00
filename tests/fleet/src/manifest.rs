//! A manifest file as `kubectl apply -f` would take it: Secrets plus one SockudoCluster. Loaded
//! into what the operator's builders take, as if read back from an API server.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use serde::Deserialize;
use sockudo_operator::build::credentials::nats_auth_secret;
use sockudo_operator::build::topology::Topology;
use sockudo_operator::build::{Capabilities, Inputs, SecretData};
use sockudo_operator::crd::SockudoCluster;

use crate::error::{FleetError, Result};

/// The SockudoCluster of a manifest, its Secrets, and the credentials the operator would generate
/// for its managed backends.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Where it came from, for messages.
    pub origin: String,
    pub cluster: SockudoCluster,
    pub secrets: BTreeMap<String, SecretData>,
    /// Auth Secret name to password/token, fresh for every load (like a first reconcile).
    pub generated: BTreeMap<String, String>,
}

impl Manifest {
    pub fn from_file(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path).map_err(|source| FleetError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Manifest::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> Result<Manifest> {
        let err = |message: String| FleetError::Manifest {
            origin: origin.to_string(),
            message,
        };
        let mut cluster: Option<SockudoCluster> = None;
        let mut secrets = BTreeMap::new();
        for doc in serde_yaml::Deserializer::from_str(text) {
            let value = serde_json::Value::deserialize(doc).map_err(|e| err(e.to_string()))?;
            if value.is_null() {
                continue;
            }
            match value["kind"].as_str() {
                Some("SockudoCluster") if cluster.is_some() => {
                    return Err(err("more than one SockudoCluster".into()));
                }
                Some("SockudoCluster") => {
                    let mut c: SockudoCluster = serde_json::from_value(value)
                        .map_err(|e| err(format!("SockudoCluster: {e}")))?;
                    // What an API server adds: the builders need a namespace and a uid (owner refs).
                    c.metadata.namespace.get_or_insert_with(|| "default".into());
                    c.metadata.uid = Some("00000000-0000-0000-0000-00000000f1ee".into());
                    cluster = Some(c);
                }
                Some("Secret") => {
                    let s: Secret =
                        serde_json::from_value(value).map_err(|e| err(format!("Secret: {e}")))?;
                    secrets.insert(s.name_any(), secret_data(&s));
                }
                other => return Err(err(format!("unexpected kind {other:?}"))),
            }
        }
        let cluster = cluster.ok_or_else(|| err("no SockudoCluster in the file".into()))?;
        let errors: Vec<String> = sockudo_operator::validate::validate(&cluster.spec)
            .iter()
            .map(ToString::to_string)
            .collect();
        if !errors.is_empty() {
            return Err(FleetError::Invalid {
                origin: origin.to_string(),
                errors,
            });
        }
        let generated = generated_credentials(&cluster);
        Ok(Manifest {
            origin: origin.to_string(),
            cluster,
            secrets,
            generated,
        })
    }

    pub fn name(&self) -> String {
        self.cluster.name_any()
    }

    /// What the builders take. Every optional API present: only the server-side objects matter here.
    pub fn inputs(&self) -> Inputs<'_> {
        Inputs {
            cluster: &self.cluster,
            secrets: &self.secrets,
            generated: &self.generated,
            capabilities: Capabilities::ALL,
        }
    }
}

/// `data` (already base64-decoded by the type) overlaid with `stringData`, as the API server does.
fn secret_data(s: &Secret) -> SecretData {
    let mut data: SecretData = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in s.string_data.iter().flatten() {
        data.insert(k.clone(), v.clone().into_bytes());
    }
    data
}

/// A random password for each managed backend's auth Secret, as the operator makes on first build.
fn generated_credentials(cluster: &SockudoCluster) -> BTreeMap<String, String> {
    let topology = Topology::of(&cluster.spec);
    let mut names: Vec<String> = topology
        .used_redis()
        .iter()
        .filter(|i| i.is_managed())
        .map(|i| i.auth_secret(cluster))
        .collect();
    if topology.nats.is_some_and(|n| n.managed.is_some()) {
        names.push(nats_auth_secret(cluster));
    }
    // The operator's own generator, so local backends get credentials of the same shape.
    names
        .into_iter()
        .map(|n| {
            let credential = sockudo_operator::controller::credentials::random_credential()
                .expect("the OS random source works");
            (n, credential)
        })
        .collect()
}
