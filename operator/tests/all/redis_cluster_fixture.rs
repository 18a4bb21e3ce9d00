//! The shared fixture of the managed Redis Cluster tests: real `redis-server --cluster-enabled
//! yes` processes stand in for the StatefulSet's pods (password-protected, as the operator
//! deploys them), pods are mapped to them through the operator's address override, the
//! operator's steps run against them until a phase, and the result is checked through a cluster
//! client and `redis-cli`, independently of the operator's own parsing.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use redis::AsyncCommands;
use redis::cluster::ClusterClientBuilder;
use sockudo_operator::build::{Child, desired};
use sockudo_operator::controller::Config;
use sockudo_operator::controller::redis_cluster::{self, Goal, Nodes, Target};
use sockudo_operator::controller::status::{self, Observed};
use sockudo_operator::crd::{RedisClusterPhase, RedisClusterStatus, SockudoClusterStatus};
use sockudo_test_backends::{RedisServer, RedisSetup};

use super::support::Example;

/// The password the examples' generated auth Secrets hold (see [`Example::load`]).
pub const PASSWORD: &str = "generated-test-password";
/// Enough steps for forming, re-meeting every node, or a reshard of a third of the slots (43
/// batches) with the gossip waits in between; a generous bound, not a timing assertion.
pub const MAX_STEPS: usize = 600;
/// Between steps: the next one waits on gossip the previous one started.
pub const PAUSE: Duration = Duration::from_millis(100);
/// The usual shape: 3 masters (pods 0, 2, 4), each followed by a replica.
pub const THREE: Goal = Goal::new(3, 1);

/// `n` empty cluster nodes, as the StatefulSet's pods start.
pub fn start(n: usize) -> Vec<RedisServer> {
    (0..n)
        .map(|_| RedisServer::start_cluster_node(Some(PASSWORD)).unwrap())
        .collect()
}

/// `n` empty cluster nodes started with `setup` (e.g. persistent, as pods with a volume).
pub fn start_with(setup: &RedisSetup, n: usize) -> Vec<RedisServer> {
    (0..n)
        .map(|_| RedisServer::start_cluster_node_with(setup.clone()).unwrap())
        .collect()
}

/// Pod `i` is `servers[i]`.
pub fn nodes_of(servers: &[RedisServer]) -> Nodes {
    Nodes {
        addresses: servers.iter().map(RedisServer::address).collect(),
        password: password_of(servers).map(str::to_string),
    }
}

/// Nodes of the harness's `redis-cli --cluster create` have no password; the others [`PASSWORD`].
pub fn password_of(servers: &[RedisServer]) -> Option<&'static str> {
    let set = servers[0].cli(&["config", "get", "requirepass"]).unwrap();
    set.contains(PASSWORD).then_some(PASSWORD)
}

/// The example's managed cluster with every pod's in-cluster name overridden to `servers` (pod
/// `i` is `servers[i]`), as `Config::backend_addresses` does for the reconcile.
pub fn overridden(example: &Example, servers: &[RedisServer]) -> Target {
    let in_cluster =
        redis_cluster::target(&example.cluster, &example.generated, &Config::default())
            .expect("a managed Redis Cluster");
    let config = Config {
        backend_addresses: in_cluster
            .nodes
            .addresses
            .iter()
            .cloned()
            .zip(servers.iter().map(RedisServer::address))
            .collect(),
        ..Config::default()
    };
    let target = redis_cluster::target(&example.cluster, &example.generated, &config).unwrap();
    assert!(target.overridden, "every pod of the StatefulSet runs");
    target
}

/// Steps (observe, plan, act) until `done` says so, pausing between steps; every status seen,
/// the one `done` accepted last. Fails after [`MAX_STEPS`].
pub async fn step_until(
    nodes: &Nodes,
    goal: Goal,
    mut done: impl FnMut(&RedisClusterStatus) -> bool,
) -> Vec<RedisClusterStatus> {
    let mut seen = Vec::new();
    loop {
        let s = redis_cluster::step(nodes, goal).await.unwrap();
        let finished = done(&s);
        seen.push(s);
        if finished {
            return seen;
        }
        assert!(seen.len() < MAX_STEPS, "never done: {:#?}", seen.last());
        tokio::time::sleep(PAUSE).await;
    }
}

/// Runs the operator's steps until Ready, which it must reach.
pub async fn run_to_ready(nodes: &Nodes, goal: Goal) -> RedisClusterStatus {
    let status = redis_cluster::run(nodes, goal, MAX_STEPS, PAUSE)
        .await
        .unwrap();
    assert_eq!(status.phase, RedisClusterPhase::Ready, "{status:?}");
    status
}

/// Sets the example's managed Redis Cluster shape (`None` leaves a field as the example has it).
pub fn set_shape(example: &mut Example, masters: i32, replicas_per_master: Option<i32>) {
    let managed = example.managed_redis();
    managed.masters = Some(masters);
    if replicas_per_master.is_some() {
        managed.replicas_per_master = replicas_per_master;
    }
}

/// Records `status` as `status.redisCluster`, as the reconcile writes it.
pub fn record(example: &mut Example, status: RedisClusterStatus) {
    example.cluster.status = Some(SockudoClusterStatus {
        redis_cluster: Some(status),
        ..SockudoClusterStatus::default()
    });
}

/// Pods of the managed Redis Cluster's StatefulSet, as the builder sizes it.
pub fn stateful_set_replicas(example: &Example) -> usize {
    desired(&example.inputs())
        .children
        .iter()
        .find_map(|c| match c {
            Child::StatefulSet(s) => s.spec.as_ref().and_then(|s| s.replicas),
            _ => None,
        })
        .map(|r| usize::try_from(r).unwrap())
        .unwrap()
}

/// The status conditions the pure status computation derives from the recorded
/// `status.redisCluster` (server and backend pods aside).
pub fn conditions_of(example: &Example) -> SockudoClusterStatus {
    let observed = Observed {
        redis_cluster: example
            .cluster
            .status
            .as_ref()
            .and_then(|s| s.redis_cluster.clone()),
        ..Observed::default()
    };
    let now = Time("2024-01-01T00:00:00Z".parse().unwrap());
    status::compute(&example.cluster, None, &observed, None, false, &now)
}

/// One reconcile, as it happened: the pods running, the status recorded.
#[derive(Debug, Clone)]
pub struct Reconciled {
    pub pods: usize,
    pub status: RedisClusterStatus,
}

/// The reconcile's loop without an API server: the builder sizes the StatefulSet from the spec
/// and the recorded status, a stand-in StatefulSet controller starts or stops `redis-server`s to
/// match (highest ordinals first), the operator steps the cluster through the address override,
/// and the status it reports is what the next "reconcile" builds from.
pub struct Reconciler {
    pub example: Example,
    /// Pod `i` of the StatefulSet.
    pub pods: Vec<RedisServer>,
    pub history: Vec<Reconciled>,
}

impl Reconciler {
    pub fn new(example: &str) -> Reconciler {
        Reconciler {
            example: Example::load(example),
            pods: Vec::new(),
            history: Vec::new(),
        }
    }

    pub fn goal(&self) -> Goal {
        redis_cluster::target(
            &self.example.cluster,
            &self.example.generated,
            &Config::default(),
        )
        .unwrap()
        .goal
    }

    /// One reconcile: size the StatefulSet, then one step.
    pub async fn reconcile(&mut self) -> RedisClusterStatus {
        let replicas = stateful_set_replicas(&self.example);
        while self.pods.len() < replicas {
            self.pods
                .push(RedisServer::start_cluster_node(Some(PASSWORD)).unwrap());
        }
        for mut gone in self.pods.drain(replicas..) {
            gone.kill();
        }
        let target = overridden(&self.example, &self.pods);
        let status = redis_cluster::step(&target.nodes, target.goal)
            .await
            .unwrap();
        record(&mut self.example, status.clone());
        self.history.push(Reconciled {
            pods: self.pods.len(),
            status: status.clone(),
        });
        status
    }

    /// Reconciles until Ready with the StatefulSet at `pods` pods; the reconciles of this run.
    pub async fn until_ready(&mut self, pods: usize) -> Vec<Reconciled> {
        let start = self.history.len();
        for _ in 0..MAX_STEPS {
            let status = self.reconcile().await;
            if status.phase == RedisClusterPhase::Ready && self.pods.len() == pods {
                return self.history[start..].to_vec();
            }
            tokio::time::sleep(PAUSE).await;
        }
        panic!("not Ready with {pods} pods: {:#?}", self.history.last());
    }
}

/// A cluster client over `servers`.
pub async fn client(servers: &[RedisServer]) -> redis::cluster_async::ClusterConnection {
    let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    let mut builder = ClusterClientBuilder::new(urls);
    if let Some(p) = password_of(servers) {
        builder = builder.password(p);
    }
    builder
        .build()
        .unwrap()
        .get_async_connection()
        .await
        .unwrap()
}

/// Writes `prefix:i = i` for `i` in `0..n`.
pub async fn write_keys(servers: &[RedisServer], prefix: &str, n: usize) {
    let mut conn = client(servers).await;
    for i in 0..n {
        let _: () = conn.set(format!("{prefix}:{i}"), i).await.unwrap();
    }
}

/// Every key reads back its value through a fresh cluster client.
pub async fn assert_keys(servers: &[RedisServer], prefix: &str, n: usize) {
    let mut conn = client(servers).await;
    for i in 0..n {
        let key = format!("{prefix}:{i}");
        let v: Option<usize> = conn.get(&key).await.unwrap();
        assert_eq!(v, Some(i), "{key} lost");
    }
}

/// The cluster as `redis-cli` reports it: state ok, every slot covered, every node knowing
/// exactly `servers`, `masters` masters with an even share of the slots each (and their
/// replicas), no migration left open.
pub fn assert_shape(servers: &[RedisServer], goal: Goal) {
    for s in servers {
        let info = s.cli(&["cluster", "info"]).unwrap();
        assert!(info.contains("cluster_state:ok"), "{}: {info}", s.port);
        assert!(info.contains("cluster_slots_assigned:16384"), "{info}");
        let known = format!("cluster_known_nodes:{}", servers.len());
        assert!(info.contains(&known), "{}: {info}", s.port);
        let size = format!("cluster_size:{}", goal.masters);
        assert!(info.contains(&size), "{}: {info}", s.port);
        let nodes = s.cli(&["cluster", "nodes"]).unwrap();
        assert!(
            !nodes.contains("->-") && !nodes.contains("-<-"),
            "open migration:\n{nodes}"
        );
    }
    let nodes =
        redis_cluster::parse_nodes(&servers[0].cli(&["cluster", "nodes"]).unwrap()).unwrap();
    let masters: Vec<_> = nodes
        .iter()
        .filter(|n| !n.is_replica() && !n.slots.is_empty())
        .collect();
    assert_eq!(masters.len(), goal.masters);
    for m in masters {
        let share = m.slot_count();
        assert!(
            (16384 / goal.masters..=16384 / goal.masters + 1).contains(&share),
            "{} owns {share} slots",
            m.id
        );
        let replicas = nodes
            .iter()
            .filter(|n| n.master_id.as_deref() == Some(m.id.as_str()))
            .count();
        assert_eq!(replicas, goal.replicas_per_master, "replicas of {}", m.id);
    }
}

/// Every shard (a run of consecutive pods) has exactly one master owning slots, by its own
/// account, and every other pod of the shard replicates that master.
pub async fn assert_shards(servers: &[RedisServer], goal: Goal) {
    let views = redis_cluster::observe_all(&nodes_of(servers))
        .await
        .unwrap();
    for shard in 0..goal.masters {
        let pods = goal.shard_pods(shard);
        let owners: Vec<usize> = pods.clone().filter(|&p| views[p].owns_slots()).collect();
        assert_eq!(owners.len(), 1, "shard {shard}: slot owners {owners:?}");
        let master = &views[owners[0]].id;
        for p in pods.filter(|&p| p != owners[0]) {
            let me = views[p].myself().unwrap();
            assert!(me.is_replica(), "shard {shard}: pod {p} is no replica");
            assert_eq!(
                me.master_id.as_ref(),
                Some(master),
                "shard {shard}: pod {p} replicates another master"
            );
        }
    }
}

pub fn id_of(s: &RedisServer) -> String {
    s.cli(&["cluster", "myid"]).unwrap().trim().to_string()
}
