//! Names, labels and owner references of the children: one place, so builders, pruning and RBAC
//! agree.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::crd::SockudoCluster;

/// The field manager of every server-side apply, and the `managed-by` label value.
pub const MANAGER: &str = "sockudo-operator";

pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
pub const LABEL_VERSION: &str = "app.kubernetes.io/version";

/// The component of the server pods.
pub const SERVER_COMPONENT: &str = "server";

/// Labels that select one component's pods (stable: they are in immutable selectors).
pub fn selector_labels(
    cluster: &SockudoCluster,
    app: &str,
    component: &str,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_string(), app.to_string()),
        (LABEL_INSTANCE.to_string(), cluster.name_any()),
        (LABEL_COMPONENT.to_string(), component.to_string()),
    ])
}

/// All labels of a child: the selector labels plus ownership and grouping.
pub fn labels(cluster: &SockudoCluster, app: &str, component: &str) -> BTreeMap<String, String> {
    let mut l = selector_labels(cluster, app, component);
    l.insert(LABEL_MANAGED_BY.into(), MANAGER.into());
    l.insert(LABEL_PART_OF.into(), "sockudo".into());
    l
}

/// Labels on every child of `cluster`: what pruning lists by.
pub fn ownership_selector(cluster: &SockudoCluster) -> String {
    format!(
        "{LABEL_INSTANCE}={},{LABEL_MANAGED_BY}={MANAGER}",
        cluster.name_any()
    )
}

/// The `status.selector` of the scale subresource: the server pods.
pub fn server_selector_string(cluster: &SockudoCluster) -> String {
    selector_labels(cluster, "sockudo", SERVER_COMPONENT)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn owner_reference(cluster: &SockudoCluster) -> OwnerReference {
    cluster
        .controller_owner_ref(&())
        .expect("a SockudoCluster read from the API has a name and uid")
}

/// Metadata of a child named `name`, labelled for `app`/`component` and owned by `cluster`.
pub fn child_meta(
    cluster: &SockudoCluster,
    name: String,
    app: &str,
    component: &str,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: cluster.namespace(),
        labels: Some(labels(cluster, app, component)),
        owner_references: Some(vec![owner_reference(cluster)]),
        ..ObjectMeta::default()
    }
}

pub fn namespace(cluster: &SockudoCluster) -> String {
    cluster.namespace().unwrap_or_else(|| "default".into())
}

pub fn config_map(cluster: &SockudoCluster) -> String {
    format!("{}-config", cluster.name_any())
}

pub fn apps_secret(cluster: &SockudoCluster) -> String {
    format!("{}-apps", cluster.name_any())
}

pub fn client_service(cluster: &SockudoCluster) -> String {
    cluster.name_any()
}

pub fn metrics_service(cluster: &SockudoCluster) -> String {
    format!("{}-metrics", cluster.name_any())
}
