//! Scaling a managed Redis Cluster's masters out and in against real `redis-server
//! --cluster-enabled yes` processes: slots move by real migration a batch per step, every key
//! (written before and during the move) stays readable through a cluster client, departing
//! nodes are reset and forgotten before the StatefulSet may shrink, and an interrupted migration
//! resumes from what the nodes say.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::AsyncCommands;
use redis::cluster::ClusterClientBuilder;
use sockudo_operator::controller::redis_cluster::{self, Goal, Nodes};
use sockudo_operator::crd::{RedisClusterPhase, RedisClusterStatus};
use sockudo_test_backends::{RedisCluster, RedisServer};

pub(super) const PASSWORD: &str = "generated-test-password";
const THREE: Goal = Goal {
    masters: 3,
    replicas_per_master: 1,
};
const FOUR: Goal = Goal {
    masters: 4,
    replicas_per_master: 1,
};
/// Enough for forming (tens of steps) or a reshard of 4096 slots (32 batches) with the gossip
/// waits in between; a generous bound, not a timing assertion.
const MAX_STEPS: usize = 600;
const PAUSE: Duration = Duration::from_millis(100);
const KEYS: usize = 2000;

fn start(n: usize) -> Vec<RedisServer> {
    (0..n)
        .map(|_| RedisServer::start_cluster_node(Some(PASSWORD)).unwrap())
        .collect()
}

fn nodes_of(servers: &[RedisServer]) -> Nodes {
    Nodes {
        addresses: servers.iter().map(RedisServer::address).collect(),
        password: password_of(servers).map(str::to_string),
    }
}

/// Nodes of the harness's `redis-cli --cluster create` have no password; the others [`PASSWORD`].
fn password_of(servers: &[RedisServer]) -> Option<&'static str> {
    let set = servers[0].cli(&["config", "get", "requirepass"]).unwrap();
    set.contains(PASSWORD).then_some(PASSWORD)
}

async fn run_to_ready(servers: &[RedisServer], goal: Goal) -> RedisClusterStatus {
    let status = redis_cluster::run(&nodes_of(servers), goal, MAX_STEPS, PAUSE)
        .await
        .unwrap();
    assert_eq!(status.phase, RedisClusterPhase::Ready, "{status:?}");
    status
}

async fn client(servers: &[RedisServer]) -> redis::cluster_async::ClusterConnection {
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

pub(super) async fn write_keys(servers: &[RedisServer], prefix: &str, n: usize) {
    let mut conn = client(servers).await;
    for i in 0..n {
        let _: () = conn.set(format!("{prefix}:{i}"), i).await.unwrap();
    }
}

/// Every key reads back its value through a fresh cluster client.
pub(super) async fn assert_keys(servers: &[RedisServer], prefix: &str, n: usize) {
    let mut conn = client(servers).await;
    for i in 0..n {
        let key = format!("{prefix}:{i}");
        let v: Option<usize> = conn.get(&key).await.unwrap();
        assert_eq!(v, Some(i), "{key} lost");
    }
}

/// The cluster as `redis-cli` reports it: state ok, every slot covered, `masters` masters with
/// an even share of the slots each (and their replicas), no migration left open.
pub(super) fn assert_shape(servers: &[RedisServer], goal: Goal) {
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

pub(super) fn id_of(s: &RedisServer) -> String {
    s.cli(&["cluster", "myid"]).unwrap().trim().to_string()
}

/// Writes `live:N` keys until stopped; returns how many were acknowledged.
fn writer(servers: &[RedisServer], stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<usize> {
    let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    let password = password_of(servers).unwrap();
    tokio::spawn(async move {
        let mut conn = ClusterClientBuilder::new(urls)
            .password(password)
            .build()
            .unwrap()
            .get_async_connection()
            .await
            .unwrap();
        let mut acknowledged = 0;
        while !stop.load(Ordering::Relaxed) {
            // A write that fails is retried under the same key, so acknowledged keys are
            // exactly `live:0..acknowledged`.
            let r: redis::RedisResult<()> =
                conn.set(format!("live:{acknowledged}"), acknowledged).await;
            if r.is_ok() {
                acknowledged += 1;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        acknowledged
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scales_masters_out_to_four_and_back_in_to_three_keeping_every_key() {
    let mut servers = start(THREE.pods());
    run_to_ready(&servers, THREE).await;
    write_keys(&servers, "key", KEYS).await;

    // Scale out: the StatefulSet gains pods 6 and 7 (a new shard), while a client keeps writing.
    servers.extend(start(2));
    let stop = Arc::new(AtomicBool::new(false));
    let live = writer(&servers[..6], stop.clone());
    let status = run_to_ready(&servers, FOUR).await;
    stop.store(true, Ordering::Relaxed);
    let written = live.await.unwrap();
    assert!(written > 0, "the writer never got a write through");
    assert_eq!((status.masters, status.replicas), (4, 4), "{status:?}");
    assert_eq!(
        (status.slots_to_move, status.stateful_set_masters),
        (0, Some(4))
    );
    assert_shape(&servers, FOUR);
    assert_keys(&servers, "key", KEYS).await;
    assert_keys(&servers, "live", written).await;

    // Scale in: the StatefulSet keeps pods 6 and 7 until they are drained, reset and forgotten.
    let departing: Vec<String> = servers[6..].iter().map(id_of).collect();
    let nodes = nodes_of(&servers);
    let mut saw = Vec::new();
    let last = loop {
        let s = redis_cluster::step(&nodes, THREE).await.unwrap();
        assert!(saw.len() < MAX_STEPS, "not drained: {s:?}");
        if s.phase == RedisClusterPhase::Ready {
            break s;
        }
        saw.push(s);
        tokio::time::sleep(PAUSE).await;
    };
    assert!(saw.iter().any(|s| s.phase == RedisClusterPhase::Draining));
    let step = |what: &str| {
        saw.iter()
            .position(|s| s.last_step.as_deref().is_some_and(|l| l.contains(what)))
            .unwrap_or_else(|| panic!("no {what} step in {saw:#?}"))
    };
    let (migrated, reset, forgot) = (step("migrate"), step("RESET"), step("FORGET"));
    assert!(migrated < reset && reset < forgot, "{saw:#?}");
    for s in &saw[..=forgot] {
        assert_eq!(
            s.stateful_set_masters,
            Some(4),
            "shrunk before drained: {s:?}"
        );
    }
    assert_eq!(last.stateful_set_masters, Some(3), "{last:?}");
    assert_eq!((last.masters, last.replicas), (3, 3));

    // The StatefulSet shrinks: pods 6 and 7 go away. Nobody remembers them.
    for mut s in servers.drain(6..) {
        s.kill();
    }
    for s in &servers {
        let nodes = s.cli(&["cluster", "nodes"]).unwrap();
        for id in &departing {
            assert!(
                !nodes.contains(id.as_str()),
                "{} still knows {id}:\n{nodes}",
                s.port
            );
        }
    }
    assert_shape(&servers, THREE);
    assert_keys(&servers, "key", KEYS).await;
    assert_keys(&servers, "live", written).await;
    // And it stays Ready with the StatefulSet at its new size.
    let s = redis_cluster::step(&nodes_of(&servers), THREE)
        .await
        .unwrap();
    assert_eq!(s.phase, RedisClusterPhase::Ready, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_migration_resumes_from_what_the_nodes_say() {
    let mut servers = start(THREE.pods());
    run_to_ready(&servers, THREE).await;
    write_keys(&servers, "key", KEYS).await;
    // 40 keys in one slot, to be caught half-migrated.
    write_keys(&servers, "{half}", 40).await;
    let slot: u16 = servers[0]
        .cli(&["cluster", "keyslot", "{half}"])
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    // Scale out, but the operator stops after two batches.
    servers.extend(start(2));
    let nodes = nodes_of(&servers);
    let mut batches = 0;
    for _ in 0..MAX_STEPS {
        let s = redis_cluster::step(&nodes, FOUR).await.unwrap();
        assert_ne!(s.phase, RedisClusterPhase::Ready);
        if s.last_step
            .as_deref()
            .is_some_and(|l| l.starts_with("migrate"))
        {
            batches += 1;
            if batches == 2 {
                break;
            }
        }
        tokio::time::sleep(PAUSE).await;
    }
    assert_eq!(batches, 2);

    // And it died in the middle of a slot: IMPORTING and MIGRATING set, half the keys moved.
    let views = redis_cluster::observe_all(&nodes).await.unwrap();
    let from = views.iter().position(|v| v.owns(slot)).unwrap();
    let to = if from == 6 { 0 } else { 6 };
    let (from_id, to_id) = (views[from].id.clone(), views[to].id.clone());
    let s = slot.to_string();
    servers[to]
        .cli(&["cluster", "setslot", &s, "importing", &from_id])
        .unwrap();
    servers[from]
        .cli(&["cluster", "setslot", &s, "migrating", &to_id])
        .unwrap();
    let port = servers[to].port.to_string();
    let mut migrate = vec![
        "migrate",
        "127.0.0.1",
        &port,
        "",
        "0",
        "5000",
        "AUTH",
        PASSWORD,
        "KEYS",
    ];
    let half: Vec<String> = (0..20).map(|i| format!("{{half}}:{i}")).collect();
    migrate.extend(half.iter().map(String::as_str));
    let out = servers[from].cli(&migrate).unwrap();
    assert_eq!(out.trim(), "OK");
    let marked = servers[from].cli(&["cluster", "nodes"]).unwrap();
    assert!(marked.contains(&format!("[{slot}->-{to_id}]")), "{marked}");

    // A fresh operator: it finishes that slot first, then the rest of the reshard.
    let status = run_to_ready(&servers, FOUR).await;
    assert_eq!((status.masters, status.slots_to_move), (4, 0));
    assert_shape(&servers, FOUR);
    assert_keys(&servers, "key", KEYS).await;
    assert_keys(&servers, "{half}", 40).await;
}

/// A cluster formed by `redis-cli --cluster create` (masters on the first pods, replicas after)
/// is reshaped into the operator's shards: a shard without a master gets one, replicas follow
/// their shard, slots move; no key is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_formed_with_another_layout_is_reshaped_into_shards() {
    let formed = RedisCluster::start(3, 1).unwrap();
    let servers = formed.nodes;
    write_keys(&servers, "key", KEYS).await;
    let status = run_to_ready(&servers, THREE).await;
    assert_eq!((status.masters, status.replicas), (3, 3), "{status:?}");
    assert_shape(&servers, THREE);
    assert_keys(&servers, "key", KEYS).await;
    let views = redis_cluster::observe_all(&nodes_of(&servers))
        .await
        .unwrap();
    for shard in 0..3 {
        let (a, b) = (&views[2 * shard], &views[2 * shard + 1]);
        let replica = [a, b]
            .into_iter()
            .find(|v| v.myself().unwrap().is_replica())
            .unwrap();
        let master = if std::ptr::eq(replica, a) { b } else { a };
        assert!(master.owns_slots(), "shard {shard}");
        assert_eq!(
            replica.myself().unwrap().master_id.as_deref(),
            Some(master.id.as_str()),
            "shard {shard}"
        );
    }
}

/// The builder sizes the StatefulSet from the spec and `status.redisCluster.statefulSetMasters`:
/// growing at once, shrinking only once the operator has recorded the drain.
#[test]
fn the_stateful_set_keeps_departing_pods_until_the_drain_is_recorded() {
    use sockudo_operator::build::{Child, desired};
    use sockudo_operator::controller::Config;
    use sockudo_operator::crd::SockudoClusterStatus;

    use super::support::Example;

    let mut example = Example::load("redis-cluster-managed.yaml");
    let set_masters = |e: &mut Example, spec: i32, recorded: Option<i32>| {
        let managed = e
            .cluster
            .spec
            .redis
            .as_mut()
            .unwrap()
            .managed
            .as_mut()
            .unwrap();
        managed.masters = Some(spec);
        e.cluster.status = Some(SockudoClusterStatus {
            redis_cluster: Some(RedisClusterStatus {
                stateful_set_masters: recorded,
                ..RedisClusterStatus::default()
            }),
            ..SockudoClusterStatus::default()
        });
    };
    let replicas = |e: &Example| {
        desired(&e.inputs())
            .children
            .iter()
            .find_map(|c| match c {
                Child::StatefulSet(s) => s.spec.as_ref().and_then(|s| s.replicas),
                _ => None,
            })
            .unwrap()
    };
    let pods = |e: &Example| {
        redis_cluster::target(&e.cluster, &e.generated, &Config::default())
            .unwrap()
            .nodes
            .addresses
            .len()
    };
    // The example: 6 masters without replicas.
    assert_eq!(replicas(&example), 6);
    set_masters(&mut example, 3, Some(6));
    assert_eq!((replicas(&example), pods(&example)), (6, 6), "draining");
    set_masters(&mut example, 3, Some(3));
    assert_eq!((replicas(&example), pods(&example)), (3, 3), "drained");
    set_masters(&mut example, 8, Some(3));
    assert_eq!((replicas(&example), pods(&example)), (8, 8), "scaling out");
    set_masters(&mut example, 3, None);
    assert_eq!(replicas(&example), 3, "nothing recorded yet");
}

/// The reconcile's loop without an API server: the builder sizes the StatefulSet from the spec
/// and the recorded status, a stand-in StatefulSet controller starts or stops `redis-server`s to
/// match (highest ordinals first), the operator steps the cluster through the address override,
/// and the status it reports is what the next "reconcile" builds from. Scaling 3 -> 4 -> 3
/// masters keeps every key: the StatefulSet only shrinks once the departing nodes are forgotten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciles_scale_out_and_in_through_the_stateful_set_size() {
    use sockudo_operator::build::{Child, desired};
    use sockudo_operator::controller::Config;
    use sockudo_operator::crd::SockudoClusterStatus;

    use super::support::Example;

    let mut example = Example::load("redis-cluster-managed.yaml");
    let set_masters = |e: &mut Example, masters: i32| {
        let managed = e
            .cluster
            .spec
            .redis
            .as_mut()
            .unwrap()
            .managed
            .as_mut()
            .unwrap();
        managed.masters = Some(masters);
        managed.replicas_per_master = Some(1);
    };
    let stateful_set_replicas = |e: &Example| {
        desired(&e.inputs())
            .children
            .iter()
            .find_map(|c| match c {
                Child::StatefulSet(s) => s.spec.as_ref().and_then(|s| s.replicas),
                _ => None,
            })
            .map(|r| usize::try_from(r).unwrap())
            .unwrap()
    };
    let in_cluster = |pod: usize| {
        let name = "redis-cluster-managed-redis-cluster";
        format!("{name}-{pod}.{name}.default.svc:6379")
    };
    let mut pods: Vec<RedisServer> = Vec::new();

    /// One reconcile: size the StatefulSet, then one step; returns (pods, status).
    async fn reconcile(
        example: &mut Example,
        pods: &mut Vec<RedisServer>,
        replicas: usize,
        in_cluster: &dyn Fn(usize) -> String,
    ) -> (usize, RedisClusterStatus) {
        while pods.len() < replicas {
            pods.push(RedisServer::start_cluster_node(Some(PASSWORD)).unwrap());
        }
        for mut gone in pods.drain(replicas..) {
            gone.kill();
        }
        let config = Config {
            backend_addresses: pods
                .iter()
                .enumerate()
                .map(|(i, s)| (in_cluster(i), s.address()))
                .collect(),
            ..Config::default()
        };
        let target = redis_cluster::target(&example.cluster, &example.generated, &config).unwrap();
        assert!(target.overridden, "every pod of the StatefulSet runs");
        let status = redis_cluster::step(&target.nodes, target.goal)
            .await
            .unwrap();
        example.cluster.status = Some(SockudoClusterStatus {
            redis_cluster: Some(status.clone()),
            ..SockudoClusterStatus::default()
        });
        (pods.len(), status)
    }

    let mut history = Vec::new();
    for (masters, expected_pods) in [(3, 6), (4, 8), (3, 6)] {
        set_masters(&mut example, masters);
        let mut ready = false;
        for _ in 0..MAX_STEPS {
            let replicas = stateful_set_replicas(&example);
            let (n, status) = reconcile(&mut example, &mut pods, replicas, &in_cluster).await;
            history.push((masters, n, status.clone()));
            if status.phase == RedisClusterPhase::Ready && n == expected_pods {
                ready = true;
                break;
            }
            tokio::time::sleep(PAUSE).await;
        }
        assert!(ready, "{masters} masters: {:#?}", history.last());
        let goal = Goal {
            masters: masters as usize,
            replicas_per_master: 1,
        };
        assert_shape(&pods, goal);
        if masters == 3 && history.iter().all(|(m, ..)| *m == 3) {
            write_keys(&pods, "key", KEYS).await;
        }
        assert_keys(&pods, "key", KEYS).await;
    }
    // While scaling in, the StatefulSet held 8 pods until the step after the FORGET.
    let scale_in: Vec<_> = history
        .iter()
        .skip_while(|(m, ..)| *m != 4)
        .skip_while(|(m, ..)| *m == 4)
        .collect();
    let forgot = scale_in
        .iter()
        .position(|(_, _, s)| s.last_step.as_deref().is_some_and(|l| l.contains("FORGET")))
        .expect("a FORGET step");
    assert!(
        scale_in[..=forgot].iter().all(|(_, n, _)| *n == 8),
        "{scale_in:#?}"
    );
    assert!(
        scale_in
            .iter()
            .any(|(_, _, s)| s.phase == RedisClusterPhase::Draining)
    );
}
