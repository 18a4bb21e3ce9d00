//! Changing `replicasPerMaster` of a managed Redis Cluster against real `redis-server
//! --cluster-enabled yes` processes, through the reconcile's loop (see [`Reconciler`]): the pods
//! regroup into shards of the new size, so slots move, replicas are attached to or detached
//! from their shard's master, the StatefulSet keeps every pod until the departing ones are
//! drained and forgotten, and every key written before stays readable. And a departing pod that
//! never answers: the drain waits, says so in a condition naming the pod and what to do, and
//! carries on once a human did it.

use sockudo_operator::controller::conditions;
use sockudo_operator::controller::redis_cluster::Goal;
use sockudo_operator::crd::RedisClusterPhase;
use sockudo_test_backends::RedisServer;

use super::redis_cluster_fixture::{
    PASSWORD, Reconciled, Reconciler, THREE, assert_keys, assert_shape, assert_shards,
    conditions_of, id_of, set_shape, write_keys,
};

const KEYS: usize = 2000;
const EXAMPLE: &str = "redis-cluster-managed.yaml";
const POD_5: &str = "redis-cluster-managed-redis-cluster-5";
const NO_REPLICAS: Goal = Goal::new(3, 0);

fn took(run: &[Reconciled], what: &str) -> Option<usize> {
    run.iter().position(|r| {
        r.status
            .last_step
            .as_deref()
            .is_some_and(|l| l.contains(what))
    })
}

/// 3 masters with a replica each, formed, with keys written.
async fn formed_with_replicas() -> Reconciler {
    let mut reconciler = Reconciler::new(EXAMPLE);
    set_shape(&mut reconciler.example, 3, Some(1));
    reconciler.until_ready(THREE.pods()).await;
    assert_eq!(reconciler.goal(), THREE);
    assert_shape(&reconciler.pods, THREE);
    assert_shards(&reconciler.pods, THREE).await;
    write_keys(&reconciler.pods, "key", KEYS).await;
    reconciler
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_replicas_per_master_regroups_the_shards_keeping_every_key() {
    let mut reconciler = formed_with_replicas().await;

    // 1 -> 0: pods 0, 1, 2 are the shards now. Pod 1 (pod 0's replica) becomes a master, the
    // departing pod 4's slots move to it, then pods 3, 4, 5 are reset and forgotten.
    set_shape(&mut reconciler.example, 3, Some(0));
    let run = reconciler.until_ready(NO_REPLICAS.pods()).await;
    let promoted = took(&run, "RESET SOFT on pod 1").expect("pod 1 promoted");
    let migrated = took(&run, "from pod 4 to pod 1").expect("slots moved off pod 4");
    let reset = took(&run, "RESET HARD").expect("departing pods reset");
    let forgot = took(&run, "FORGET").expect("departing pods forgotten");
    assert!(
        promoted < migrated && migrated < reset && reset < forgot,
        "{run:#?}"
    );
    for r in &run[..=forgot] {
        assert_eq!(r.pods, 6, "shrunk before drained: {r:#?}");
        assert_eq!(r.status.stateful_set_pods, Some(6), "{r:#?}");
    }
    assert!(
        run.iter()
            .any(|r| r.status.phase == RedisClusterPhase::Draining)
    );
    let last = &run.last().unwrap().status;
    assert_eq!(
        (last.masters, last.replicas, last.stateful_set_pods),
        (3, 0, Some(3))
    );
    assert_shape(&reconciler.pods, NO_REPLICAS);
    assert_shards(&reconciler.pods, NO_REPLICAS).await;
    assert_keys(&reconciler.pods, "key", KEYS).await;

    // 0 -> 1: the StatefulSet grows at once; pods 3 and 5 replicate pods 2 and 4, pod 1 (a
    // master in shard 0 now) gives its slots to the empty pod 4, then replicates pod 0.
    set_shape(&mut reconciler.example, 3, Some(1));
    let run = reconciler.until_ready(THREE.pods()).await;
    assert_eq!(run[0].pods, 6, "{:#?}", run[0]);
    let moved = took(&run, "from pod 1 to pod 4").expect("slots moved off pod 1");
    let attached = took(&run, "CLUSTER REPLICATE pod 0 on pod 1").expect("pod 1 attached");
    assert!(moved < attached, "{run:#?}");
    assert!(
        run.iter()
            .any(|r| r.status.phase == RedisClusterPhase::Rebalancing)
    );
    let last = &run.last().unwrap().status;
    assert_eq!((last.masters, last.replicas, last.slots_to_move), (3, 3, 0));
    assert_shape(&reconciler.pods, THREE);
    assert_shards(&reconciler.pods, THREE).await;
    assert_keys(&reconciler.pods, "key", KEYS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_departing_pod_that_never_answers_stalls_the_drain_until_a_human_replaces_it() {
    let mut reconciler = formed_with_replicas().await;
    let stalled = |r: &Reconciler| {
        conditions_of(&r.example)
            .conditions
            .into_iter()
            .find(|c| c.type_ == "RedisClusterStalled")
            .expect("a RedisClusterStalled condition")
    };
    assert_eq!(stalled(&reconciler).status, "False");

    // The drain of pods 3, 4, 5 starts, then pod 5 (pod 4's replica) dies for good.
    set_shape(&mut reconciler.example, 3, Some(0));
    let s = reconciler.reconcile().await;
    assert_eq!(s.phase, RedisClusterPhase::Draining, "{s:?}");
    let gone_id = id_of(&reconciler.pods[5]);
    reconciler.pods[5].kill();
    for _ in 0..3 {
        let s = reconciler.reconcile().await;
        assert_eq!(s.phase, RedisClusterPhase::Pending, "{s:?}");
        assert_eq!(reconciler.pods.len(), 6, "the StatefulSet keeps every pod");
        assert_eq!(s.stateful_set_pods, Some(6));
        let unreachable: Vec<_> = s
            .unreachable
            .iter()
            .map(|u| (u.ordinal, u.departing))
            .collect();
        assert_eq!(unreachable, [(5, true)], "{s:?}");
    }
    let condition = stalled(&reconciler);
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("True", "DepartingPodUnreachable")
    );
    assert!(conditions::is_warning(&condition), "a Warning Event");
    for needed in [
        format!("departing pod(s) {POD_5} "),
        format!("describe pod {POD_5}"),
        format!("PersistentVolumeClaim data-{POD_5}"),
        "delete its claim and the pod".to_string(),
    ] {
        assert!(condition.message.contains(&needed), "{}", condition.message);
    }

    // The human checks the message's condition (pod 5 owns no slots), then deletes its claim
    // and the pod: it comes back empty, as a new node.
    let nodes = reconciler.pods[0].cli(&["cluster", "nodes"]).unwrap();
    let line = nodes.lines().find(|l| l.starts_with(&gone_id)).unwrap();
    assert!(line.contains("slave"), "pod 5 was a replica: {line}");
    reconciler.pods[5] = RedisServer::start_cluster_node(Some(PASSWORD)).unwrap();
    let run = reconciler.until_ready(NO_REPLICAS.pods()).await;
    assert!(took(&run, "FORGET").is_some(), "{run:#?}");
    assert_eq!(stalled(&reconciler).status, "False");
    for s in &reconciler.pods {
        let nodes = s.cli(&["cluster", "nodes"]).unwrap();
        assert!(!nodes.contains(&gone_id), "{} still knows pod 5", s.port);
    }
    assert_shape(&reconciler.pods, NO_REPLICAS);
    assert_shards(&reconciler.pods, NO_REPLICAS).await;
    assert_keys(&reconciler.pods, "key", KEYS).await;
}
