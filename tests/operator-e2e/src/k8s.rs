//! Reading and driving objects in a test namespace: examples, children, readiness, status.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Deserialize;
use serde_json::{Value, json};
use sockudo_operator::build::{self, Capabilities, Desired, Inputs};
use sockudo_operator::controller::credentials;
use sockudo_operator::crd::SockudoCluster;

use crate::plane::TEST_MANAGER;
use crate::{PATIENCE, eventually, workspace_root};

/// The optional APIs of the 1.20 test API server: none (no policy/v1, no autoscaling/v2, no
/// ServiceMonitor CRD, no native preStop sleep, no PVC retention policy).
pub const CAPS_1_20: Capabilities = Capabilities {
    pdb_v1: false,
    hpa_v2: false,
    service_monitor: false,
    native_sleep: false,
    pvc_retention: false,
};

/// The documents of `operator/examples/NAME`.
pub fn example_docs(name: &str) -> Vec<Value> {
    let path = workspace_root().join("operator/examples").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).expect("yaml"))
        .filter(|v| !v.is_null())
        .collect()
}

/// Every example file name, sorted.
pub fn example_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(workspace_root().join("operator/examples"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    names
}

/// Creates the Secrets of an example and its SockudoCluster in `ns` (as a user would with
/// `kubectl apply`); returns the SockudoCluster's name.
pub async fn apply_example(client: &Client, ns: &str, name: &str) -> String {
    let mut cluster_name = None;
    for doc in example_docs(name) {
        match doc["kind"].as_str() {
            Some("Secret") => {
                let s: Secret = serde_json::from_value(doc).unwrap();
                create_or_replace_secret(client, ns, s).await;
            }
            Some("SockudoCluster") => {
                let c: SockudoCluster = serde_json::from_value(doc).unwrap();
                cluster_name = Some(c.name_any());
                create_cluster(client, ns, &c).await;
            }
            other => panic!("{name}: unexpected kind {other:?}"),
        }
    }
    cluster_name.expect("an example has a SockudoCluster")
}

pub async fn create_cluster(client: &Client, ns: &str, c: &SockudoCluster) -> SockudoCluster {
    let api: Api<SockudoCluster> = Api::namespaced(client.clone(), ns);
    let mut c = c.clone();
    c.metadata.namespace = Some(ns.into());
    api.create(&PostParams::default(), &c)
        .await
        .unwrap_or_else(|e| panic!("create SockudoCluster {}: {e}", c.name_any()))
}

pub async fn create_or_replace_secret(client: &Client, ns: &str, mut s: Secret) {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    s.metadata.namespace = Some(ns.into());
    s.metadata.managed_fields = None;
    api.patch(
        &s.name_any(),
        &PatchParams::apply(TEST_MANAGER).force(),
        &Patch::Apply(&s),
    )
    .await
    .unwrap_or_else(|e| panic!("apply Secret {}: {e}", s.name_any()));
}

/// A Secret with string data.
pub fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        string_data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Secret::default()
    }
}

pub async fn get_cluster(client: &Client, ns: &str, name: &str) -> SockudoCluster {
    Api::<SockudoCluster>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("get SockudoCluster {ns}/{name}: {e}"))
}

/// Merge-patches the SockudoCluster (spec or metadata), as `kubectl patch --type merge` would.
pub async fn patch_cluster(client: &Client, ns: &str, name: &str, patch: Value) {
    Api::<SockudoCluster>::namespaced(client.clone(), ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("patch SockudoCluster {ns}/{name}: {e}"));
}

pub fn condition<'a>(c: &'a SockudoCluster, type_: &str) -> Option<&'a Condition> {
    c.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

pub fn condition_is(c: &SockudoCluster, type_: &str, status: &str) -> bool {
    condition(c, type_).is_some_and(|c| c.status == status)
}

/// Short description of the conditions, for failure messages.
pub fn describe(c: &SockudoCluster) -> String {
    match &c.status {
        None => "no status".into(),
        Some(s) => format!(
            "observedGeneration={:?} generation={:?} conditions=[{}] skipped={:?}",
            s.observed_generation,
            c.metadata.generation,
            s.conditions
                .iter()
                .map(|c| format!("{}={} ({}: {})", c.type_, c.status, c.reason, c.message))
                .collect::<Vec<_>>()
                .join("; "),
            s.skipped
        ),
    }
}

/// Waits until the SockudoCluster satisfies `pred` (its status describes the current
/// generation unless `pred` says otherwise).
pub async fn wait_cluster(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    pred: impl Fn(&SockudoCluster) -> bool,
) -> SockudoCluster {
    eventually(what, PATIENCE, || {
        let api: Api<SockudoCluster> = Api::namespaced(client.clone(), ns);
        let pred = &pred;
        async move {
            let c = api.get(name).await.map_err(|e| e.to_string())?;
            if pred(&c) { Ok(c) } else { Err(describe(&c)) }
        }
    })
    .await
}

/// True when the status describes the current generation.
pub fn observed_current(c: &SockudoCluster) -> bool {
    c.status.as_ref().and_then(|s| s.observed_generation) == c.metadata.generation
}

/// One child as found in the namespace.
#[derive(Debug, Clone)]
pub struct Live {
    pub kind: &'static str,
    pub meta: ObjectMeta,
}

async fn list_meta<K>(client: &Client, ns: &str, kind: &'static str, out: &mut Vec<Live>)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let list = api
        .list_metadata(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("list {kind}: {e}"));
    out.extend(list.items.into_iter().map(|o| Live {
        kind,
        meta: o.metadata,
    }));
}

/// Every object in `ns` of a kind the operator writes, whose owner is the SockudoCluster `uid`.
pub async fn owned_children(client: &Client, ns: &str, uid: &str) -> Vec<Live> {
    let mut all = Vec::new();
    list_meta::<ConfigMap>(client, ns, "ConfigMap", &mut all).await;
    list_meta::<Secret>(client, ns, "Secret", &mut all).await;
    list_meta::<Service>(client, ns, "Service", &mut all).await;
    list_meta::<Deployment>(client, ns, "Deployment", &mut all).await;
    list_meta::<StatefulSet>(client, ns, "StatefulSet", &mut all).await;
    list_meta::<Ingress>(client, ns, "Ingress", &mut all).await;
    all.retain(|l| {
        l.meta
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.uid == uid)
    });
    all
}

pub fn kind_names(children: &[Live]) -> BTreeSet<(String, String)> {
    children
        .iter()
        .map(|l| (l.kind.to_string(), l.meta.name.clone().unwrap_or_default()))
        .collect()
}

/// What the operator's pure builders want for the live SockudoCluster, with the Secrets and
/// generated credentials as they are in the API server, for the 1.20 test server's APIs.
pub async fn desired_for(client: &Client, cluster: &SockudoCluster) -> Desired {
    let ns = cluster.namespace().unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let (data, missing) = credentials::read_referenced(&secrets, cluster)
        .await
        .expect("read Secrets");
    assert!(missing.is_empty(), "missing Secrets: {missing:?}");
    let generated = credentials::generated(&secrets, cluster)
        .await
        .expect("read generated credentials");
    build::desired(&Inputs {
        cluster,
        secrets: &data,
        generated: &generated,
        capabilities: CAPS_1_20,
    })
}

pub fn desired_kind_names(d: &Desired) -> BTreeSet<(String, String)> {
    d.children
        .iter()
        .map(|c| (c.kind().to_string(), c.name().to_string()))
        .collect()
}

/// Waits until the children owned by `cluster` are exactly `want`; returns them.
pub async fn wait_children(
    client: &Client,
    ns: &str,
    uid: &str,
    want: &BTreeSet<(String, String)>,
) -> Vec<Live> {
    eventually("the expected children", PATIENCE, || async {
        let live = owned_children(client, ns, uid).await;
        let got = kind_names(&live);
        if &got == want {
            Ok(live)
        } else {
            Err(format!(
                "missing {:?}, unexpected {:?}",
                want.difference(&got).collect::<Vec<_>>(),
                got.difference(want).collect::<Vec<_>>()
            ))
        }
    })
    .await
}

pub async fn deployment(client: &Client, ns: &str, name: &str) -> Deployment {
    Api::<Deployment>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("get Deployment {ns}/{name}: {e}"))
}

/// The config hash in the server Deployment's pod template.
pub fn template_hash(d: &Deployment) -> Option<String> {
    d.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(build::hash::CONFIG_HASH_ANNOTATION)
        .cloned()
}

/// Marks every pod of `ns` Running and Ready, as a kubelet would (there is none here). The
/// ReplicaSet and StatefulSet controllers then report ready replicas on their own.
pub async fn make_pods_ready(client: &Client, ns: &str) -> usize {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods.list(&ListParams::default()).await.expect("list pods");
    let mut n = 0;
    for pod in list.items {
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if ready || pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let cond = |t: &str| json!({"type": t, "status": "True", "lastTransitionTime": now});
        let status = json!({"status": {
            "phase": "Running",
            "podIP": "10.244.0.10",
            "startTime": now,
            "conditions": [cond("PodScheduled"), cond("Initialized"), cond("ContainersReady"), cond("Ready")],
        }});
        match pods
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&status),
            )
            .await
        {
            Ok(_) => n += 1,
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => panic!("patch pod status: {e}"),
        }
    }
    n
}

/// Keeps making pods Ready until the SockudoCluster is Ready.
pub async fn drive_to_ready(client: &Client, ns: &str, name: &str) -> SockudoCluster {
    eventually("the SockudoCluster to become Ready", PATIENCE, || async {
        make_pods_ready(client, ns).await;
        let c = get_cluster(client, ns, name).await;
        if condition_is(&c, "Ready", "True") && observed_current(&c) {
            Ok(c)
        } else {
            Err(describe(&c))
        }
    })
    .await
}

/// Events about the SockudoCluster `name`, recorded by the operator.
pub async fn operator_events(client: &Client, ns: &str, name: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                && e.reporting_controller.as_deref()
                    == Some(sockudo_operator::build::names::MANAGER)
        })
        .collect()
}

/// resourceVersion of every child, by (kind, name).
pub fn versions(children: &[Live]) -> BTreeMap<(String, String), String> {
    children
        .iter()
        .map(|l| {
            (
                (l.kind.to_string(), l.meta.name.clone().unwrap_or_default()),
                l.meta.resource_version.clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// The time of the operator's last write of each child (its managedFields entry): unlike the
/// resourceVersion, untouched by the controller-manager's status updates.
pub fn operator_write_times(children: &[Live]) -> BTreeMap<(String, String), String> {
    children
        .iter()
        .map(|l| {
            let t = l
                .meta
                .managed_fields
                .iter()
                .flatten()
                .filter(|m| m.manager.as_deref() == Some(sockudo_operator::build::names::MANAGER))
                .map(|m| format!("{:?}/{:?}", m.operation, m.time))
                .collect::<Vec<_>>()
                .join(",");
            (
                (l.kind.to_string(), l.meta.name.clone().unwrap_or_default()),
                t,
            )
        })
        .collect()
}

/// Waits for a status of the current generation, then for exactly the children the builders want
/// for it; returns the SockudoCluster and those children.
pub async fn wait_reconciled(client: &Client, ns: &str, name: &str) -> (SockudoCluster, Vec<Live>) {
    let c = wait_cluster(client, ns, name, "a status", observed_current).await;
    let desired = desired_for(client, &c).await;
    let uid = c.uid().expect("a stored object has a uid");
    let live = wait_children(client, ns, &uid, &desired_kind_names(&desired)).await;
    (c, live)
}

/// Changes a server setting (`logLevel: debug`) as a user would, and waits until the status
/// describes the new generation; returns the SockudoCluster.
pub async fn change_server_setting(client: &Client, ns: &str, name: &str) -> SockudoCluster {
    patch_cluster(
        client,
        ns,
        name,
        json!({"spec": {"server": {"logLevel": "debug"}}}),
    )
    .await;
    wait_cluster(client, ns, name, "the new generation", observed_current).await
}

/// Waits until the server Deployment's pod template carries the config hash the builders want
/// for `cluster` (the pods roll to its settings).
pub async fn wait_rolled(client: &Client, cluster: &SockudoCluster) {
    let ns = cluster.namespace().expect("namespaced");
    let name = cluster.name_any();
    let want = desired_for(client, cluster).await.config_hash;
    eventually("the Deployment to roll", PATIENCE, || async {
        let d = deployment(client, &ns, &name).await;
        (template_hash(&d).as_deref() == Some(want.as_str()))
            .then_some(())
            .ok_or_else(|| format!("{:?}", template_hash(&d)))
    })
    .await;
}
