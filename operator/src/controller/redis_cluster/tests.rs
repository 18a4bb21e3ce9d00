//! The plan against hand-made views: bootstrap, scale out, scale in, interrupted migrations.

use std::collections::BTreeSet;

use super::*;

fn entry(id: &str, flags: &str, master: Option<&str>, slots: &[(u16, u16)]) -> NodeEntry {
    NodeEntry {
        id: id.into(),
        flags: flags.split(',').map(str::to_string).collect(),
        master_id: master.map(str::to_string),
        slots: slots.to_vec(),
        ..NodeEntry::default()
    }
}

fn id(i: usize) -> String {
    format!("id{i}")
}

/// `n` nodes that all know each other; `own[i]` are pod i's slots, `replica_of[i]` its master.
fn views(own: &[Vec<(u16, u16)>], replica_of: &[Option<usize>], ok: bool) -> Vec<NodeView> {
    let n = own.len();
    (0..n)
        .map(|me| NodeView {
            id: id(me),
            state_ok: ok,
            nodes: (0..n)
                .map(|i| {
                    let role = if replica_of[i].is_some() {
                        "slave"
                    } else {
                        "master"
                    };
                    let flags = if i == me {
                        format!("myself,{role}")
                    } else {
                        role.to_string()
                    };
                    entry(&id(i), &flags, replica_of[i].map(id).as_deref(), &own[i])
                })
                .collect(),
        })
        .collect()
}

/// A node that knows only itself (fresh, or reset).
fn lone(name: &str) -> NodeView {
    NodeView {
        id: name.into(),
        state_ok: false,
        nodes: vec![entry(name, "myself,master", None, &[])],
    }
}

const GOAL: Goal = Goal::new(3, 1);
const FOUR: Goal = Goal::new(4, 1);

/// Slots per pod.
type Owned = Vec<Vec<(u16, u16)>>;

/// The formed 3-shard cluster: masters on pods 0, 2, 4, each followed by the next pod.
fn formed() -> (Owned, Vec<Option<usize>>) {
    (
        vec![
            vec![(0, 5460)],
            vec![],
            vec![(5461, 10921)],
            vec![],
            vec![(10922, 16383)],
            vec![],
        ],
        vec![None, Some(0), None, Some(2), None, Some(4)],
    )
}

/// A balanced 4-shard cluster: masters on pods 0, 2, 4, 6, each followed by the next pod.
fn four_shards() -> (Owned, Vec<Option<usize>>) {
    let own = (0..8)
        .map(|p| {
            if p % 2 == 0 {
                let k = (p / 2) as u16;
                vec![(k * 4096, k * 4096 + 4095)]
            } else {
                vec![]
            }
        })
        .collect();
    (own, (0..8).map(|p| (p % 2 == 1).then(|| p - 1)).collect())
}

/// 3 masters with even shares on pods 0, 1, 2, and 3 more pods owning nothing.
fn masters_first() -> Owned {
    let mut own = vec![vec![(0, 5460)], vec![(5461, 10921)], vec![(10922, 16383)]];
    own.extend([vec![], vec![], vec![]]);
    own
}

/// The one (source, target) pair of a migration batch.
fn only_pair(action: &Action) -> (usize, usize) {
    let Action::Migrate { moves, .. } = action else {
        panic!("no migration: {action:?}")
    };
    let pairs: BTreeSet<(usize, usize)> = moves.iter().map(|m| (m.from, m.to)).collect();
    assert_eq!(pairs.len(), 1, "{pairs:?}");
    pairs.into_iter().next().unwrap()
}

/// Shards of two pods with masters on pods 0, 2, 4 by their own account, pods 3 and 5
/// attached, pod 1 a master (owning slots or not).
const ATTACHED: [Option<usize>; 6] = [None, None, None, Some(2), None, Some(4)];

#[test]
fn fresh_nodes_meet_first() {
    let fresh: Vec<NodeView> = (0..6).map(|i| lone(&id(i))).collect();
    assert_eq!(
        plan(&fresh, GOAL),
        Action::Meet {
            from: 0,
            to: vec![1, 2, 3, 4, 5]
        }
    );
}

#[test]
fn a_peer_marked_failed_but_reachable_is_met_again() {
    // After all pods restart with new IPs, pod 1 still has pod 0's old address, failed.
    let own = vec![vec![(0, 5460)], vec![(5461, 16383)], vec![]];
    let mut v = views(&own, &[None; 3], true);
    v[1].nodes[0].flags.insert("fail".into());
    assert_eq!(
        plan(&v, GOAL),
        Action::Meet {
            from: 1,
            to: vec![0]
        }
    );
}

#[test]
fn a_peer_unlinked_or_suspected_is_met_again_before_ready() {
    // Every pod restarted with a new IP: before a node timeout the nodes still report
    // cluster_state:ok with every peer at its old address, unlinked; then `fail?`, never `fail`
    // (no node reaches another to agree). Neither is Ready: pod 0 meets the others again.
    let (own, replica_of) = formed();
    let mut v = views(&own, &replica_of, true);
    for n in v[0].nodes.iter_mut().filter(|n| !n.is_myself()) {
        n.disconnected = true;
    }
    assert_eq!(
        plan(&v, GOAL),
        Action::Meet {
            from: 0,
            to: vec![1, 2, 3, 4, 5]
        }
    );
    let mut v = views(&own, &replica_of, false);
    v[3].nodes[2].flags.insert("fail?".into());
    assert_eq!(
        plan(&v, GOAL),
        Action::Meet {
            from: 3,
            to: vec![2]
        }
    );
}

#[test]
fn assigns_only_free_slots_of_the_next_shard() {
    // Shard 0 done, shard 1 (pod 2) half done: an interrupted run.
    let own = vec![
        vec![(0, 5460)],
        vec![],
        vec![(5461, 8000)],
        vec![],
        vec![],
        vec![],
    ];
    let v = views(&own, &[None; 6], false);
    assert_eq!(
        plan(&v, GOAL),
        Action::AddSlots {
            pod: 2,
            ranges: vec![(8001, 10921)]
        }
    );
}

#[test]
fn never_reassigns_a_slot_someone_else_owns() {
    // Pod 4 somehow owns a slot of shard 0's range: pod 0 gets the rest around it.
    let own = vec![
        vec![],
        vec![],
        vec![(5461, 10921)],
        vec![],
        vec![(100, 100), (10922, 16383)],
        vec![],
    ];
    let v = views(&own, &[None; 6], false);
    assert_eq!(
        plan(&v, GOAL),
        Action::AddSlots {
            pod: 0,
            ranges: vec![(0, 99), (101, 5460)]
        }
    );
}

#[test]
fn replicas_follow_their_shard_master_then_ready() {
    let (own, replicas) = formed();
    let v = views(&own, &[None, Some(0), None, None, None, None], false);
    assert_eq!(
        plan(&v, GOAL),
        Action::Replicate {
            pod: 3,
            master_pod: 2,
            master_id: "id2".into()
        }
    );
    let v = views(&own, &replicas, false);
    assert!(matches!(plan(&v, GOAL), Action::Wait(_)));
    let v = views(&own, &replicas, true);
    assert_eq!(plan(&v, GOAL), Action::None);
    let s = status(&v, GOAL, &Action::None);
    assert_eq!(s.phase, RedisClusterPhase::Ready);
    assert_eq!((s.masters, s.replicas, s.slots_assigned), (3, 3, 16384));
    assert_eq!((s.slots_to_move, s.stateful_set_masters), (0, Some(3)));
    assert_eq!(s.stateful_set_pods, Some(6));
}

#[test]
fn a_leftover_handshake_entry_is_not_ready_yet() {
    let (own, replicas) = formed();
    let mut v = views(&own, &replicas, true);
    v[3].nodes
        .push(entry("f00d", "handshake,master", None, &[]));
    assert_eq!(
        plan(&v, GOAL),
        Action::Wait("pod 3 is still handshaking a node".into())
    );
    v[3].nodes.pop();
    assert_eq!(plan(&v, GOAL), Action::None);
}

#[test]
fn after_a_failover_the_promoted_replica_keeps_its_slots() {
    // Pod 0 became a replica of pod 1, which took its slots: nothing to assign or replicate.
    let (mut own, _) = formed();
    own.swap(0, 1);
    let v = views(&own, &[Some(1), None, None, Some(2), None, Some(4)], true);
    assert_eq!(plan(&v, GOAL), Action::None);
}

#[test]
fn scaling_out_meets_the_new_shard_attaches_its_replica_then_moves_a_batch() {
    let (mut own, mut replicas) = formed();
    let mut v = views(&own, &replicas, true);
    v.push(lone("id6"));
    v.push(lone("id7"));
    assert_eq!(
        plan(&v, FOUR),
        Action::Meet {
            from: 0,
            to: vec![6, 7]
        }
    );
    assert_eq!(status(&v, FOUR, &plan(&v, FOUR)).slots_to_move, 4096);

    own.extend([vec![], vec![]]);
    replicas.extend([None, None]);
    let v = views(&own, &replicas, true);
    assert_eq!(
        plan(&v, FOUR),
        Action::Replicate {
            pod: 7,
            master_pod: 6,
            master_id: "id6".into()
        }
    );

    replicas[7] = Some(6);
    let v = views(&own, &replicas, true);
    let action = plan(&v, FOUR);
    // Shard 2 is furthest over its quota (5462 of 4096): its highest slots go first.
    let Action::Migrate { moves, masters } = &action else {
        panic!("{action:?}")
    };
    assert_eq!(moves.len(), rebalance::SLOTS_PER_STEP);
    assert!(moves.iter().all(|m| (m.from, m.to) == (4, 6)));
    assert!(moves.iter().all(|m| m.import && m.migrate && m.keys));
    assert_eq!(moves[0].slot, 16384 - rebalance::SLOTS_PER_STEP as u16);
    assert_eq!(moves.last().unwrap().slot, 16383);
    assert_eq!(masters, &[0, 2, 4, 6]);
    let s = status(&v, FOUR, &action);
    assert_eq!(s.phase, RedisClusterPhase::Rebalancing);
    assert_eq!((s.slots_to_move, s.stateful_set_masters), (4096, Some(4)));
    assert_eq!(s.stateful_set_pods, Some(8));
}

#[test]
fn balanced_four_shards_are_ready() {
    let (own, replicas) = four_shards();
    let v = views(&own, &replicas, true);
    assert_eq!(plan(&v, FOUR), Action::None);
}

#[test]
fn an_open_migration_is_finished_before_anything_else() {
    let (mut own, mut replicas) = formed();
    own.extend([vec![], vec![]]);
    replicas.extend([None, Some(6)]);
    let mut v = views(&own, &replicas, true);
    // Interrupted after IMPORTING on pod 6 and MIGRATING on pod 0.
    v[0].nodes[0].migrating.push((100, "id6".into()));
    v[6].nodes[6].importing.push((100, "id0".into()));
    let resume = |v: &[NodeView]| match plan(v, FOUR) {
        Action::Migrate { moves, .. } => moves,
        other => panic!("{other:?}"),
    };
    let moves = resume(&v);
    assert_eq!(moves.len(), 1);
    let m = &moves[0];
    assert_eq!((m.slot, m.from, m.to), (100, 0, 6));
    assert!(m.import && m.migrate && m.keys);

    // Interrupted after IMPORTING only: the source is marked MIGRATING as well.
    v[0].nodes[0].migrating.clear();
    let m = &resume(&v)[0];
    assert_eq!(
        (m.slot, m.from, m.to, m.import, m.migrate),
        (100, 0, 6, true, true)
    );

    // Interrupted after SETSLOT NODE on the target: the target is not told to import again.
    v[6].nodes[6].importing.clear();
    v[6].nodes[6].slots = vec![(100, 100)];
    v[0].nodes[0].migrating.push((100, "id6".into()));
    let m = &resume(&v)[0];
    assert_eq!((m.import, m.migrate), (false, true));
    assert_eq!(
        status(&v, FOUR, &plan(&v, FOUR)).phase,
        RedisClusterPhase::Rebalancing
    );
}

#[test]
fn a_migration_marker_towards_a_node_no_pod_has_is_cleared() {
    let (own, replicas) = formed();
    let mut v = views(&own, &replicas, true);
    v[2].nodes[2].importing.push((7, "gone".into()));
    assert_eq!(
        plan(&v, GOAL),
        Action::Stabilize {
            pod: 2,
            slots: vec![7]
        }
    );
}

#[test]
fn scaling_in_drains_the_departing_shard_then_resets_and_forgets_it() {
    let (own, replicas) = four_shards();
    let v = views(&own, &replicas, true);
    let action = plan(&v, GOAL);
    let Action::Migrate { moves, .. } = &action else {
        panic!("{action:?}")
    };
    // The departing shard gives first, to the shard most under its quota (shard 2 needs 1366).
    assert!(moves.iter().all(|m| (m.from, m.to) == (6, 4)));
    assert_eq!(moves.last().unwrap().slot, 16383);
    let s = status(&v, GOAL, &action);
    assert_eq!(s.phase, RedisClusterPhase::Draining);
    assert_eq!((s.slots_to_move, s.stateful_set_masters), (4096, Some(4)));

    // Slots all moved; the departing master became a replica, as Redis makes it.
    let (mut own, mut replicas) = formed();
    own.extend([vec![], vec![]]);
    replicas.extend([Some(4), Some(4)]);
    let v = views(&own, &replicas, true);
    let action = plan(&v, GOAL);
    assert_eq!(action, Action::Reset { pods: vec![6, 7] });
    let s = status(&v, GOAL, &action);
    assert_eq!(
        (s.phase, s.stateful_set_masters),
        (RedisClusterPhase::Draining, Some(4))
    );

    // Reset: pods 6 and 7 have new ids and know nobody; the others still remember the old ones.
    let mut v = v;
    v[6] = lone("new6");
    v[7] = lone("new7");
    let action = plan(&v, GOAL);
    let Action::Forget { forget } = &action else {
        panic!("{action:?}")
    };
    assert_eq!(forget.len(), 6);
    assert!(
        forget
            .iter()
            .all(|(_, ids)| ids == &["id6".to_string(), "id7".to_string()])
    );
    assert_eq!(
        status(&v, GOAL, &action).stateful_set_masters,
        Some(4),
        "the StatefulSet keeps the pods until they are forgotten"
    );

    for view in &mut v[..6] {
        view.nodes.retain(|n| n.id != "id6" && n.id != "id7");
    }
    assert_eq!(plan(&v, GOAL), Action::None);
    let s = status(&v, GOAL, &Action::None);
    assert_eq!(
        (s.phase, s.stateful_set_masters),
        (RedisClusterPhase::Ready, Some(3))
    );
    assert_eq!((s.masters, s.replicas), (3, 3));
}

#[test]
fn departing_pods_that_never_joined_need_no_drain() {
    // Scaled out and back in before the new pods were met.
    let (own, replicas) = formed();
    let mut v = views(&own, &replicas, true);
    v.push(lone("id6"));
    v.push(lone("id7"));
    assert_eq!(plan(&v, GOAL), Action::None);
    assert_eq!(
        status(&v, GOAL, &Action::None).stateful_set_masters,
        Some(3)
    );
}

#[test]
fn a_slot_assigned_out_of_plan_is_moved_back_by_migration() {
    // Pod 2 took slot 16000 of shard 2's range while the bootstrap was interrupted.
    let own = vec![
        vec![(0, 5460)],
        vec![],
        vec![(5461, 10921), (16000, 16000)],
        vec![],
        vec![(10922, 15999), (16001, 16383)],
        vec![],
    ];
    let (_, replicas) = formed();
    let v = views(&own, &replicas, true);
    let Action::Migrate { moves, .. } = plan(&v, GOAL) else {
        panic!()
    };
    assert_eq!(moves.len(), 1);
    assert_eq!((moves[0].slot, moves[0].from, moves[0].to), (16000, 2, 4));
}

#[test]
fn a_cluster_formed_masters_first_converges_to_shards() {
    // The previous layout: masters on pods 0, 1, 2 and pods 3, 4, 5 replicating them.
    let own = masters_first();
    let v = views(&own, &[None, None, None, Some(0), Some(1), Some(2)], true);
    // Shard 2 (pods 4 and 5) has no master: its primary becomes one.
    assert_eq!(plan(&v, GOAL), Action::Promote { pod: 4 });
    // Promoted and met again: pod 5 follows it, pod 3 (a replica of shard 0) follows pod 2.
    let v = views(&own, &[None, None, None, Some(0), None, Some(2)], true);
    assert_eq!(
        plan(&v, GOAL),
        Action::Replicate {
            pod: 3,
            master_pod: 2,
            master_id: "id2".into()
        }
    );
    let v = views(&own, &ATTACHED, true);
    // Shard 0 holds two masters' slots: the extra goes to shard 2, the one most under quota.
    assert_eq!(only_pair(&plan(&v, GOAL)), (1, 4));
}

#[test]
fn a_balanced_shard_with_two_slot_owners_gathers_them_on_its_master() {
    let own = vec![
        vec![(0, 5000)],
        vec![(5001, 5460)],
        vec![(5461, 10921)],
        vec![],
        vec![(10922, 16383)],
        vec![],
    ];
    let v = views(&own, &ATTACHED, true);
    let action = plan(&v, GOAL);
    assert_eq!(only_pair(&action), (1, 0));
    let Action::Migrate { moves, .. } = action else {
        unreachable!()
    };
    assert_eq!(moves[0].slot, 5001);
}

/// Phase, slots to move, pods the StatefulSet keeps.
fn progress(s: &RedisClusterStatus) -> (RedisClusterPhase, i32, Option<i32>) {
    (s.phase, s.slots_to_move, s.stateful_set_pods)
}

const NO_REPLICAS: Goal = Goal::new(3, 0);

#[test]
fn fewer_replicas_per_master_regroups_the_pods_and_drains_the_last_ones() {
    // 3 masters with 1 replica each -> without replicas: pods 0, 1, 2 are the shards now, pods
    // 3, 4, 5 depart. Pod 1 replicates pod 0: it becomes the master of its own shard first.
    let (own, replicas) = formed();
    let v = views(&own, &replicas, true);
    let action = plan(&v, NO_REPLICAS);
    assert_eq!(action, Action::Promote { pod: 1 });
    let s = status(&v, NO_REPLICAS, &action);
    assert_eq!(s.phase, RedisClusterPhase::Draining);
    assert_eq!(
        (s.stateful_set_pods, s.stateful_set_masters),
        (Some(6), Some(6)),
        "every pod is kept: 6 shards of one pod"
    );

    // Promoted (an empty master, met again): the departing pod 4 gives its slots to pod 1.
    let v = views(&own, &ATTACHED, true);
    let action = plan(&v, NO_REPLICAS);
    assert_eq!(only_pair(&action), (4, 1));
    assert_eq!(
        progress(&status(&v, NO_REPLICAS, &action)),
        (RedisClusterPhase::Draining, 5462, Some(6))
    );

    // Moved: every departing pod (pod 4 now a replica of a slot's new owner) is reset.
    let moved = vec![
        vec![(0, 5460)],
        vec![(10922, 16382)],
        vec![(5461, 10921), (16383, 16383)],
        vec![],
        vec![],
        vec![],
    ];
    let v = views(&moved, &[None, None, None, Some(2), Some(2), Some(2)], true);
    assert_eq!(
        plan(&v, NO_REPLICAS),
        Action::Reset {
            pods: vec![3, 4, 5]
        }
    );
    // Reset and forgotten: 3 pods.
    let v = views(&moved[..3], &[None; 3], true);
    let s = status(&v, NO_REPLICAS, &plan(&v, NO_REPLICAS));
    assert_eq!(s.phase, RedisClusterPhase::Ready);
    assert_eq!(
        (s.stateful_set_pods, s.masters, s.replicas),
        (Some(3), 3, 0)
    );
}

#[test]
fn more_replicas_per_master_attaches_the_new_pods_and_empties_the_second_master() {
    // 3 masters without replicas -> 1 replica each: shards are pods 0-1, 2-3, 4-5. Pods 3, 4, 5
    // are new; pod 1 is a master in shard 0.
    let own = masters_first();
    let v = views(&own, &[None; 6], true);
    assert_eq!(
        plan(&v, GOAL),
        Action::Replicate {
            pod: 3,
            master_pod: 2,
            master_id: "id2".into()
        }
    );
    let v = views(&own, &ATTACHED, true);
    let action = plan(&v, GOAL);
    // Shard 0's second master gives (not its master, pod 0), to the empty shard 2.
    assert_eq!(only_pair(&action), (1, 4));
    let Action::Migrate { moves, .. } = &action else {
        unreachable!()
    };
    assert_eq!(moves.last().unwrap().slot, 10921);
    assert_eq!(
        progress(&status(&v, GOAL, &action)),
        (RedisClusterPhase::Rebalancing, 5462, Some(6))
    );

    // Half way, pod 1 still gives: pod 0 keeps its range.
    let half = vec![
        vec![(0, 5460)],
        vec![(5461, 8000)],
        vec![(10922, 16383)],
        vec![],
        vec![(8001, 10921)],
        vec![],
    ];
    let v = views(&half, &ATTACHED, true);
    assert_eq!(only_pair(&plan(&v, GOAL)), (1, 4));

    // Emptied, pod 1 followed the new owner of its last slot: it goes back to its shard.
    let done = vec![
        vec![(0, 5460)],
        vec![],
        vec![(10922, 16383)],
        vec![],
        vec![(5461, 10921)],
        vec![],
    ];
    let v = views(&done, &[None, Some(4), None, Some(2), None, Some(4)], true);
    assert_eq!(
        plan(&v, GOAL),
        Action::Replicate {
            pod: 1,
            master_pod: 0,
            master_id: "id0".into()
        }
    );
}

#[test]
fn a_departing_pod_that_does_not_answer_is_named_and_every_pod_kept() {
    let failed = vec![(
        7,
        "Redis node pod-7:6379 did not answer in time".to_string(),
    )];
    let step = unreachable(8, GOAL, &failed);
    assert!(matches!(step.action, Action::Wait(_)));
    let s = step.status;
    assert_eq!(s.phase, RedisClusterPhase::Pending);
    assert_eq!(
        (s.stateful_set_pods, s.stateful_set_masters),
        (Some(8), Some(4))
    );
    assert_eq!(
        s.unreachable,
        [crate::crd::UnreachablePod {
            ordinal: 7,
            departing: true,
            error: failed[0].1.clone(),
        }]
    );
    // A pod of the goal is not departing.
    let s = unreachable(6, GOAL, &[(2, "x".into())]).status;
    assert!(!s.unreachable[0].departing);
    assert_eq!(s.stateful_set_pods, Some(6));
}
