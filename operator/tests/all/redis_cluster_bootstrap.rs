//! The Redis Cluster bootstrap against 6 real `redis-server --cluster-enabled yes` processes
//! (password-protected, as the operator deploys them): it forms a 3-master/3-replica cluster
//! (shards of consecutive pods: masters on 0, 2, 4), resumes after being interrupted half-way,
//! and recovers after every process restarts.

use sockudo_operator::controller::redis_cluster::{self, Nodes};
use sockudo_operator::crd::RedisClusterPhase;
use sockudo_test_backends::RedisServer;

use super::redis_cluster_fixture::{
    PASSWORD, THREE, assert_shape, nodes_of, overridden, run_to_ready, start, step_until,
};

fn start_nodes() -> (Vec<RedisServer>, Nodes) {
    let servers = start(THREE.pods());
    let nodes = nodes_of(&servers);
    assert_eq!(nodes.password.as_deref(), Some(PASSWORD));
    (servers, nodes)
}

fn s_nodes(s: &RedisServer) -> String {
    s.cli(&["cluster", "nodes"]).unwrap()
}

/// The slots a node owns by its own account, as `CLUSTER NODES` prints them.
fn own_slots(s: &RedisServer) -> String {
    s_nodes(s)
        .lines()
        .find(|l| l.contains("myself"))
        .map(|l| l.split_whitespace().skip(8).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[tokio::test]
async fn forms_a_healthy_three_master_three_replica_cluster() {
    let (servers, nodes) = start_nodes();
    let status = run_to_ready(&nodes, THREE).await;
    assert_eq!(
        (status.masters, status.replicas, status.slots_assigned),
        (3, 3, 16384)
    );
    assert_shape(&servers, THREE);
    // Ready is stable: one more step changes nothing.
    let again = redis_cluster::step(&nodes, THREE).await.unwrap();
    assert_eq!(again.phase, RedisClusterPhase::Ready);
}

#[tokio::test]
async fn resumes_after_being_interrupted_half_way() {
    let (servers, nodes) = start_nodes();
    // Step until the first ADDSLOTSRANGE (pod 0's), then stop: an operator restart with the
    // nodes met, pod 0's slots assigned and the other shards without any.
    let saw = step_until(&nodes, THREE, |s| {
        s.last_step
            .as_deref()
            .is_some_and(|l| l.contains("ADDSLOTSRANGE"))
    })
    .await;
    assert!(
        saw.iter().all(|s| s.phase != RedisClusterPhase::Ready),
        "{saw:#?}"
    );
    // Shards are consecutive pods: masters start on pods 0, 2 and 4.
    assert_eq!(own_slots(&servers[0]), "0-5460");
    assert_eq!(own_slots(&servers[2]), "");
    assert_eq!(own_slots(&servers[4]), "");
    // A slot of shard 2's range assigned to pod 2 out of plan: it is never assigned again, but
    // migrated (with its key) to where the plan has it once the cluster is formed.
    servers[2].cli(&["cluster", "addslots", "16000"]).unwrap();

    run_to_ready(&nodes, THREE).await;
    assert_shape(&servers, THREE);
    assert_eq!(own_slots(&servers[2]), "5461-10921");
    assert_eq!(own_slots(&servers[4]), "10922-16383");
}

#[tokio::test]
async fn recovers_after_every_node_restarts() {
    let (mut servers, nodes) = start_nodes();
    run_to_ready(&nodes, THREE).await;

    for s in &mut servers {
        s.kill();
    }
    for s in &mut servers {
        s.restart().unwrap();
    }
    // nodes.conf is kept: the bootstrap finds the cluster again, without assigning any slot.
    run_to_ready(&nodes, THREE).await;
    assert_shape(&servers, THREE);

    // A replica that lost its nodes.conf (reset: it knows nobody and replicates nothing) is
    // met again and attached again.
    servers[5].cli(&["cluster", "reset", "soft"]).unwrap();
    run_to_ready(&nodes, THREE).await;
    assert_shape(&servers, THREE);
}

/// The reconcile's view: the managed cluster of an example, reached through
/// `Config::backend_addresses` with the generated password, stepped once per "reconcile".
#[tokio::test]
async fn the_example_managed_cluster_through_the_address_override() {
    use sockudo_operator::controller::Config;

    use super::support::Example;

    let example = Example::load("redis-cluster-managed.yaml");
    let no_override =
        redis_cluster::target(&example.cluster, &example.generated, &Config::default())
            .expect("a managed Redis Cluster");
    assert!(!no_override.overridden, "pods are waited for");
    assert_eq!(
        no_override.nodes.addresses[5],
        "redis-cluster-managed-redis-cluster-5.redis-cluster-managed-redis-cluster.default.svc:6379"
    );
    let goal = no_override.goal;
    assert_eq!((goal.masters, goal.replicas_per_master), (6, 0));

    let servers = start(goal.pods());
    let target = overridden(&example, &servers);
    assert_eq!(target.nodes.password.as_deref(), Some(PASSWORD));

    // Stepped once per "reconcile" until Ready.
    let saw = step_until(&target.nodes, target.goal, |s| {
        s.phase == RedisClusterPhase::Ready
    })
    .await;
    let s = saw.last().unwrap();
    assert_eq!((s.masters, s.replicas, s.slots_assigned), (6, 0, 16384));
    let info = servers[3].cli(&["cluster", "info"]).unwrap();
    assert!(info.contains("cluster_size:6"), "{info}");
}
