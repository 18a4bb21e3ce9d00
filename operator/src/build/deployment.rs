//! The server Deployment.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, KeyToPath, Lifecycle, LifecycleHandler, ObjectFieldSelector,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecretVolumeSource,
    SecurityContext, SleepAction, TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::credentials::{self, SecretMount};
use super::hash::CONFIG_HASH_ANNOTATION;
use super::inputs::Inputs;
use super::names;
use super::server_config::{APPS_DIR, CONFIG_DIR, CONFIG_FILE};
use super::topology::Topology;
use crate::crd::ImageSpec;

/// The server image this operator release was tested with.
pub const SERVER_IMAGE: &str = "ghcr.io/sockudo/sockudo";
pub const SERVER_TAG: &str = concat!("v", env!("CARGO_PKG_VERSION"));
pub const HTTP_PORT: i32 = 6001;
pub const METRICS_PORT: i32 = 9601;
/// Seconds the pod keeps serving after it is marked terminating, so that endpoint removal reaches
/// every load balancer before the server starts refusing new connections.
pub const PRE_STOP_SLEEP_SECONDS: i64 = 5;
/// Margin past the server's own drain before the kubelet kills it.
const KILL_MARGIN_SECONDS: i64 = 15;
/// The non-root user of the server image.
pub const SERVER_UID: i64 = 65532;

/// `repository@digest` when a digest pins the image (the tag is then ignored: the runtime pulls
/// by digest anyway, and `repo:tag@digest` would only suggest a tag that plays no part), else
/// `repository:tag`, with the defaults for whatever is unset.
pub fn image_reference(spec: Option<&ImageSpec>, repository: &str, tag: &str) -> String {
    let repo = spec
        .and_then(|s| s.repository.as_deref())
        .unwrap_or(repository);
    match spec.and_then(|s| s.digest.as_deref()) {
        Some(digest) => format!("{repo}@{digest}"),
        None => format!(
            "{repo}:{}",
            spec.and_then(|s| s.tag.as_deref()).unwrap_or(tag)
        ),
    }
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

/// Security context of every container the operator runs: non-root, read-only root, no
/// privileges.
pub fn restricted_security_context(uid: i64) -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

pub fn restricted_pod_security_context(uid: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        fs_group: Some(uid),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// A soft spread over zones and nodes: never blocks scheduling, but avoids stacking the fleet.
pub fn soft_topology_spread(selector: &BTreeMap<String, String>) -> Vec<TopologySpreadConstraint> {
    ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
        .into_iter()
        .map(|key| TopologySpreadConstraint {
            max_skew: 1,
            topology_key: key.into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(LabelSelector {
                match_labels: Some(selector.clone()),
                ..LabelSelector::default()
            }),
            ..TopologySpreadConstraint::default()
        })
        .collect()
}

fn secret_volume(mount: &SecretMount) -> Volume {
    Volume {
        name: mount.volume.clone(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(mount.secret.clone()),
            items: Some(
                mount
                    .items
                    .iter()
                    .map(|(key, path)| KeyToPath {
                        key: key.clone(),
                        path: path.clone(),
                        ..KeyToPath::default()
                    })
                    .collect(),
            ),
            default_mode: Some(0o440),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

/// Seconds from SIGTERM to SIGKILL: the preStop sleep, the server's drain, and a margin.
pub fn termination_grace_seconds(shutdown_grace: u64) -> i64 {
    PRE_STOP_SLEEP_SECONDS + shutdown_grace as i64 + KILL_MARGIN_SECONDS
}

pub fn deployment(inputs: &Inputs, config_hash: &str) -> Deployment {
    let cluster = inputs.cluster;
    let spec = &cluster.spec;
    let pod = spec.pod.clone().unwrap_or_default();
    let selector = names::selector_labels(cluster, "sockudo", names::SERVER_COMPONENT);
    let settings = super::server_config::render_settings(inputs);
    let metrics = settings.metrics.enabled;

    let mut pod_labels = pod.labels.clone().unwrap_or_default();
    pod_labels.extend(names::labels(cluster, "sockudo", names::SERVER_COMPONENT));
    let mut pod_annotations = pod.annotations.clone().unwrap_or_default();
    pod_annotations.insert(CONFIG_HASH_ANNOTATION.into(), config_hash.into());

    let topology = Topology::of(spec);
    let mut secret_mounts: Vec<SecretMount> = topology
        .used_redis()
        .iter()
        .flat_map(|i| credentials::redis(i, inputs).mounts)
        .collect();
    if let Some(nats) = topology.nats {
        secret_mounts.extend(credentials::nats(nats, inputs).mounts);
    }

    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: names::config_map(cluster),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "apps".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(names::apps_secret(cluster)),
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    let mut mounts = vec![
        mount("config", CONFIG_DIR),
        mount("apps", APPS_DIR),
        VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..VolumeMount::default()
        },
    ];
    for m in &secret_mounts {
        volumes.push(secret_volume(m));
        mounts.push(mount(&m.volume, &m.dir));
    }

    let mut env = vec![EnvVar {
        name: "NODE_ID".into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "metadata.name".into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }];
    env.extend(pod.env.clone().unwrap_or_default());

    let mut ports = vec![ContainerPort {
        name: Some("http".into()),
        container_port: HTTP_PORT,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }];
    if metrics {
        ports.push(ContainerPort {
            name: Some("metrics".into()),
            container_port: METRICS_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        });
    }

    let image = spec.image.as_ref();
    let container = Container {
        name: "sockudo".into(),
        image: Some(image_reference(image, SERVER_IMAGE, SERVER_TAG)),
        image_pull_policy: image
            .and_then(|i| i.pull_policy)
            .map(|p| p.as_str().to_string()),
        args: Some(vec![
            "--config".into(),
            format!("{CONFIG_DIR}/{CONFIG_FILE}"),
        ]),
        env: Some(env),
        ports: Some(ports),
        startup_probe: Some(http_probe("/live", 2, 30)),
        liveness_probe: Some(http_probe("/live", 10, 3)),
        readiness_probe: Some(http_probe("/ready", 5, 2)),
        lifecycle: inputs.capabilities.native_sleep.then(|| Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction {
                    seconds: PRE_STOP_SLEEP_SECONDS,
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        resources: pod.resources.clone(),
        security_context: Some(restricted_security_context(SERVER_UID)),
        volume_mounts: Some(mounts),
        ..Container::default()
    };

    Deployment {
        metadata: names::child_meta(
            cluster,
            cluster.name_any(),
            "sockudo",
            names::SERVER_COMPONENT,
        ),
        spec: Some(DeploymentSpec {
            replicas: Some(spec.replicas),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::String("25%".into())),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(pod_annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(volumes),
                    // The server never talks to the Kubernetes API.
                    automount_service_account_token: Some(false),
                    security_context: Some(restricted_pod_security_context(SERVER_UID)),
                    termination_grace_period_seconds: Some(termination_grace_seconds(
                        settings.shutdown_grace_period,
                    )),
                    node_selector: pod.node_selector.clone(),
                    tolerations: pod.tolerations.clone(),
                    affinity: pod.affinity.clone(),
                    priority_class_name: pod.priority_class_name.clone(),
                    topology_spread_constraints: Some(
                        pod.topology_spread
                            .clone()
                            .unwrap_or_else(|| soft_topology_spread(&selector)),
                    ),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}
