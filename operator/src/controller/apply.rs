//! Server-side apply of the desired children with one field manager, and pruning of the children
//! no longer wanted.

use std::collections::BTreeSet;
use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::info;

use super::error::Error;
use super::recreate;
use crate::build::{Capabilities, Child, names, service_monitor};
use crate::crd::SockudoCluster;

/// What applying returned: the live workloads, for status, and what had to be re-created.
#[derive(Debug, Default)]
pub struct Applied {
    pub deployment: Option<Deployment>,
    pub stateful_sets: Vec<StatefulSet>,
    /// StatefulSets deleted (orphaning their pods) and created again, with the API server's
    /// reason, for an Event.
    pub recreated: Vec<(String, String)>,
}

fn params() -> PatchParams {
    PatchParams::apply(names::MANAGER).force()
}

async fn ssa<K>(client: &Client, ns: &str, obj: &K) -> Result<K, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    Ok(api
        .patch(&obj.name_any(), &params(), &Patch::Apply(obj))
        .await?)
}

pub async fn apply(client: &Client, ns: &str, children: &[Child]) -> Result<Applied, Error> {
    let mut applied = Applied::default();
    for child in children {
        match child {
            Child::ConfigMap(o) => drop(ssa(client, ns, o).await?),
            Child::Secret(o) => drop(ssa(client, ns, o).await?),
            Child::Service(o) => drop(ssa(client, ns, o).await?),
            Child::Deployment(o) => applied.deployment = Some(ssa(client, ns, o).await?),
            Child::StatefulSet(o) => {
                let api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
                let body = stateful_set_apply_body(o)?;
                let name = o.name_any();
                let live = match api.patch(&name, &params(), &Patch::Apply(&body)).await {
                    Ok(live) => live,
                    Err(e) if recreate::is_immutable_field_change(&e) => {
                        let hash = recreate::immutable_fields_hash(o);
                        if !recreate::delete_orphaning(&api, &name, &hash).await? {
                            return Err(e.into());
                        }
                        info!(%name, "re-creating StatefulSet to change immutable fields");
                        let live = api.patch(&name, &params(), &Patch::Apply(&body)).await?;
                        applied.recreated.push((name, e.to_string()));
                        live
                    }
                    Err(e) => return Err(e.into()),
                };
                applied.stateful_sets.push(live);
            }
            Child::Ingress(o) => drop(ssa(client, ns, o).await?),
            Child::PodDisruptionBudget(o) => drop(ssa(client, ns, o).await?),
            Child::HorizontalPodAutoscaler(o) => drop(ssa(client, ns, o).await?),
            Child::ServiceMonitor(o) => {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(client.clone(), ns, &service_monitor::api_resource());
                api.patch(&o.name_any(), &params(), &Patch::Apply(o))
                    .await?;
            }
        }
    }
    Ok(applied)
}

/// The StatefulSet as applied: each `volumeClaimTemplates[].metadata` carries
/// `creationTimestamp: null`, as the API server stores it (and as Go clients send it). The list is
/// atomic, so without it every apply differs from the stored object and writes the StatefulSet
/// again, whose watch event triggers the next reconcile: a write loop. It is annotated with the
/// hash of its immutable fields (see [`recreate`]).
pub fn stateful_set_apply_body(set: &StatefulSet) -> Result<serde_json::Value, Error> {
    let hash = recreate::immutable_fields_hash(set);
    let mut set = set.clone();
    set.annotations_mut()
        .insert(recreate::IMMUTABLE_FIELDS_ANNOTATION.into(), hash);
    let mut body = serde_json::to_value(&set).map_err(|source| Error::Serialize {
        kind: "StatefulSet",
        name: set.name_any(),
        source,
    })?;
    if let Some(templates) = body
        .pointer_mut("/spec/volumeClaimTemplates")
        .and_then(serde_json::Value::as_array_mut)
    {
        for t in templates {
            if let Some(meta) = t
                .get_mut("metadata")
                .and_then(serde_json::Value::as_object_mut)
            {
                meta.insert("creationTimestamp".into(), serde_json::Value::Null);
            }
        }
    }
    Ok(body)
}

fn owned_by(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid && o.controller == Some(true))
}

async fn prune_kind<K>(
    api: Api<K>,
    cluster: &SockudoCluster,
    keep: &BTreeSet<String>,
) -> Result<(), Error>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    let uid = cluster.uid().unwrap_or_default();
    let list = api
        .list_metadata(&ListParams::default().labels(&names::ownership_selector(cluster)))
        .await?;
    for obj in list.items {
        let name = obj.name_any();
        if owned_by(&obj.metadata, &uid) && !keep.contains(&name) {
            info!(kind = std::any::type_name::<K>(), %name, "pruning child no longer wanted");
            api.delete(&name, &DeleteParams::background()).await?;
        }
    }
    Ok(())
}

/// Deletes children of `cluster` (by label and controller owner reference) that are not in
/// `children`: e.g. the managed Redis once neither adapter, cache nor rate limiter uses it.
pub async fn prune(
    client: &Client,
    ns: &str,
    cluster: &SockudoCluster,
    children: &[Child],
    caps: Capabilities,
) -> Result<(), Error> {
    let keep = |kind: &str| -> BTreeSet<String> {
        children
            .iter()
            .filter(|c| c.kind() == kind)
            .map(|c| c.name().to_string())
            .collect()
    };
    let c = client.clone();
    prune_kind(
        Api::<ConfigMap>::namespaced(c.clone(), ns),
        cluster,
        &keep("ConfigMap"),
    )
    .await?;
    prune_kind(
        Api::<Secret>::namespaced(c.clone(), ns),
        cluster,
        &keep("Secret"),
    )
    .await?;
    prune_kind(
        Api::<Service>::namespaced(c.clone(), ns),
        cluster,
        &keep("Service"),
    )
    .await?;
    prune_kind(
        Api::<Deployment>::namespaced(c.clone(), ns),
        cluster,
        &keep("Deployment"),
    )
    .await?;
    prune_kind(
        Api::<StatefulSet>::namespaced(c.clone(), ns),
        cluster,
        &keep("StatefulSet"),
    )
    .await?;
    prune_kind(
        Api::<Ingress>::namespaced(c.clone(), ns),
        cluster,
        &keep("Ingress"),
    )
    .await?;
    if caps.pdb_v1 {
        prune_kind(
            Api::<PodDisruptionBudget>::namespaced(c.clone(), ns),
            cluster,
            &keep("PodDisruptionBudget"),
        )
        .await?;
    }
    if caps.hpa_v2 {
        prune_kind(
            Api::<HorizontalPodAutoscaler>::namespaced(c.clone(), ns),
            cluster,
            &keep("HorizontalPodAutoscaler"),
        )
        .await?;
    }
    if caps.service_monitor {
        let api: Api<DynamicObject> = Api::namespaced_with(c, ns, &service_monitor::api_resource());
        prune_kind(api, cluster, &keep("ServiceMonitor")).await?;
    }
    Ok(())
}
