//! The status of a SockudoCluster, computed from what the reconcile saw. Pure and deterministic:
//! the same observations give the same status, so a no-op reconcile writes nothing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::conditions::{self, Wanted};
use super::volumes::{self, Outcome};
use crate::build::Desired;
use crate::build::deployment::{HTTP_PORT, METRICS_PORT};
use crate::build::names;
use crate::build::redis_cluster_size::operated;
use crate::crd::{
    ConditionType, Endpoints, RedisClusterPhase, RedisClusterStatus, SockudoCluster,
    SockudoClusterStatus, UnreachablePod,
};

/// Readiness of one workload (the server Deployment or a backend StatefulSet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workload {
    pub name: String,
    pub desired: i32,
    pub ready: i32,
    /// Pods running the current template.
    pub updated: i32,
    /// The controller of the workload has seen its latest spec.
    pub observed_current: bool,
}

impl Workload {
    pub fn is_ready(&self) -> bool {
        self.observed_current && self.ready >= self.desired && self.updated >= self.desired
    }
}

/// What the reconcile observed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    pub server: Option<Workload>,
    pub redis: Vec<Workload>,
    pub nats: Vec<Workload>,
    /// Some consumer uses an external Redis / NATS (not observed by the operator).
    pub external_redis: bool,
    pub external_nats: bool,
    pub redis_cluster: Option<RedisClusterStatus>,
    /// Claims of managed backends not at the spec's storage size (or just grown to it); `None`
    /// when no managed backend has storage, or the claims were not looked at (not applied).
    pub volumes: Option<Vec<Outcome>>,
}

/// Why the desired state could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    InvalidSpec(Vec<String>),
    SecretMissing(Vec<String>),
    ApplyFailed(String),
}

impl Problem {
    fn reason(&self) -> &'static str {
        match self {
            Problem::InvalidSpec(_) => "InvalidSpec",
            Problem::SecretMissing(_) => "SecretMissing",
            Problem::ApplyFailed(_) => "ApplyFailed",
        }
    }

    fn message(&self) -> String {
        match self {
            Problem::InvalidSpec(e) => format!("invalid spec: {}", e.join("; ")),
            Problem::SecretMissing(s) => format!("missing Secret(s) or keys: {}", s.join(", ")),
            Problem::ApplyFailed(e) => format!("applying children failed: {e}"),
        }
    }
}

fn backend_condition(
    type_: ConditionType,
    what: &str,
    workloads: &[Workload],
    external: bool,
    cluster: Option<&RedisClusterStatus>,
) -> Option<Wanted> {
    if workloads.is_empty() && !external {
        return None;
    }
    let waiting: Vec<&str> = workloads
        .iter()
        .filter(|w| !w.is_ready())
        .map(|w| w.name.as_str())
        .collect();
    if !waiting.is_empty() {
        return Some(Wanted::new(
            type_,
            false,
            "PodsNotReady",
            format!("waiting for {}", waiting.join(", ")),
        ));
    }
    if let Some(c) = cluster
        && c.phase != RedisClusterPhase::Ready
    {
        let (reason, message) = match c.phase {
            RedisClusterPhase::Rebalancing => (
                "ClusterRebalancing",
                format!(
                    "Redis Cluster Rebalancing: {} slots to move onto {} masters",
                    c.slots_to_move, c.masters
                ),
            ),
            RedisClusterPhase::Draining => (
                "ClusterDraining",
                format!(
                    "Redis Cluster Draining: {} slots to move off departing masters, then they are forgotten",
                    c.slots_to_move
                ),
            ),
            RedisClusterPhase::Pending if !c.unreachable.is_empty() => (
                "ClusterPending",
                format!(
                    "Redis Cluster Pending: pod(s) {} do not answer",
                    c.unreachable
                        .iter()
                        .map(|u| u.ordinal.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            _ => (
                "ClusterBootstrapping",
                format!(
                    "Redis Cluster {:?}: {} of 16384 slots assigned",
                    c.phase, c.slots_assigned
                ),
            ),
        };
        return Some(Wanted::new(type_, false, reason, message));
    }
    Some(if workloads.is_empty() {
        Wanted::new(
            type_,
            true,
            "External",
            format!("external {what}, not managed by the operator"),
        )
    } else {
        Wanted::new(type_, true, "Ready", format!("managed {what} is ready"))
    })
}

/// Whether the managed Redis Cluster waits on something only a human can fix: a departing pod
/// that does not answer blocks its drain (its slots cannot move off, it cannot be reset), and the
/// StatefulSet keeps it until then, however long that takes.
fn redis_cluster_stalled(cluster: &SockudoCluster, c: &RedisClusterStatus) -> Wanted {
    let departing: Vec<&UnreachablePod> = c.unreachable.iter().filter(|u| u.departing).collect();
    if departing.is_empty() {
        return Wanted::new(
            ConditionType::RedisClusterStalled,
            false,
            "AsExpected",
            "every pod the next step needs answers",
        );
    }
    let ns = names::namespace(cluster);
    let sts = operated(cluster).map_or_else(String::new, |i| i.managed_name(cluster));
    let pods: Vec<String> = departing
        .iter()
        .map(|u| format!("{sts}-{} ({})", u.ordinal, u.error))
        .collect();
    let first = format!("{sts}-{}", departing[0].ordinal);
    Wanted::new(
        ConditionType::RedisClusterStalled,
        true,
        "DepartingPodUnreachable",
        format!(
            "the Redis Cluster drain waits for departing pod(s) {}: each must answer so that its \
             slots move off and it is reset before the StatefulSet may shrink, and nothing moves \
             while a pod does not answer. Bring the pod back (kubectl -n {ns} describe pod \
             {first}; its data is on PersistentVolumeClaim data-{first} if it has storage). If it \
             cannot come back and owns no slots (a replica, or a master already drained: see \
             CLUSTER NODES on a remaining pod), delete its claim and the pod: it starts empty as \
             a new node, the old one is forgotten and the drain finishes.",
            pods.join(", ")
        ),
    )
}

/// The warning while a rollout moves the pods to another interconnect.
pub fn split_warning(previous: &str, next: &str) -> String {
    format!(
        "the adapter changes from {previous} to {next}: until the rollout ends, clients of old \
         and new pods do not get each other's events"
    )
}

/// The new status. `old` supplies the previous conditions, so transition times are kept.
pub fn compute(
    cluster: &SockudoCluster,
    desired: Option<&Desired>,
    observed: &Observed,
    problem: Option<&Problem>,
    paused: bool,
    now: &Time,
) -> SockudoClusterStatus {
    let old = cluster.status.clone().unwrap_or_default();
    let generation = cluster.metadata.generation;
    let mut wanted = Vec::new();

    let redis = backend_condition(
        ConditionType::RedisReady,
        "Redis",
        &observed.redis,
        observed.external_redis,
        observed.redis_cluster.as_ref(),
    );
    let nats = backend_condition(
        ConditionType::NatsReady,
        "NATS",
        &observed.nats,
        observed.external_nats,
        None,
    );
    let deps_ready =
        redis.as_ref().is_none_or(|c| c.status) && nats.as_ref().is_none_or(|c| c.status);
    let server_ready = observed.server.as_ref().is_some_and(Workload::is_ready);

    let ready = match (problem, &observed.server) {
        (Some(p), _) => Wanted::new(ConditionType::Ready, false, p.reason(), p.message()),
        (None, _) if server_ready && deps_ready => Wanted::new(
            ConditionType::Ready,
            true,
            "Ready",
            "all server pods and backends are ready",
        ),
        (None, Some(s)) => Wanted::new(
            ConditionType::Ready,
            false,
            if s.is_ready() {
                "BackendsNotReady"
            } else {
                "PodsNotReady"
            },
            format!("{} of {} server pods ready", s.ready, s.desired),
        ),
        (None, None) => Wanted::new(
            ConditionType::Ready,
            false,
            "Pending",
            "the server Deployment does not exist yet",
        ),
    };
    wanted.push(ready);
    let progressing = problem.is_none() && !(server_ready && deps_ready);
    wanted.push(if progressing {
        Wanted::new(
            ConditionType::Progressing,
            true,
            "RollingOut",
            "waiting for pods and backends to become ready",
        )
    } else {
        Wanted::new(
            ConditionType::Progressing,
            false,
            if problem.is_some() {
                "Blocked"
            } else {
                "Complete"
            },
            // Never empty: an empty message is valid Kubernetes, but a 1.20 API server's
            // server-side apply turns `""` into null and then refuses the whole status.
            if problem.is_some() {
                "blocked by the problem in the Degraded condition"
            } else {
                "all server pods and backends are ready"
            },
        )
    });
    wanted.push(match problem {
        Some(p) => Wanted::new(ConditionType::Degraded, true, p.reason(), p.message()),
        None => Wanted::new(
            ConditionType::Degraded,
            false,
            "AsExpected",
            "inputs are valid and every child was applied",
        ),
    });
    wanted.extend(redis);
    wanted.extend(
        observed
            .redis_cluster
            .as_ref()
            .map(|c| redis_cluster_stalled(cluster, c)),
    );
    wanted.extend(nats);
    wanted.extend(observed.volumes.as_deref().map(volumes::condition));
    if paused {
        wanted.push(Wanted::new(
            ConditionType::ReconciliationPaused,
            true,
            "Paused",
            format!(
                "annotation {}={} is set: nothing is applied",
                crate::crd::PAUSE_ANNOTATION,
                crate::crd::PAUSE_VALUE
            ),
        ));
    }

    let ns = names::namespace(cluster);
    let ingress = cluster.spec.ingress.as_ref().map(|i| {
        let scheme = if i.tls.is_some() { "wss" } else { "ws" };
        format!("{scheme}://{}", i.host)
    });
    let metrics_enabled = cluster
        .spec
        .metrics
        .as_ref()
        .and_then(|m| m.enabled)
        .unwrap_or(true);
    let service_port = cluster
        .spec
        .service
        .as_ref()
        .and_then(|s| s.port)
        .unwrap_or(HTTP_PORT);
    // The interconnect is recorded once a rollout has completed; until then a change of it
    // means old and new pods do not hear each other.
    let rolled_out = server_ready && problem.is_none();
    let mut warnings = desired.map_or(old.warnings, |d| d.warnings.clone());
    let interconnect = match desired {
        Some(d) if rolled_out => Some(d.interconnect.clone()),
        _ => old.interconnect.clone(),
    };
    if let (Some(d), Some(previous)) = (desired, &old.interconnect)
        && d.interconnect != *previous
        && !rolled_out
    {
        warnings.push(split_warning(previous, &d.interconnect));
    }
    SockudoClusterStatus {
        observed_generation: generation,
        conditions: conditions::merge(&old.conditions, &wanted, generation, now),
        replicas: observed.server.as_ref().map_or(0, |s| s.desired),
        ready_replicas: observed.server.as_ref().map_or(0, |s| s.ready),
        selector: Some(names::server_selector_string(cluster)),
        endpoints: Some(Endpoints {
            client: Some(format!(
                "{}.{ns}.svc:{service_port}",
                names::client_service(cluster)
            )),
            metrics: metrics_enabled.then(|| {
                format!(
                    "{}.{ns}.svc:{METRICS_PORT}",
                    names::metrics_service(cluster)
                )
            }),
            ingress,
        }),
        warnings,
        interconnect,
        skipped: desired.map(|d| d.skipped.clone()).unwrap_or(old.skipped),
        config_hash: desired.map(|d| d.config_hash.clone()).or(old.config_hash),
        redis_cluster: observed.redis_cluster.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::SockudoClusterSpec;

    fn cluster() -> SockudoCluster {
        let spec: SockudoClusterSpec = serde_json::from_value(serde_json::json!({
            "replicas": 2, "adapter": {"driver": "redis"}, "redis": {"managed": {}},
            "apps": [{"id": "1", "secretRef": {"name": "s"}}]
        }))
        .unwrap();
        let mut c = SockudoCluster::new("x", spec);
        c.metadata.namespace = Some("ns".into());
        c.metadata.generation = Some(3);
        c
    }

    fn workload(ready: i32) -> Workload {
        Workload {
            name: "w".into(),
            desired: 2,
            ready,
            updated: 2,
            observed_current: true,
        }
    }

    fn condition<'a>(
        s: &'a SockudoClusterStatus,
        t: &str,
    ) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn progressing_then_ready_and_stable() {
        let now = Time("2024-01-01T00:00:00Z".parse().unwrap());
        let later = Time("2024-01-01T00:05:00Z".parse().unwrap());
        let mut c = cluster();
        let observed = Observed {
            server: Some(workload(0)),
            redis: vec![Workload {
                desired: 1,
                ..workload(0)
            }],
            ..Observed::default()
        };
        let s1 = compute(&c, None, &observed, None, false, &now);
        assert_eq!(condition(&s1, "Ready").status, "False");
        assert_eq!(condition(&s1, "Progressing").status, "True");
        assert_eq!(condition(&s1, "RedisReady").status, "False");
        assert_eq!(s1.observed_generation, Some(3));
        c.status = Some(s1.clone());
        assert_eq!(
            compute(&c, None, &observed, None, false, &later),
            s1,
            "no-op is stable"
        );

        let ready = Observed {
            server: Some(workload(2)),
            redis: vec![Workload {
                desired: 1,
                ..workload(1)
            }],
            ..Observed::default()
        };
        let s2 = compute(&c, None, &ready, None, false, &later);
        assert_eq!(condition(&s2, "Ready").status, "True");
        assert_eq!(condition(&s2, "Ready").last_transition_time, later);
        assert_eq!(
            condition(&s2, "Degraded").last_transition_time,
            now,
            "not flipped"
        );
        assert_eq!(
            s2.selector.as_deref(),
            Some(
                "app.kubernetes.io/component=server,app.kubernetes.io/instance=x,app.kubernetes.io/name=sockudo"
            )
        );
    }

    #[test]
    fn an_interconnect_change_warns_until_the_rollout_ends() {
        let now = Time("2024-01-01T00:00:00Z".parse().unwrap());
        let desired = |interconnect: &str| Desired {
            children: vec![],
            skipped: vec![],
            warnings: vec![],
            config_hash: "h".into(),
            interconnect: interconnect.into(),
        };
        let ready = Observed {
            server: Some(workload(2)),
            ..Observed::default()
        };
        let rolling = Observed {
            server: Some(Workload {
                updated: 1,
                ..workload(2)
            }),
            ..Observed::default()
        };
        let mut c = cluster();
        // First rollout: nothing to split, recorded once complete.
        let s = compute(&c, Some(&desired("redis A")), &rolling, None, false, &now);
        assert_eq!((s.interconnect.as_deref(), s.warnings.len()), (None, 0));
        let s = compute(&c, Some(&desired("redis A")), &ready, None, false, &now);
        assert_eq!(s.interconnect.as_deref(), Some("redis A"));
        c.status = Some(s);
        // A config change that keeps the interconnect: no warning while it rolls.
        let s = compute(&c, Some(&desired("redis A")), &rolling, None, false, &now);
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        // The adapter changes: warned while rolling, recorded (and quiet) once done.
        let s = compute(&c, Some(&desired("nats B")), &rolling, None, false, &now);
        assert_eq!(s.warnings, vec![split_warning("redis A", "nats B")]);
        assert_eq!(s.interconnect.as_deref(), Some("redis A"));
        c.status = Some(s);
        let s = compute(&c, Some(&desired("nats B")), &ready, None, false, &now);
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        assert_eq!(s.interconnect.as_deref(), Some("nats B"));
    }

    #[test]
    fn no_condition_has_an_empty_message() {
        let now = Time("2024-01-01T00:00:00Z".parse().unwrap());
        let ready = Observed {
            server: Some(workload(2)),
            ..Observed::default()
        };
        let problem = Problem::SecretMissing(vec!["s".into()]);
        for (observed, problem) in [
            (Observed::default(), None),
            (ready.clone(), None),
            (ready, Some(&problem)),
        ] {
            let s = compute(&cluster(), None, &observed, problem, true, &now);
            for c in &s.conditions {
                assert!(!c.message.is_empty(), "{c:?}");
            }
        }
    }

    #[test]
    fn a_missing_secret_degrades_with_a_reason() {
        let now = Time("2024-01-01T00:00:00Z".parse().unwrap());
        let problem = Problem::SecretMissing(vec!["s".into()]);
        let s = compute(
            &cluster(),
            None,
            &Observed::default(),
            Some(&problem),
            true,
            &now,
        );
        assert_eq!(condition(&s, "Degraded").status, "True");
        assert_eq!(condition(&s, "Degraded").reason, "SecretMissing");
        assert_eq!(condition(&s, "Ready").reason, "SecretMissing");
        assert_eq!(condition(&s, "ReconciliationPaused").status, "True");
    }

    fn managed_redis_cluster() -> SockudoCluster {
        let spec: SockudoClusterSpec = serde_json::from_value(serde_json::json!({
            "replicas": 2, "adapter": {"driver": "redis-cluster"},
            "redis": {"mode": "cluster", "managed": {"masters": 3, "replicasPerMaster": 1}},
            "apps": [{"id": "1", "secretRef": {"name": "s"}}]
        }))
        .unwrap();
        let mut c = SockudoCluster::new("x", spec);
        c.metadata.namespace = Some("ns".into());
        c.metadata.generation = Some(3);
        c
    }

    fn draining(unreachable: Vec<UnreachablePod>) -> Observed {
        Observed {
            server: Some(workload(2)),
            redis: vec![workload(2)],
            redis_cluster: Some(RedisClusterStatus {
                phase: RedisClusterPhase::Pending,
                stateful_set_pods: Some(8),
                unreachable,
                ..RedisClusterStatus::default()
            }),
            ..Observed::default()
        }
    }

    #[test]
    fn a_departing_pod_that_does_not_answer_stalls_the_redis_cluster_with_a_warning() {
        let now = Time("2024-01-01T00:00:00Z".parse().unwrap());
        let mut c = managed_redis_cluster();
        let moving = compute(&c, None, &draining(vec![]), None, false, &now);
        let stalled = condition(&moving, "RedisClusterStalled");
        assert_eq!(
            (stalled.status.as_str(), stalled.reason.as_str()),
            ("False", "AsExpected")
        );
        assert!(!conditions::is_warning(stalled));

        // Pod 7 departs and never answers; pod 2 (not departing) is merely not up yet.
        let gone = vec![
            UnreachablePod {
                ordinal: 2,
                departing: false,
                error: "Redis node x-redis-cluster-2.x-redis-cluster.ns.svc:6379 did not answer in time".into(),
            },
            UnreachablePod {
                ordinal: 7,
                departing: true,
                error: "Redis node x-redis-cluster-7.x-redis-cluster.ns.svc:6379 did not answer in time".into(),
            },
        ];
        c.status = Some(moving.clone());
        let s = compute(&c, None, &draining(gone), None, false, &now);
        let stalled = condition(&s, "RedisClusterStalled");
        assert!(conditions::is_warning(stalled), "a Warning Event");
        let flipped = conditions::flipped(&moving.conditions, &s.conditions);
        assert!(flipped.iter().any(|f| f.type_ == "RedisClusterStalled"));
        let redis = condition(&s, "RedisReady");
        assert_eq!(
            (redis.reason.as_str(), redis.message.as_str()),
            (
                "ClusterPending",
                "Redis Cluster Pending: pod(s) 2, 7 do not answer"
            )
        );
        insta::assert_yaml_snapshot!(
            "redis_cluster_stalled",
            serde_json::json!({
                "type": stalled.type_,
                "status": stalled.status,
                "reason": stalled.reason,
                "message": stalled.message,
            })
        );
    }
}
