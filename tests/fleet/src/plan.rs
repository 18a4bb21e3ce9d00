//! What the operator would deploy for a manifest, taken from its own builders
//! (`build::desired`): the server config of the ConfigMap, the Secret files mounted into the server
//! pods, the pods' environment, and the managed backends with their redis.conf / nats.conf.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use sockudo_config::{Format, ServerConfig};
use sockudo_operator::build::credentials::nats_auth_secret;
use sockudo_operator::build::server_config::CONFIG_FILE;
use sockudo_operator::build::topology::{RedisRole, Topology};
use sockudo_operator::build::{self, Child, Desired, names, nats, redis};
use sockudo_operator::crd::RedisMode;

use crate::error::{FleetError, Result};
use crate::manifest::Manifest;

/// Files of one Secret volume of the server pod: the directory it is mounted at and its files.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretFiles {
    pub secret: String,
    pub dir: String,
    /// File name to content.
    pub files: BTreeMap<String, Vec<u8>>,
}

/// A managed Redis (standalone or cluster) of the manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedRedis {
    pub role: RedisRole,
    pub mode: RedisMode,
    /// StatefulSet / Service name, e.g. `full-sharing-redis`.
    pub name: String,
    pub namespace: String,
    /// `redis.conf` of the operator's ConfigMap.
    pub conf: String,
    /// `auth.conf` of the operator's auth Secret.
    pub auth_conf: String,
    pub password: String,
    /// Standalone: 1. Cluster: masters and replicas per master.
    pub masters: usize,
    pub replicas_per_master: usize,
}

impl ManagedRedis {
    pub fn pods(&self) -> usize {
        match self.mode {
            RedisMode::Standalone => 1,
            RedisMode::Cluster => self.masters * (1 + self.replicas_per_master),
        }
    }
}

/// The managed NATS cluster of the manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedNats {
    /// StatefulSet name; pods are `NAME-0`, `NAME-1`...
    pub name: String,
    pub namespace: String,
    pub replicas: usize,
    pub jetstream: bool,
    /// `nats.conf` of the operator's ConfigMap.
    pub conf: String,
    pub token: String,
}

/// One app's credentials, as the server reads them from the apps Secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AppInfo {
    pub id: String,
    pub key: String,
    pub secret: String,
}

/// Everything needed to run the manifest locally.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub replicas: usize,
    /// The server config exactly as in the operator's ConfigMap.
    pub config: ServerConfig,
    pub config_json: String,
    pub secret_files: Vec<SecretFiles>,
    /// Literal environment variables of the server pod (`spec.pod.env`).
    pub env: PodEnv,
    pub redis: Vec<ManagedRedis>,
    pub nats: Option<ManagedNats>,
    /// External backends, described for the user (used as given).
    pub external: Vec<String>,
    pub apps: Vec<AppInfo>,
    /// The operator's decision-matrix warnings.
    pub warnings: Vec<String>,
    /// Secret files the pods mount but the manifest cannot provide.
    pub missing: Vec<String>,
}

fn find<'a, T>(
    desired: &'a Desired,
    name: &str,
    pick: impl Fn(&'a Child) -> Option<&'a T>,
) -> Result<&'a T> {
    desired
        .children
        .iter()
        .filter(|c| c.name() == name)
        .find_map(pick)
        .ok_or_else(|| FleetError::Render {
            what: name.to_string(),
        })
}

fn config_map<'a>(d: &'a Desired, name: &str) -> Result<&'a ConfigMap> {
    find(d, name, |c| match c {
        Child::ConfigMap(o) => Some(o),
        _ => None,
    })
}

fn secret<'a>(d: &'a Desired, name: &str) -> Result<&'a Secret> {
    find(d, name, |c| match c {
        Child::Secret(o) => Some(o),
        _ => None,
    })
}

fn config_map_value(d: &Desired, name: &str, key: &str) -> Result<String> {
    config_map(d, name)?
        .data
        .as_ref()
        .and_then(|m| m.get(key))
        .cloned()
        .ok_or_else(|| FleetError::Render {
            what: format!("{name}/{key}"),
        })
}

fn secret_value(d: &Desired, name: &str, key: &str) -> Result<String> {
    secret(d, name)?
        .data
        .as_ref()
        .and_then(|m| m.get(key))
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .ok_or_else(|| FleetError::Render {
            what: format!("{name}/{key}"),
        })
}

impl Plan {
    pub fn of(manifest: &Manifest) -> Result<Plan> {
        let inputs = manifest.inputs();
        let desired = build::desired(&inputs);
        let cluster = &manifest.cluster;
        let name = manifest.name();
        let namespace = names::namespace(cluster);

        let config_json = config_map_value(&desired, &names::config_map(cluster), CONFIG_FILE)?;
        let config = sockudo_config::parse_str(&config_json, Format::Json).map_err(|e| {
            FleetError::Render {
                what: format!("a config the server can parse ({e})"),
            }
        })?;

        // Secret data by name: the manifest's own Secrets plus those the operator generates.
        let mut all_secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>> = manifest.secrets.clone();
        for child in &desired.children {
            if let Child::Secret(s) = child {
                let data = s
                    .data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.0.clone()));
                all_secrets.insert(child.name().to_string(), data.collect());
            }
        }
        let deployment = find(&desired, &name, |c| match c {
            Child::Deployment(o) => Some(o),
            _ => None,
        })?;
        let mut missing = Vec::new();
        let (secret_files, env) = pod_files_and_env(deployment, &all_secrets, &mut missing)?;

        let topology = Topology::of(&cluster.spec);
        let mut redis_list = Vec::new();
        let mut external = Vec::new();
        for instance in topology.used_redis() {
            let Some(managed) = &instance.spec.managed else {
                external.push(format!(
                    "{} ({:?}) is external: used at the address the manifest gives",
                    instance.role.spec_path(),
                    instance.mode()
                ));
                continue;
            };
            let managed_name = instance.managed_name(cluster);
            let auth = instance.auth_secret(cluster);
            redis_list.push(ManagedRedis {
                role: instance.role,
                mode: instance.mode(),
                conf: config_map_value(&desired, &format!("{managed_name}-config"), "redis.conf")?,
                auth_conf: secret_value(&desired, &auth, "auth.conf")?,
                password: secret_value(&desired, &auth, "password")?,
                name: managed_name,
                namespace: namespace.clone(),
                masters: redis::masters(managed).max(1) as usize,
                replicas_per_master: redis::replicas_per_master(managed).max(0) as usize,
            });
        }
        let nats_plan = match topology.nats {
            Some(spec) if spec.managed.is_some() => {
                let sts = nats::name(cluster);
                Some(ManagedNats {
                    conf: config_map_value(&desired, &format!("{sts}-config"), "nats.conf")?,
                    token: secret_value(&desired, &nats_auth_secret(cluster), "token")?,
                    name: sts,
                    namespace: namespace.clone(),
                    replicas: nats::replicas(spec).max(1) as usize,
                    jetstream: nats::jetstream(&inputs, spec),
                })
            }
            Some(_) => {
                external
                    .push("spec.nats is external: used at the servers the manifest gives".into());
                None
            }
            None => None,
        };

        let apps_data = all_secrets.get(&names::apps_secret(cluster));
        let app_file = |id: &str, suffix: &str| {
            apps_data
                .and_then(|d| d.get(&format!("{id}.{suffix}")))
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        let apps = cluster
            .spec
            .apps
            .iter()
            .map(|a| AppInfo {
                id: a.id.clone(),
                key: app_file(&a.id, "key"),
                secret: app_file(&a.id, "secret"),
            })
            .collect();

        Ok(Plan {
            name,
            replicas: cluster.spec.replicas.max(0) as usize,
            config,
            config_json,
            secret_files,
            env,
            redis: redis_list,
            nats: nats_plan,
            external,
            apps,
            warnings: desired.warnings.clone(),
            missing,
        })
    }
}

/// Literal environment variables of a pod, name and value.
pub type PodEnv = Vec<(String, String)>;

/// The Secret volumes of the server container (what the kubelet would write) and its literal env.
fn pod_files_and_env(
    deployment: &Deployment,
    secrets: &BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    missing: &mut Vec<String>,
) -> Result<(Vec<SecretFiles>, PodEnv)> {
    let pod = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .ok_or_else(|| FleetError::Render {
            what: "a server pod template".into(),
        })?;
    let container = pod.containers.first().ok_or_else(|| FleetError::Render {
        what: "a server container".into(),
    })?;
    let mut files = Vec::new();
    for volume in pod.volumes.iter().flatten() {
        let Some(source) = &volume.secret else {
            continue;
        };
        let secret_name = source.secret_name.clone().unwrap_or_default();
        let Some(mount) = container
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == volume.name)
        else {
            continue;
        };
        // A Secret the manifest lacks (e.g. an external backend's TLS CA kept elsewhere) leaves its
        // files missing, as a pod would stay pending: reported, and the server names the file.
        let Some(data) = secrets.get(&secret_name) else {
            missing.push(format!(
                "Secret `{secret_name}` (mounted at {}) is not in the manifest",
                mount.mount_path
            ));
            continue;
        };
        let mut out = BTreeMap::new();
        match &source.items {
            Some(items) => {
                for item in items {
                    match data.get(&item.key) {
                        Some(value) => {
                            out.insert(item.path.clone(), value.clone());
                        }
                        None => missing
                            .push(format!("Secret `{secret_name}` has no key `{}`", item.key)),
                    }
                }
            }
            None => out.extend(data.iter().map(|(k, v)| (k.clone(), v.clone()))),
        }
        files.push(SecretFiles {
            secret: secret_name,
            dir: mount.mount_path.clone(),
            files: out,
        });
    }
    let env = container
        .env
        .iter()
        .flatten()
        .filter_map(|e| e.value.clone().map(|v| (e.name.clone(), v)))
        .collect();
    Ok((files, env))
}
