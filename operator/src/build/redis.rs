//! A managed Redis or Redis Cluster: ConfigMap (redis.conf), generated password Secret, Service
//! and StatefulSet, with the official image.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ExecAction, Probe, Secret, SecretVolumeSource,
    Service, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use super::Child;
use super::backend_set::{self, BackendSet, container_port, env_from_field, service_port};
use super::inputs::Inputs;
use super::names;
use super::topology::RedisInstance;
use crate::crd::{ManagedRedis, RedisMode};

/// The official image, pinned.
pub const REDIS_IMAGE: &str = "docker.io/library/redis";
pub const REDIS_TAG: &str = "7.2.7-alpine";
pub const REDIS_PORT: u16 = 6379;
/// The gossip bus port of Redis Cluster (client port + 10000).
pub const REDIS_BUS_PORT: u16 = 16379;
/// The `redis` user of the official image.
pub const REDIS_UID: i64 = 999;
/// Mount points in the Redis container.
pub const REDIS_CONF_DIR: &str = "/etc/redis";
pub const REDIS_AUTH_DIR: &str = "/etc/redis/auth";
pub const REDIS_DATA_DIR: &str = "/data";

pub fn masters(m: &ManagedRedis) -> i32 {
    m.masters.unwrap_or(3)
}

pub fn replicas_per_master(m: &ManagedRedis) -> i32 {
    m.replicas_per_master.unwrap_or(1)
}

/// Pods of a managed Redis Cluster: every master and its replicas.
pub fn cluster_pod_count(m: &ManagedRedis) -> i32 {
    masters(m) * (1 + replicas_per_master(m))
}

/// `redis.conf`. The password comes from an `include`d file of the auth Secret, so the
/// ConfigMap holds no secret. Persistence follows the storage: AOF on a volume, none on emptyDir.
pub fn redis_conf(mode: RedisMode, persistent: bool) -> String {
    let mut conf = String::from(
        "# Rendered by sockudo-operator.\n\
         bind * -::*\n\
         port 6379\n\
         # Every client must authenticate (requirepass in the included auth file).\n\
         protected-mode no\n\
         dir /data\n",
    );
    if persistent {
        conf.push_str("appendonly yes\n");
    } else {
        conf.push_str("appendonly no\nsave \"\"\n");
    }
    if mode == RedisMode::Cluster {
        // Nodes announce their stable DNS names (passed per pod on the command line) to
        // clients; the bus still records peers by IP, so after pods come back with new IPs the
        // operator MEETs them again (controller::redis_cluster).
        conf.push_str(
            "cluster-enabled yes\n\
             cluster-config-file /data/nodes.conf\n\
             cluster-node-timeout 5000\n\
             cluster-preferred-endpoint-type hostname\n\
             cluster-require-full-coverage yes\n",
        );
    }
    conf.push_str(&format!("include {REDIS_AUTH_DIR}/auth.conf\n"));
    conf
}

/// The `auth.conf` of the auth Secret: clients and replicas use the same password.
pub fn auth_conf(password: &str) -> String {
    format!("requirepass {password}\nmasterauth {password}\n")
}

fn labels(instance: &RedisInstance, inputs: &Inputs) -> BTreeMap<String, String> {
    names::selector_labels(inputs.cluster, "redis", &instance.component())
}

pub fn config_map(instance: &RedisInstance, inputs: &Inputs) -> ConfigMap {
    let persistent = instance
        .spec
        .managed
        .as_ref()
        .is_some_and(|m| m.storage.is_some());
    ConfigMap {
        metadata: names::child_meta(
            inputs.cluster,
            format!("{}-config", instance.managed_name(inputs.cluster)),
            "redis",
            &instance.component(),
        ),
        data: Some(BTreeMap::from([(
            "redis.conf".to_string(),
            redis_conf(instance.mode(), persistent),
        )])),
        ..ConfigMap::default()
    }
}

pub fn auth_secret(instance: &RedisInstance, inputs: &Inputs) -> Secret {
    let name = instance.auth_secret(inputs.cluster);
    let password = inputs.generated.get(&name).cloned().unwrap_or_default();
    Secret {
        metadata: names::child_meta(inputs.cluster, name, "redis", &instance.component()),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([
            (
                "password".to_string(),
                ByteString(password.clone().into_bytes()),
            ),
            (
                "auth.conf".to_string(),
                ByteString(auth_conf(&password).into_bytes()),
            ),
        ])),
        ..Secret::default()
    }
}

/// Standalone: a ClusterIP Service. Cluster: a headless Service publishing not-ready pods, so
/// nodes can find each other before they are ready (the bootstrap needs that).
pub fn service(instance: &RedisInstance, inputs: &Inputs) -> Service {
    let cluster_mode = instance.mode() == RedisMode::Cluster;
    let mut ports = vec![service_port("redis", REDIS_PORT.into())];
    if cluster_mode {
        ports.push(service_port("bus", REDIS_BUS_PORT.into()));
    }
    Service {
        metadata: names::child_meta(
            inputs.cluster,
            instance.managed_name(inputs.cluster),
            "redis",
            &instance.component(),
        ),
        spec: Some(ServiceSpec {
            cluster_ip: cluster_mode.then(|| "None".into()),
            publish_not_ready_addresses: cluster_mode.then_some(true),
            selector: Some(labels(instance, inputs)),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn ping_probe(period: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(vec![
                "sh".into(),
                "-c".into(),
                format!(
                    "redis-cli -a \"$(cat {REDIS_AUTH_DIR}/password)\" --no-auth-warning ping | grep -q PONG"
                ),
            ]),
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

/// Pods of a managed instance: one standalone server, or every master and replica.
pub fn pods(instance: &RedisInstance, inputs: &Inputs) -> i32 {
    match instance.mode() {
        RedisMode::Standalone => 1,
        RedisMode::Cluster => {
            super::redis_cluster_size::stateful_set_pods(instance, inputs.cluster)
        }
    }
}

/// The PodDisruptionBudget of a managed Redis Cluster (none for a standalone Redis).
pub fn pdb(instance: &RedisInstance, inputs: &Inputs) -> Option<PodDisruptionBudget> {
    super::pdb::backend_pdb(
        inputs,
        instance.managed_name(inputs.cluster),
        "redis",
        &instance.component(),
        pods(instance, inputs),
    )
}

pub fn stateful_set(instance: &RedisInstance, inputs: &Inputs) -> StatefulSet {
    let managed = instance.spec.managed.clone().unwrap_or_default();
    let name = instance.managed_name(inputs.cluster);
    let cluster_mode = instance.mode() == RedisMode::Cluster;

    let mut args = vec![format!("{REDIS_CONF_DIR}/redis.conf")];
    let mut env = Vec::new();
    let mut ports = vec![container_port("redis", REDIS_PORT.into())];
    if cluster_mode {
        env.push(env_from_field("POD_NAME", "metadata.name"));
        // `$(POD_NAME)` is expanded by the kubelet.
        args.extend([
            "--cluster-announce-hostname".into(),
            format!(
                "$(POD_NAME).{name}.{}.svc",
                names::namespace(inputs.cluster)
            ),
        ]);
        ports.push(container_port("bus", REDIS_BUS_PORT.into()));
    }
    let volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: format!("{name}-config"),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "auth".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(instance.auth_secret(inputs.cluster)),
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
    ];
    let container = Container {
        command: Some(vec!["redis-server".into()]),
        args: Some(args),
        env: (!env.is_empty()).then_some(env),
        ports: Some(ports),
        readiness_probe: Some(ping_probe(5)),
        liveness_probe: Some(ping_probe(10)),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "config".into(),
                mount_path: REDIS_CONF_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "auth".into(),
                mount_path: REDIS_AUTH_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "data".into(),
                mount_path: REDIS_DATA_DIR.into(),
                ..VolumeMount::default()
            },
        ]),
        ..backend_set::container(
            "redis",
            managed.image.as_ref(),
            (REDIS_IMAGE, REDIS_TAG),
            REDIS_UID,
            managed.resources.clone(),
        )
    };
    BackendSet {
        inputs,
        service_name: name.clone(),
        name,
        app: "redis",
        component: &instance.component(),
        replicas: pods(instance, inputs),
        parallel: cluster_mode,
        uid: REDIS_UID,
        container,
        volumes,
        storage: managed.storage.as_ref(),
        termination_grace_period_seconds: None,
    }
    .build()
}

/// Every child of one managed Redis section.
pub fn managed(instance: &RedisInstance, inputs: &Inputs) -> Vec<Child> {
    vec![
        Child::ConfigMap(config_map(instance, inputs)),
        Child::Secret(auth_secret(instance, inputs)),
        Child::Service(service(instance, inputs)),
        Child::StatefulSet(stateful_set(instance, inputs)),
    ]
}
