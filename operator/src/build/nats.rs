//! A managed NATS cluster, as the official chart runs it: StatefulSet (Parallel, so a JetStream
//! quorum can form), a headless Service publishing not-ready pods (routes), a client Service,
//! lame-duck mode on stop, and JetStream when delta coordination needs its KV store.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    ExecAction, HTTPGetAction, Lifecycle, LifecycleHandler, Probe, Secret, SecretKeySelector,
    Service, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::Child;
use super::backend_set::{self, BackendSet, container_port, env_from_field, service_port};
use super::credentials::nats_auth_secret;
use super::inputs::Inputs;
use super::names;
use crate::crd::{NatsSpec, SockudoCluster};

/// The official image, pinned (alpine: `nats-server` on PATH for the lame-duck preStop).
pub const NATS_IMAGE: &str = "docker.io/library/nats";
pub const NATS_TAG: &str = "2.10.24-alpine";
pub const CLIENT_PORT: i32 = 4222;
pub const CLUSTER_PORT: i32 = 6222;
pub const MONITOR_PORT: i32 = 8222;
pub const NATS_UID: i64 = 1000;
const COMPONENT: &str = "nats";
const PID_FILE: &str = "/var/run/nats/nats.pid";
/// Lame-duck spreads client reconnects over this long before the server exits.
const LAME_DUCK_SECONDS: i64 = 30;

pub fn name(cluster: &SockudoCluster) -> String {
    format!("{}-nats", cluster.name_any())
}

pub fn client_service(cluster: &SockudoCluster) -> String {
    name(cluster)
}

pub fn headless_service(cluster: &SockudoCluster) -> String {
    format!("{}-headless", name(cluster))
}

pub fn replicas(spec: &NatsSpec) -> i32 {
    spec.managed.as_ref().and_then(|m| m.replicas).unwrap_or(3)
}

/// JetStream on when asked, else exactly when delta coordination needs its KV store.
pub fn jetstream(inputs: &Inputs, spec: &NatsSpec) -> bool {
    let delta = inputs
        .cluster
        .spec
        .delta_compression
        .clone()
        .unwrap_or_default();
    spec.managed
        .as_ref()
        .and_then(|m| m.jetstream)
        .unwrap_or(delta.enabled.unwrap_or(true) && delta.cluster_coordination.unwrap_or(false))
}

/// `nats.conf`. `$SERVER_NAME` and `$NATS_TOKEN` are environment variables of the pod, so the
/// ConfigMap holds no secret and is the same for every pod.
pub fn nats_conf(inputs: &Inputs, spec: &NatsSpec) -> String {
    let cluster = inputs.cluster;
    let n = replicas(spec);
    let sts = name(cluster);
    let headless = headless_service(cluster);
    let ns = names::namespace(cluster);
    let mut conf = format!(
        "# Rendered by sockudo-operator.\n\
         server_name: $SERVER_NAME\n\
         listen: \"0.0.0.0:{CLIENT_PORT}\"\n\
         http: \"0.0.0.0:{MONITOR_PORT}\"\n\
         pid_file: \"{PID_FILE}\"\n\
         lame_duck_duration: \"{LAME_DUCK_SECONDS}s\"\n\
         lame_duck_grace_period: \"10s\"\n\
         authorization {{\n  token: $NATS_TOKEN\n}}\n"
    );
    if n > 1 {
        let routes: Vec<String> = (0..n)
            .map(|i| format!("    \"nats://{sts}-{i}.{headless}.{ns}.svc:{CLUSTER_PORT}\""))
            .collect();
        conf.push_str(&format!(
            "cluster {{\n  name: \"{sts}\"\n  listen: \"0.0.0.0:{CLUSTER_PORT}\"\n  no_advertise: true\n  routes: [\n{}\n  ]\n}}\n",
            routes.join("\n")
        ));
    }
    if jetstream(inputs, spec) {
        conf.push_str(
            "jetstream {\n  store_dir: \"/data\"\n  max_memory_store: 256MB\n  max_file_store: 1GB\n}\n",
        );
    }
    conf
}

pub fn config_map(inputs: &Inputs, spec: &NatsSpec) -> ConfigMap {
    ConfigMap {
        metadata: names::child_meta(
            inputs.cluster,
            format!("{}-config", name(inputs.cluster)),
            "nats",
            COMPONENT,
        ),
        data: Some(BTreeMap::from([(
            "nats.conf".to_string(),
            nats_conf(inputs, spec),
        )])),
        ..ConfigMap::default()
    }
}

pub fn auth_secret(inputs: &Inputs) -> Secret {
    let secret = nats_auth_secret(inputs.cluster);
    let token = inputs.generated.get(&secret).cloned().unwrap_or_default();
    Secret {
        metadata: names::child_meta(inputs.cluster, secret, "nats", COMPONENT),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            "token".to_string(),
            ByteString(token.into_bytes()),
        )])),
        ..Secret::default()
    }
}

pub fn services(inputs: &Inputs) -> Vec<Service> {
    let cluster = inputs.cluster;
    let selector = names::selector_labels(cluster, "nats", COMPONENT);
    vec![
        Service {
            metadata: names::child_meta(cluster, headless_service(cluster), "nats", COMPONENT),
            spec: Some(ServiceSpec {
                cluster_ip: Some("None".into()),
                // Routes must resolve before the peers are ready, or a quorum never forms.
                publish_not_ready_addresses: Some(true),
                selector: Some(selector.clone()),
                ports: Some(vec![
                    service_port("client", CLIENT_PORT),
                    service_port("cluster", CLUSTER_PORT),
                    service_port("monitor", MONITOR_PORT),
                ]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        },
        Service {
            metadata: names::child_meta(cluster, client_service(cluster), "nats", COMPONENT),
            spec: Some(ServiceSpec {
                selector: Some(selector),
                ports: Some(vec![service_port("client", CLIENT_PORT)]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        },
    ]
}

fn healthz(query: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(format!("/healthz{query}")),
            port: IntOrString::String("monitor".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(3),
        timeout_seconds: Some(5),
        ..Probe::default()
    }
}

pub fn stateful_set(inputs: &Inputs, spec: &NatsSpec) -> StatefulSet {
    let cluster = inputs.cluster;
    let managed = spec.managed.clone().unwrap_or_default();
    let sts = name(cluster);
    let js = jetstream(inputs, spec);
    let token_env = EnvVar {
        name: "NATS_TOKEN".into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: nats_auth_secret(cluster),
                key: "token".into(),
                ..SecretKeySelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    let container = Container {
        command: Some(vec!["nats-server".into()]),
        args: Some(vec!["--config".into(), "/etc/nats/nats.conf".into()]),
        env: Some(vec![
            env_from_field("SERVER_NAME", "metadata.name"),
            token_env,
        ]),
        ports: Some(vec![
            container_port("client", CLIENT_PORT),
            container_port("cluster", CLUSTER_PORT),
            container_port("monitor", MONITOR_PORT),
        ]),
        startup_probe: Some(Probe {
            failure_threshold: Some(90),
            ..healthz("", 2)
        }),
        readiness_probe: Some(healthz(if js { "?js-server-only=true" } else { "" }, 10)),
        liveness_probe: Some(healthz(if js { "?js-enabled-only=true" } else { "" }, 30)),
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(vec![
                        "nats-server".into(),
                        format!("--signal=ldm={PID_FILE}"),
                    ]),
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "config".into(),
                mount_path: "/etc/nats".into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "pid".into(),
                mount_path: "/var/run/nats".into(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "data".into(),
                mount_path: "/data".into(),
                ..VolumeMount::default()
            },
        ]),
        ..backend_set::container(
            "nats",
            managed.image.as_ref(),
            (NATS_IMAGE, NATS_TAG),
            NATS_UID,
            managed.resources.clone(),
        )
    };
    let volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: format!("{sts}-config"),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "pid".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    BackendSet {
        inputs,
        name: sts,
        service_name: headless_service(cluster),
        app: "nats",
        component: COMPONENT,
        replicas: replicas(spec),
        parallel: true,
        uid: NATS_UID,
        container,
        volumes,
        storage: managed.storage.as_ref(),
        // Lame duck plus a margin.
        termination_grace_period_seconds: Some(LAME_DUCK_SECONDS + 30),
    }
    .build()
}

/// The PodDisruptionBudget of a managed NATS cluster (none for a single server).
pub fn pdb(inputs: &Inputs, spec: &NatsSpec) -> Option<PodDisruptionBudget> {
    super::pdb::backend_pdb(
        inputs,
        name(inputs.cluster),
        "nats",
        COMPONENT,
        replicas(spec),
    )
}

/// Every child of the managed NATS.
pub fn managed(spec: &NatsSpec, inputs: &Inputs) -> Vec<Child> {
    let mut children = vec![
        Child::ConfigMap(config_map(inputs, spec)),
        Child::Secret(auth_secret(inputs)),
    ];
    children.extend(services(inputs).into_iter().map(Child::Service));
    children.push(Child::StatefulSet(stateful_set(inputs, spec)));
    children
}
