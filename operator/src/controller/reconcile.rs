//! One reconcile: read inputs -> validate -> build (pure) -> apply (SSA) and prune -> status.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use super::apply::{self, Applied};
use super::context::Context;
use super::error::Error;
use super::redis_cluster::{self, Target};
use super::status::{self, Problem};
use super::{conditions, credentials, observe, volumes};
use crate::build::{self, Inputs, names};
use crate::crd::{GROUP, RedisClusterPhase, SockudoCluster, SockudoClusterStatus, VERSION};
use crate::validate::validate;

/// How often a settled SockudoCluster is looked at again, to catch drift nobody told us about.
const RESYNC: Duration = Duration::from_secs(300);
/// How often a SockudoCluster waiting for pods or backends is looked at.
const WAITING: Duration = Duration::from_secs(10);
/// How often a managed Redis Cluster being bootstrapped, rebalanced or drained is stepped: each
/// step waits on gossip the previous one started, which takes a second or two.
const BOOTSTRAPPING: Duration = Duration::from_secs(2);

fn key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

pub async fn reconcile(
    guard: Arc<DeserializeGuard<SockudoCluster>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let result = match &guard.0 {
        Ok(cluster) => reconcile_valid(cluster, &ctx).await,
        Err(invalid) => {
            // A malformed object (wrong type in a field) is reported and left alone; the other
            // SockudoClusters keep being reconciled.
            warn!(object = %key(&invalid.metadata), error = %invalid.error, "malformed SockudoCluster");
            let reference = ObjectReference {
                api_version: Some(format!("{GROUP}/{VERSION}")),
                kind: Some("SockudoCluster".into()),
                name: invalid.metadata.name.clone(),
                namespace: invalid.metadata.namespace.clone(),
                uid: invalid.metadata.uid.clone(),
                ..ObjectReference::default()
            };
            ctx.event(
                &reference,
                EventType::Warning,
                "InvalidObject",
                &invalid.error,
            )
            .await;
            Ok(Action::await_change())
        }
    };
    let meta = guard.meta();
    match &result {
        Ok(_) => ctx.backoff.succeeded(&key(meta)),
        Err(e) => ctx.health.metrics.failed(e.label()),
    }
    ctx.health.metrics.reconciled(started.elapsed());
    result
}

pub fn error_policy(
    guard: Arc<DeserializeGuard<SockudoCluster>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let delay = ctx.backoff.failed(&key(guard.meta()));
    warn!(object = %key(guard.meta()), %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// The live workloads, read instead of applied (paused, or blocked by a problem).
async fn read_live(ctx: &Context, ns: &str, cluster: &SockudoCluster) -> Result<Applied, Error> {
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    let selector = names::ownership_selector(cluster);
    Ok(Applied {
        deployment: deployments.get_opt(&cluster.name_any()).await?,
        stateful_sets: sets
            .list(&ListParams::default().labels(&selector))
            .await?
            .items,
        recreated: Vec::new(),
    })
}

async fn reconcile_valid(cluster: &SockudoCluster, ctx: &Context) -> Result<Action, Error> {
    let ns = cluster.namespace().ok_or(Error::NoNamespace)?;
    let paused = cluster.is_paused();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);

    let mut problem = None;
    let mut desired = None;
    let mut applied = None;
    let mut apply_error = None;
    let mut bootstrap_target = None;
    let mut claims = None;
    let errors = validate(&cluster.spec);
    if !errors.is_empty() {
        problem = Some(Problem::InvalidSpec(
            errors.iter().map(ToString::to_string).collect(),
        ));
    } else {
        let (secret_data, missing) = credentials::read_referenced(&secrets, cluster).await?;
        if !missing.is_empty() {
            problem = Some(Problem::SecretMissing(missing));
        } else {
            let generated = credentials::generated(&secrets, cluster).await?;
            bootstrap_target = redis_cluster::target(cluster, &generated, &ctx.config);
            let inputs = Inputs {
                cluster,
                secrets: &secret_data,
                generated: &generated,
                capabilities: ctx.capabilities().await,
            };
            let mut built = build::desired(&inputs);
            if !paused {
                let outcome = async {
                    // The claims a smaller spec cannot shrink keep their templates' size.
                    let existing = volumes::read(&ctx.client, &ns, &built.children).await?;
                    volumes::keep_claim_sizes(&mut built.children, &existing);
                    let a = apply::apply(&ctx.client, &ns, &built.children).await?;
                    apply::prune(
                        &ctx.client,
                        &ns,
                        cluster,
                        &built.children,
                        inputs.capabilities,
                    )
                    .await?;
                    Ok::<_, Error>((a, existing))
                }
                .await;
                match outcome {
                    Ok((a, existing)) => {
                        applied = Some(a);
                        claims = volumes::grow(&ctx.client, &ns, &existing).await?;
                    }
                    Err(e) => {
                        problem = Some(Problem::ApplyFailed(e.to_string()));
                        apply_error = Some(e);
                    }
                }
            }
            desired = Some(built);
        }
    }
    let applied = match applied {
        Some(a) => a,
        None => read_live(ctx, &ns, cluster).await?,
    };
    for (name, reason) in &applied.recreated {
        let note = format!(
            "StatefulSet {name} deleted (its pods and volumes kept) and created again: {reason}"
        );
        ctx.event(
            &cluster.object_ref(&()),
            EventType::Normal,
            "Recreated",
            &note,
        )
        .await;
    }

    for grown in claims.iter().flatten() {
        if let volumes::Outcome::Grown { claim, from, to } = grown {
            let note = format!("PersistentVolumeClaim {claim} grown from {from} to {to}");
            ctx.event(
                &cluster.object_ref(&()),
                EventType::Normal,
                "VolumeGrown",
                &note,
            )
            .await;
        }
    }

    let mut observed = observe::observed(cluster, &applied);
    observed.volumes = claims;
    // Paused means nothing is changed, the cluster's topology included.
    if let Some(target) = bootstrap_target.as_ref().filter(|_| !paused)
        && let Some(s) = bootstrap_step(target, &observed).await
    {
        observed.redis_cluster = Some(s);
    }
    let now = Time(Timestamp::now());
    let new = status::compute(
        cluster,
        desired.as_ref(),
        &observed,
        problem.as_ref(),
        paused,
        &now,
    );
    write_status(ctx, cluster, &ns, new.clone()).await?;

    if let Some(e) = apply_error {
        return Err(e);
    }
    let ready = new.is_ready();
    let bootstrapping = new.redis_cluster.as_ref().is_some_and(|c| {
        matches!(
            c.phase,
            RedisClusterPhase::Bootstrapping
                | RedisClusterPhase::Rebalancing
                | RedisClusterPhase::Draining
        )
    });
    Ok(match problem {
        Some(Problem::InvalidSpec(_)) => Action::await_change(),
        _ if bootstrapping => Action::requeue(BOOTSTRAPPING),
        _ if ready => Action::requeue(RESYNC),
        _ => Action::requeue(WAITING),
    })
}

/// One step of the managed Redis Cluster (bootstrap, rebalance or drain), once its pods are
/// ready (or its addresses are overridden for tests), or at once while the StatefulSet holds
/// departing pods: one of those not becoming ready is what blocks a drain, and the step is what
/// names it (`unreachable`, then the `RedisClusterStalled` condition). A failing action is
/// logged and reported in `lastStep` with what was observed, not an error of the reconcile: the
/// next step observes again. Until the pods are ready the previous status is kept,
/// `statefulSetPods` included, so the StatefulSet keeps its size.
async fn bootstrap_step(
    target: &Target,
    observed: &super::status::Observed,
) -> Option<crate::crd::RedisClusterStatus> {
    let pods_ready = observed
        .redis
        .iter()
        .any(|w| w.name == target.name && w.is_ready());
    let draining = target.nodes.addresses.len() > target.goal.pods();
    if !pods_ready && !target.overridden && !draining {
        return None;
    }
    let next = redis_cluster::next_step(&target.nodes, target.goal).await;
    Some(match next.take(&target.nodes).await {
        Ok(()) => next.status,
        Err(e) => {
            warn!(error = %e, cluster = %target.name, "Redis Cluster step failed");
            next.failed(&e)
        }
    })
}

/// Writes the status only when it changed, and records an Event per condition that flipped.
async fn write_status(
    ctx: &Context,
    cluster: &SockudoCluster,
    ns: &str,
    new: SockudoClusterStatus,
) -> Result<(), Error> {
    let old = cluster.status.clone().unwrap_or_default();
    if cluster.status.as_ref() == Some(&new) {
        return Ok(());
    }
    let api: Api<SockudoCluster> = Api::namespaced(ctx.client.clone(), ns);
    let patch = json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": "SockudoCluster",
        "status": new,
    });
    api.patch_status(
        &cluster.name_any(),
        &PatchParams::apply(names::MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    let reference = cluster.object_ref(&());
    for c in conditions::flipped(&old.conditions, &new.conditions) {
        let note = format!("{}={}: {}", c.type_, c.status, c.message);
        info!(object = %key(&cluster.metadata), condition = %c.type_, status = %c.status, reason = %c.reason, "condition changed");
        let kind = if conditions::is_warning(c) {
            EventType::Warning
        } else {
            EventType::Normal
        };
        ctx.event_for_condition(&reference, kind, &c.type_, &c.reason, &note)
            .await;
    }
    Ok(())
}

/// Builds an Event for `reference`.
pub fn event(type_: EventType, reason: &str, note: &str) -> Event {
    event_with_action(type_, "Reconcile", reason, note)
}

/// Builds an Event with its `action`. kube's recorder folds Events with the same type, action and
/// reason into one series (keeping the first note), so each condition's transitions get their
/// own action: `Ready` becoming `Ready` and `RedisReady` becoming `Ready` are two Events.
pub fn event_with_action(type_: EventType, action: &str, reason: &str, note: &str) -> Event {
    Event {
        type_,
        reason: reason.chars().take(128).collect(),
        note: Some(note.chars().take(1024).collect()),
        action: action.chars().take(128).collect(),
        secondary: None,
    }
}
