//! Namespace-scoped operators on their own control plane (no cluster-wide operator there): the
//! chart's `watchScope: namespace` RBAC, and leader election between two replicas.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use sockudo_operator::build::names;
use sockudo_operator::controller::{Config, LeaseConfig, redis_cluster};
use sockudo_operator::crd::{RedisClusterPhase, SockudoCluster};
use sockudo_operator_e2e::k8s::*;
use sockudo_operator_e2e::{PATIENCE, eventually, run, scoped};
use sockudo_test_backends::{RedisServer, free_port};

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
        let (_, live) = wait_reconciled(&client, &ns, &name).await;
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
        let c = change_server_setting(&client, &ns, &name).await;
        wait_rolled(&client, &c).await;

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
        wait_reconciled(&client, &ns, &name).await;
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
        let c = change_server_setting(&client, &ns, &name).await;
        wait_rolled(&client, &c).await;
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

/// Six `redis-server --cluster-enabled yes` processes on loopback, one per pod of `target`
/// (each has met nobody and owns no slot, as fresh pods), started with the password the operator
/// generated into the auth Secret, as the pods would read it from there.
async fn start_redis_cluster_nodes(ports: &[u16], password: &str) -> Vec<RedisServer> {
    let ports = ports.to_vec();
    let password = password.to_string();
    tokio::task::spawn_blocking(move || {
        ports
            .iter()
            .map(|&p| {
                RedisServer::start_cluster_node_on(p, Some(&password))
                    .unwrap_or_else(|e| panic!("redis-server on {p}: {e}"))
            })
            .collect()
    })
    .await
    .expect("join")
}

/// `n` distinct free loopback ports.
fn free_ports(n: usize) -> Vec<u16> {
    let mut ports = BTreeSet::new();
    while ports.len() < n {
        ports.insert(free_port());
    }
    ports.into_iter().collect()
}

/// The managed Redis Cluster example (6 masters) is formed by the operator and the
/// SockudoCluster reaches Ready. There is no kubelet here, so six real `redis-server` processes
/// in cluster mode stand in for the six pods: the operator's backend-address override maps each
/// pod's DNS name (`<sts>-<i>.<sts>.<ns>.svc:6379`) to one of them, exactly the path it uses to
/// reach the pods in a real cluster. The test marks the pods Ready as a kubelet would.
#[test]
fn a_managed_redis_cluster_is_formed_and_the_cluster_becomes_ready() {
    run(async {
        let plane = scoped().await;
        let client = plane.admin();
        let ns = plane.namespace("rc-ready").await;
        plane.grant_chart_namespace_rbac(&ns).await;
        let example = "redis-cluster-managed.yaml";

        // Where the operator will look for the pods, from the example as it will be stored.
        let mut cluster: SockudoCluster = example_docs(example)
            .into_iter()
            .find(|d| d["kind"] == "SockudoCluster")
            .map(|d| serde_json::from_value(d).unwrap())
            .unwrap();
        cluster.metadata.namespace = Some(ns.clone());
        let target = redis_cluster::target(&cluster, &BTreeMap::new(), &Config::default())
            .expect("the example uses a managed Redis Cluster");
        assert_eq!(target.goal.pods(), 6, "{target:?}");
        let ports = free_ports(target.goal.pods());
        let overrides: BTreeMap<String, String> = target
            .nodes
            .addresses
            .iter()
            .zip(&ports)
            .map(|(pod, port)| (pod.clone(), format!("127.0.0.1:{port}")))
            .collect();

        let operator = plane.start_operator(Config {
            namespace: Some(ns.clone()),
            instance: Some("e2e-redis-cluster".into()),
            backend_addresses: overrides,
            ..Config::default()
        });
        let name = apply_example(&client, &ns, example).await;

        // The generated password, as the pods get it from the auth Secret.
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let auth = format!("{}-auth", target.name);
        let password = eventually("the generated auth Secret", PATIENCE, || async {
            let s = secrets.get_opt(&auth).await.map_err(|e| e.to_string())?;
            s.and_then(|s| s.data)
                .and_then(|d| d.get("password").cloned())
                .map(|p| String::from_utf8(p.0).unwrap())
                .filter(|p| !p.is_empty())
                .ok_or_else(|| format!("no {auth} yet"))
        })
        .await;
        let nodes = start_redis_cluster_nodes(&ports, &password).await;

        let c = eventually(
            "the Redis Cluster to be formed and the SockudoCluster Ready",
            Duration::from_secs(240),
            || async {
                make_pods_ready(&client, &ns).await;
                let c = get_cluster(&client, &ns, &name).await;
                let formed = c
                    .status
                    .as_ref()
                    .and_then(|s| s.redis_cluster.as_ref())
                    .is_some_and(|r| r.phase == RedisClusterPhase::Ready);
                if formed
                    && condition_is(&c, "RedisReady", "True")
                    && condition_is(&c, "Ready", "True")
                    && observed_current(&c)
                {
                    Ok(c)
                } else {
                    Err(format!(
                        "{} redisCluster={:?}",
                        describe(&c),
                        c.status.as_ref().and_then(|s| s.redis_cluster.as_ref())
                    ))
                }
            },
        )
        .await;
        let rc = c.status.as_ref().unwrap().redis_cluster.clone().unwrap();
        assert_eq!(
            (rc.masters, rc.replicas, rc.slots_assigned),
            (6, 0, 16384),
            "{rc:?}"
        );

        // What the nodes themselves say.
        for node in &nodes {
            let info = node.cli(&["cluster", "info"]).expect("redis-cli");
            for want in [
                "cluster_state:ok",
                "cluster_slots_assigned:16384",
                "cluster_size:6",
                "cluster_known_nodes:6",
            ] {
                assert!(info.contains(want), "node {}: {want}\n{info}", node.port);
            }
        }
        // And a cluster client can use it: keys spread over every master, following MOVED.
        for i in 0..24 {
            let key = format!("e2e-key-{i}");
            let out = nodes[0]
                .cli(&["-c", "SET", &key, "v"])
                .unwrap_or_else(|e| panic!("SET {key}: {e}"));
            assert_eq!(out.trim(), "OK", "SET {key}");
        }

        operator.stop().await.expect("the operator stops cleanly");
        drop(nodes);
    });
}
