//! The controller: watches SockudoClusters, their children and the Secrets they reference, and
//! reconciles each through [`reconcile::reconcile`]. Runnable in-process with [`run`] against any
//! client, which is how the end-to-end tests drive it.

pub mod apply;
pub mod backoff;
pub mod cluster_metrics;
pub mod conditions;
pub mod context;
pub mod credentials;
pub mod discovery;
pub mod error;
pub mod health;
pub mod leader;
pub mod metrics;
pub mod observe;
pub mod reconcile;
pub mod recreate;
pub mod redis_cluster;
pub mod status;
pub mod volumes;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::core::DeserializeGuard;
use kube::runtime::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{info, warn};

pub use context::{Config, Context};
pub use error::Error;
pub use health::Health;
pub use leader::LeaseConfig;

use crate::build::names::{LABEL_MANAGED_BY, MANAGER};
use crate::build::references::referenced_secret_keys;
use crate::crd::SockudoCluster;

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the controller until `shutdown` completes (or leadership is lost).
pub async fn run_until(
    client: Client,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), Error> {
    let health = Arc::new(Health::default());
    if let Some(addr) = config.health_addr {
        health::serve(addr, health.clone()).await?;
    }
    // A standby replica is healthy and ready: it is doing its job, waiting.
    health.ready.store(true, Ordering::Relaxed);
    if let Some(lease) = &config.leader {
        leader::acquire(&client, lease).await?;
    }

    let ns = config.namespace.clone();
    let ns = ns.as_deref();
    let owned = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGER}"));
    let clusters: Api<DeserializeGuard<SockudoCluster>> = api(&client, ns);
    let controller = Controller::new(clusters, watcher::Config::default())
        .owns(api::<Deployment>(&client, ns), owned.clone())
        .owns(api::<StatefulSet>(&client, ns), owned.clone())
        .owns(api::<ConfigMap>(&client, ns), owned.clone())
        .owns(api::<Service>(&client, ns), owned);
    let store = controller.store();
    let _ = health.clusters.set(store.clone());
    // A Secret maps to the SockudoClusters that own it or reference it, so a rotated Secret
    // reconciles them at once.
    let controller = controller.watches(
        api::<Secret>(&client, ns),
        watcher::Config::default(),
        move |secret: Secret| {
            let secret_ns = secret.namespace();
            let name = secret.name_any();
            store
                .state()
                .into_iter()
                .filter(|g| g.meta().namespace == secret_ns)
                .filter(|g| {
                    g.0.as_ref().is_ok_and(|c| {
                        referenced_secret_keys(c).iter().any(|r| r.secret == name)
                            || secret
                                .owner_references()
                                .iter()
                                .any(|o| Some(&o.uid) == c.metadata.uid.as_ref())
                    })
                })
                .map(|g| ObjectRef::from_obj(&*g))
                .collect::<Vec<_>>()
        },
    );

    let ctx = Arc::new(Context::new(client.clone(), config.clone(), health));
    let leader_config = config.leader.clone();
    let lost_lease = {
        let client = client.clone();
        async move {
            match leader_config {
                Some(cfg) => leader::keep(client, cfg).await,
                None => std::future::pending().await,
            }
        }
    };
    let run = controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(object = %obj, "reconciled"),
                Err(e) => warn!(error = %e, "controller"),
            }
        });
    info!(namespace = ?ns, "controller started");
    tokio::select! {
        () = run => {
            if let Some(cfg) = &config.leader {
                leader::release(&client, cfg).await?;
            }
            Ok(())
        }
        e = lost_lease => Err(e),
    }
}

/// Runs the controller until the future is dropped; for tests driving it in-process.
pub async fn run(client: Client, config: Config) -> Result<(), Error> {
    run_until(client, config, std::future::pending()).await
}
