//! Namespace-scoped operators on their own control plane (no cluster-wide operator there): the
//! chart's `watchScope: namespace` RBAC, and leader election between two replicas.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde_json::json;
use sockudo_operator::build::names;
use sockudo_operator::controller::{Config, LeaseConfig};
use sockudo_operator::crd::SockudoCluster;
use sockudo_operator_e2e::k8s::*;
use sockudo_operator_e2e::{PATIENCE, eventually, run, scoped};

/// The Lease's holder and transitions.
async fn lease_state(client: &kube::Client, ns: &str) -> Result<(Option<String>, i32), String> {
    let api: Api<Lease> = Api::namespaced(client.clone(), ns);
    let lease = api
        .get_opt("sockudo-operator")
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no Lease yet")?;
    let spec = lease.spec.unwrap_or_default();
    Ok((
        spec.holder_identity,
        spec.lease_transitions.unwrap_or_default(),
    ))
}

async fn wait_holder(client: &kube::Client, ns: &str, who: &str) -> i32 {
    eventually(&format!("{who} to hold the Lease"), PATIENCE, || async {
        let (holder, transitions) = lease_state(client, ns).await?;
        (holder.as_deref() == Some(who))
            .then_some(transitions)
            .ok_or_else(|| format!("holder {holder:?}"))
    })
    .await
}

/// Reporting instances of the operator's Events about `name`.
async fn event_instances(client: &kube::Client, ns: &str, name: &str) -> Vec<Option<String>> {
    operator_events(client, ns, name)
        .await
        .into_iter()
        .map(|e| e.reporting_instance)
        .collect()
}

/// Under the chart's `watchScope: namespace` RBAC (a Role, no ClusterRole), an operator watching
/// one namespace reconciles a SockudoCluster there to its children, and leaves other namespaces
/// alone.
#[test]
fn a_namespace_scoped_operator_works_under_the_charts_role() {
    run(async {
        let plane = scoped().await;
        let client = plane.admin();
        let ns = plane.namespace("ns-scope").await;
        let other = plane.namespace("ns-scope-other").await;
        plane.grant_chart_namespace_rbac(&ns).await;

        // The operator's user has no cluster-wide rights, and none in the other namespace.
        let op = plane.operator_client();
        let err = Api::<SockudoCluster>::all(op.clone())
            .list(&ListParams::default())
            .await
            .expect_err("no cluster-wide list");
        assert!(
            matches!(&err, kube::Error::Api(s) if s.code == 403),
            "{err}"
        );
        let err = Api::<SockudoCluster>::namespaced(op.clone(), &other)
            .list(&ListParams::default())
            .await
            .expect_err("nothing in another namespace");
        assert!(
            matches!(&err, kube::Error::Api(s) if s.code == 403),
            "{err}"
        );
        Api::<SockudoCluster>::namespaced(op, &ns)
            .list(&ListParams::default())
            .await
            .expect("the Role grants its own namespace");

        let operator = plane.start_operator(Config {
            namespace: Some(ns.clone()),
            instance: Some("e2e-ns-scoped".into()),
            ..Config::default()
        });

        let ignored = apply_example(&client, &other, "1-single-node.yaml").await;
        let name = apply_example(&client, &ns, "2-multi-node-redis.yaml").await;
        let c = wait_cluster(&client, &ns, &name, "a status", observed_current).await;
        let uid = c.uid().unwrap();
        let desired = desired_for(&client, &c).await;
        let live = wait_children(&client, &ns, &uid, &desired_kind_names(&desired)).await;
        for child in &live {
            assert!(
                child
                    .meta
                    .managed_fields
                    .iter()
                    .flatten()
                    .any(|m| m.manager.as_deref() == Some(names::MANAGER)),
                "{} {:?} written by the operator",
                child.kind,
                child.meta.name
            );
        }
        drive_to_ready(&client, &ns, &name).await;

        // A change is picked up too.
        patch_cluster(
            &client,
            &ns,
            &name,
            json!({"spec": {"server": {"logLevel": "debug"}}}),
        )
        .await;
        let c = wait_cluster(&client, &ns, &name, "the new generation", observed_current).await;
        let desired = desired_for(&client, &c).await;
        eventually("the Deployment to roll", PATIENCE, || async {
            let d = deployment(&client, &ns, &name).await;
            (template_hash(&d) == Some(desired.config_hash.clone()))
                .then_some(())
                .ok_or_else(|| format!("{:?}", template_hash(&d)))
        })
        .await;

        // The SockudoCluster of the other namespace was never touched.
        let o = get_cluster(&client, &other, &ignored).await;
        assert!(o.status.is_none(), "other namespace: {}", describe(&o));
        assert!(
            owned_children(&client, &other, &o.uid().unwrap())
                .await
                .is_empty(),
            "no children in the other namespace"
        );

        operator.stop().await.expect("the operator stops cleanly");
    });
}

/// Two replicas with leader election: exactly one holds the Lease and reconciles; when it stops,
/// the other takes over and reconciles a change made after the handover.
#[test]
fn two_replicas_elect_one_leader_and_the_other_takes_over() {
    run(async {
        let plane = scoped().await;
        let client = plane.admin();
        let ns = plane.namespace("leader").await;
        plane.grant_chart_namespace_rbac(&ns).await;
        let config = |identity: &str| Config {
            namespace: Some(ns.clone()),
            leader: Some(LeaseConfig::new(&ns, identity)),
            instance: Some(identity.into()),
            ..Config::default()
        };

        let a = plane.start_operator(config("e2e-leader-a"));
        let t0 = wait_holder(&client, &ns, "e2e-leader-a").await;
        let b = plane.start_operator(config("e2e-leader-b"));

        let name = apply_example(&client, &ns, "2-multi-node-redis.yaml").await;
        let c = wait_cluster(&client, &ns, &name, "a status", observed_current).await;
        let uid = c.uid().unwrap();
        let desired = desired_for(&client, &c).await;
        wait_children(&client, &ns, &uid, &desired_kind_names(&desired)).await;
        eventually("the leader's Events", PATIENCE, || async {
            let got = event_instances(&client, &ns, &name).await;
            (!got.is_empty())
                .then_some(())
                .ok_or("no Events yet".into())
        })
        .await;

        // Several of the standby's retries later, the leader still holds the Lease and every
        // write the operator reported is the leader's.
        tokio::time::sleep(Duration::from_secs(8)).await;
        let (holder, transitions) = lease_state(&client, &ns).await.unwrap();
        assert_eq!(holder.as_deref(), Some("e2e-leader-a"));
        assert_eq!(
            transitions, t0,
            "no leadership change while the leader runs"
        );
        let instances = event_instances(&client, &ns, &name).await;
        assert!(
            instances
                .iter()
                .all(|i| i.as_deref() == Some("e2e-leader-a")),
            "only the leader records Events: {instances:?}"
        );

        // The leader stops (as on SIGTERM): it releases the Lease, the standby takes it.
        a.stop().await.expect("the leader stops cleanly");
        let t1 = eventually(
            "the standby to take the Lease",
            Duration::from_secs(60),
            || async {
                let (holder, transitions) = lease_state(&client, &ns).await?;
                (holder.as_deref() == Some("e2e-leader-b"))
                    .then_some(transitions)
                    .ok_or_else(|| format!("holder {holder:?}"))
            },
        )
        .await;
        assert!(t1 > t0, "a leadership transition is recorded: {t0} -> {t1}");

        // A change made after the handover is reconciled by the new leader.
        patch_cluster(
            &client,
            &ns,
            &name,
            json!({"spec": {"server": {"logLevel": "debug"}}}),
        )
        .await;
        let c = wait_cluster(&client, &ns, &name, "the new generation", observed_current).await;
        let desired = desired_for(&client, &c).await;
        eventually("the Deployment to roll", PATIENCE, || async {
            let d = deployment(&client, &ns, &name).await;
            (template_hash(&d) == Some(desired.config_hash.clone()))
                .then_some(())
                .ok_or_else(|| format!("{:?}", template_hash(&d)))
        })
        .await;
        drive_to_ready(&client, &ns, &name).await;
        eventually("an Event of the new leader", PATIENCE, || async {
            let got = event_instances(&client, &ns, &name).await;
            got.iter()
                .any(|i| i.as_deref() == Some("e2e-leader-b"))
                .then_some(())
                .ok_or_else(|| format!("{got:?}"))
        })
        .await;

        b.stop().await.expect("the new leader stops cleanly");
    });
}
