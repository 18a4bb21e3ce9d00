//! The Redis Cluster bootstrap against 6 real `redis-server --cluster-enabled yes` processes
//! (password-protected, as the operator deploys them): it forms a 3-master/3-replica cluster
//! (shards of consecutive pods: masters on 0, 2, 4), resumes after being interrupted half-way,
//! and recovers after every process restarts.

use std::time::Duration;

use sockudo_operator::controller::redis_cluster::{self, Goal, Nodes};
use sockudo_operator::crd::RedisClusterPhase;
use sockudo_test_backends::RedisServer;

const PASSWORD: &str = "generated-test-password";
const GOAL: Goal = Goal {
    masters: 3,
    replicas_per_master: 1,
};
/// Enough steps for MEET, 3 ADDSLOTS, 3 REPLICATE and the gossip waits in between.
const MAX_STEPS: usize = 200;
const PAUSE: Duration = Duration::from_millis(100);

fn start_nodes() -> (Vec<RedisServer>, Nodes) {
    let servers: Vec<RedisServer> = (0..GOAL.pods())
        .map(|_| RedisServer::start_cluster_node(Some(PASSWORD)).unwrap())
        .collect();
    let nodes = Nodes {
        addresses: servers.iter().map(RedisServer::address).collect(),
        password: Some(PASSWORD.into()),
    };
    (servers, nodes)
}

/// Checks the cluster as `redis-cli` sees it, independently of the bootstrap's own parsing.
fn assert_healthy(servers: &[RedisServer]) {
    for s in servers {
        let info = s.cli(&["cluster", "info"]).unwrap();
        assert!(info.contains("cluster_state:ok"), "{}: {info}", s.port);
        assert!(info.contains("cluster_slots_assigned:16384"), "{info}");
        assert!(info.contains("cluster_known_nodes:6"), "{info}");
        assert!(info.contains("cluster_size:3"), "{info}");
    }
    let nodes = s_nodes(&servers[0]);
    let masters: Vec<&str> = nodes
        .lines()
        .filter(|l| l.contains("master") && !l.contains("fail"))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(masters.len(), 3, "{nodes}");
    for m in masters {
        assert!(
            nodes.lines().any(|l| l.contains("slave") && l.contains(m)),
            "master {m} has no replica:\n{nodes}"
        );
    }
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
    let status = redis_cluster::run(&nodes, GOAL, MAX_STEPS, PAUSE)
        .await
        .unwrap();
    assert_eq!(status.phase, RedisClusterPhase::Ready, "{status:?}");
    assert_eq!(
        (status.masters, status.replicas, status.slots_assigned),
        (3, 3, 16384)
    );
    assert_healthy(&servers);
    // Ready is stable: one more step changes nothing.
    let again = redis_cluster::step(&nodes, GOAL).await.unwrap();
    assert_eq!(again.phase, RedisClusterPhase::Ready);
}

#[tokio::test]
async fn resumes_after_being_interrupted_half_way() {
    let (servers, nodes) = start_nodes();
    // Step until the first ADDSLOTSRANGE (pod 0's), then stop: an operator restart with the
    // nodes met, pod 0's slots assigned and the other shards without any.
    let mut steps = 0;
    loop {
        let s = redis_cluster::step(&nodes, GOAL).await.unwrap();
        assert_ne!(s.phase, RedisClusterPhase::Ready);
        steps += 1;
        assert!(steps < MAX_STEPS, "no slot was ever assigned: {s:?}");
        if s.last_step
            .as_deref()
            .is_some_and(|l| l.contains("ADDSLOTSRANGE"))
        {
            break;
        }
        tokio::time::sleep(PAUSE).await;
    }
    // Shards are consecutive pods: masters start on pods 0, 2 and 4.
    assert_eq!(own_slots(&servers[0]), "0-5460");
    assert_eq!(own_slots(&servers[2]), "");
    assert_eq!(own_slots(&servers[4]), "");
    // A slot of shard 2's range assigned to pod 2 out of plan: it is never assigned again, but
    // migrated (with its key) to where the plan has it once the cluster is formed.
    servers[2].cli(&["cluster", "addslots", "16000"]).unwrap();

    let status = redis_cluster::run(&nodes, GOAL, MAX_STEPS, PAUSE)
        .await
        .unwrap();
    assert_eq!(status.phase, RedisClusterPhase::Ready, "{status:?}");
    assert_healthy(&servers);
    assert_eq!(own_slots(&servers[2]), "5461-10921");
    assert_eq!(own_slots(&servers[4]), "10922-16383");
}

#[tokio::test]
async fn recovers_after_every_node_restarts() {
    let (mut servers, nodes) = start_nodes();
    let status = redis_cluster::run(&nodes, GOAL, MAX_STEPS, PAUSE)
        .await
        .unwrap();
    assert_eq!(status.phase, RedisClusterPhase::Ready, "{status:?}");

    for s in &mut servers {
        s.kill();
    }
    for s in &mut servers {
        s.restart().unwrap();
    }
    // nodes.conf is kept: the bootstrap finds the cluster again, without assigning any slot.
    let status = redis_cluster::run(&nodes, GOAL, MAX_STEPS, PAUSE)
        .await
        .unwrap();
    assert_eq!(status.phase, RedisClusterPhase::Ready, "{status:?}");
    assert_healthy(&servers);

    // A replica that lost its nodes.conf (reset: it knows nobody and replicates nothing) is
    // met again and attached again.
    servers[5].cli(&["cluster", "reset", "soft"]).unwrap();
    let status = redis_cluster::run(&nodes, GOAL, MAX_STEPS, PAUSE)
        .await
        .unwrap();
    assert_eq!(status.phase, RedisClusterPhase::Ready, "{status:?}");
    assert_healthy(&servers);
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

    let servers: Vec<RedisServer> = (0..goal.pods())
        .map(|_| RedisServer::start_cluster_node(Some(PASSWORD)).unwrap())
        .collect();
    let config = Config {
        backend_addresses: no_override
            .nodes
            .addresses
            .iter()
            .cloned()
            .zip(servers.iter().map(RedisServer::address))
            .collect(),
        ..Config::default()
    };
    let target = redis_cluster::target(&example.cluster, &example.generated, &config).unwrap();
    assert!(target.overridden);
    assert_eq!(target.nodes.password.as_deref(), Some(PASSWORD));

    let mut last = None;
    for _ in 0..MAX_STEPS {
        let s = redis_cluster::step(&target.nodes, target.goal)
            .await
            .unwrap();
        if s.phase == RedisClusterPhase::Ready {
            last = Some(s);
            break;
        }
        tokio::time::sleep(PAUSE).await;
    }
    let s = last.expect("Ready");
    assert_eq!((s.masters, s.replicas, s.slots_assigned), (6, 0, 16384));
    let info = servers[3].cli(&["cluster", "info"]).unwrap();
    assert!(info.contains("cluster_size:6"), "{info}");
}
