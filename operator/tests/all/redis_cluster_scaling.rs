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
use sockudo_operator::controller::Config;
use sockudo_operator::controller::redis_cluster::{self, Goal};
use sockudo_operator::crd::{RedisClusterPhase, RedisClusterStatus};
use sockudo_test_backends::{RedisCluster, RedisServer};

use super::redis_cluster_fixture::{
    PASSWORD, Reconciler, THREE, assert_keys, assert_shape, assert_shards, id_of, nodes_of,
    password_of, record, run_to_ready, set_shape, start, stateful_set_replicas, step_until,
    write_keys,
};
use super::support::Example;

const FOUR: Goal = Goal::new(4, 1);
const KEYS: usize = 2000;

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
    run_to_ready(&nodes_of(&servers), THREE).await;
    write_keys(&servers, "key", KEYS).await;

    // Scale out: the StatefulSet gains pods 6 and 7 (a new shard), while a client keeps writing.
    servers.extend(start(2));
    let stop = Arc::new(AtomicBool::new(false));
    let live = writer(&servers[..6], stop.clone());
    let status = run_to_ready(&nodes_of(&servers), FOUR).await;
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
    let mut saw = step_until(&nodes_of(&servers), THREE, |s| {
        s.phase == RedisClusterPhase::Ready
    })
    .await;
    let last = saw.pop().unwrap();
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
            (s.stateful_set_masters, s.stateful_set_pods),
            (Some(4), Some(8)),
            "shrunk before drained: {s:?}"
        );
    }
    assert_eq!(
        (last.stateful_set_masters, last.stateful_set_pods),
        (Some(3), Some(6)),
        "{last:?}"
    );
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
    run_to_ready(&nodes_of(&servers), THREE).await;
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
    let saw = step_until(&nodes, FOUR, |s| {
        let batch = s
            .last_step
            .as_deref()
            .is_some_and(|l| l.starts_with("migrate"));
        batches += usize::from(batch);
        batches == 2
    })
    .await;
    assert!(
        saw.iter().all(|s| s.phase != RedisClusterPhase::Ready),
        "{saw:#?}"
    );

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
    let status = run_to_ready(&nodes_of(&servers), FOUR).await;
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
    let status = run_to_ready(&nodes_of(&servers), THREE).await;
    assert_eq!((status.masters, status.replicas), (3, 3), "{status:?}");
    assert_shape(&servers, THREE);
    assert_keys(&servers, "key", KEYS).await;
    assert_shards(&servers, THREE).await;
}

/// The builder sizes the StatefulSet from the spec and `status.redisCluster.statefulSetPods`:
/// growing at once, shrinking only once the operator has recorded the drain, whether masters or
/// replicas per master were removed.
#[test]
fn the_stateful_set_keeps_departing_pods_until_the_drain_is_recorded() {
    let mut example = Example::load("redis-cluster-managed.yaml");
    let shape = |e: &mut Example, masters: i32, replicas: i32, recorded: Option<i32>| {
        set_shape(e, masters, Some(replicas));
        record(
            e,
            RedisClusterStatus {
                stateful_set_pods: recorded,
                ..RedisClusterStatus::default()
            },
        );
    };
    let pods = |e: &Example| {
        redis_cluster::target(&e.cluster, &e.generated, &Config::default())
            .unwrap()
            .nodes
            .addresses
            .len()
    };
    let sizes = |e: &Example| (stateful_set_replicas(e), pods(e));
    // The example: 6 masters without replicas.
    assert_eq!(stateful_set_replicas(&example), 6);
    shape(&mut example, 3, 0, Some(6));
    assert_eq!(sizes(&example), (6, 6), "draining");
    shape(&mut example, 3, 0, Some(3));
    assert_eq!(sizes(&example), (3, 3), "drained");
    shape(&mut example, 8, 0, Some(3));
    assert_eq!(sizes(&example), (8, 8), "scaling out");
    shape(&mut example, 3, 0, None);
    assert_eq!(stateful_set_replicas(&example), 3, "nothing recorded yet");
    // 3 masters with a replica each (6 pods) -> without replicas: the 6 pods stay until drained.
    shape(&mut example, 3, 0, Some(6));
    assert_eq!(sizes(&example), (6, 6), "replicas draining");
    shape(&mut example, 3, 1, Some(3));
    assert_eq!(sizes(&example), (6, 6), "replicas added at once");
    // A status written before `statefulSetPods` existed records masters.
    set_shape(&mut example, 3, Some(1));
    record(
        &mut example,
        RedisClusterStatus {
            stateful_set_masters: Some(4),
            ..RedisClusterStatus::default()
        },
    );
    assert_eq!(sizes(&example), (8, 8), "recorded in masters");
}

/// The reconcile's loop without an API server (see [`Reconciler`]). Scaling 3 -> 4 -> 3 masters
/// keeps every key: the StatefulSet only shrinks once the departing nodes are forgotten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciles_scale_out_and_in_through_the_stateful_set_size() {
    let mut reconciler = Reconciler::new("redis-cluster-managed.yaml");
    let mut scale_in = Vec::new();
    for (masters, expected_pods) in [(3, 6), (4, 8), (3, 6)] {
        set_shape(&mut reconciler.example, masters, Some(1));
        let run = reconciler.until_ready(expected_pods).await;
        let goal = reconciler.goal();
        assert_eq!(
            (goal.masters, goal.replicas_per_master),
            (masters as usize, 1)
        );
        assert_shape(&reconciler.pods, goal);
        if reconciler.history.len() == run.len() {
            write_keys(&reconciler.pods, "key", KEYS).await;
        }
        assert_keys(&reconciler.pods, "key", KEYS).await;
        scale_in = run;
    }
    // While scaling in, the StatefulSet held 8 pods until the step after the FORGET.
    let forgot = scale_in
        .iter()
        .position(|r| {
            r.status
                .last_step
                .as_deref()
                .is_some_and(|l| l.contains("FORGET"))
        })
        .expect("a FORGET step");
    assert!(
        scale_in[..=forgot].iter().all(|r| r.pods == 8),
        "{scale_in:#?}"
    );
    assert!(
        scale_in
            .iter()
            .any(|r| r.status.phase == RedisClusterPhase::Draining)
    );
}
