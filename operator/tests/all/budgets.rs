//! PodDisruptionBudgets of the managed backends: one per StatefulSet with more than one pod,
//! selecting exactly its pods; none for a single pod; skipped (and reported once) without
//! `policy/v1`.

use sockudo_operator::build::{Capabilities, Child, Desired, desired, pdb};

use super::support::Example;

fn budgets(d: &Desired) -> Vec<(&str, i32)> {
    d.children
        .iter()
        .filter_map(|c| match c {
            Child::PodDisruptionBudget(p) => {
                let spec = p.spec.as_ref().unwrap();
                let max = match spec.max_unavailable.as_ref().unwrap() {
                    k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i) => *i,
                    other => panic!("{other:?}"),
                };
                Some((c.name(), max))
            }
            _ => None,
        })
        .collect()
}

/// The child `name` of the kind `pick` selects.
fn find<'a, T>(d: &'a Desired, name: &str, pick: impl Fn(&'a Child) -> Option<&'a T>) -> &'a T {
    d.children
        .iter()
        .filter(|c| c.name() == name)
        .find_map(pick)
        .unwrap_or_else(|| panic!("no {} {name}", std::any::type_name::<T>()))
}

/// The budget named like a StatefulSet selects exactly that StatefulSet's pods.
fn assert_selects_its_stateful_set(d: &Desired, name: &str) {
    let pdb = find(d, name, |c| match c {
        Child::PodDisruptionBudget(p) => Some(p),
        _ => None,
    });
    let sts = find(d, name, |c| match c {
        Child::StatefulSet(s) => Some(s),
        _ => None,
    });
    assert_eq!(
        pdb.spec.as_ref().unwrap().selector,
        Some(sts.spec.as_ref().unwrap().selector.clone())
    );
    assert_eq!(pdb.metadata.labels, sts.metadata.labels);
    assert_eq!(pdb.metadata.owner_references, sts.metadata.owner_references);
}

#[test]
fn a_managed_redis_cluster_and_nats_get_a_budget_of_one_pod() {
    let rc = Example::load("redis-cluster-managed.yaml");
    let d = desired(&rc.inputs());
    assert_eq!(
        budgets(&d),
        vec![
            ("redis-cluster-managed", 1),
            ("redis-cluster-managed-redis-cluster", 1)
        ]
    );
    assert_selects_its_stateful_set(&d, "redis-cluster-managed-redis-cluster");

    let nats = Example::load("nats-managed.yaml");
    let d = desired(&nats.inputs());
    assert!(
        budgets(&d).contains(&("nats-managed-nats", 1)),
        "{:?}",
        budgets(&d)
    );
    assert_selects_its_stateful_set(&d, "nats-managed-nats");
}

#[test]
fn a_single_pod_backend_gets_no_budget() {
    // A standalone managed Redis: one pod.
    let redis = Example::load("redis-managed.yaml");
    let d = desired(&redis.inputs());
    assert!(
        d.children
            .iter()
            .any(|c| c.kind() == "StatefulSet" && c.name() == "redis-managed-redis")
    );
    // Only the server pods' budget.
    assert_eq!(budgets(&d), vec![("redis-managed", 1)]);
    // A one-server NATS, and a single server replica: no budget at all.
    let mut nats = Example::load("nats-managed.yaml");
    nats.cluster.spec.replicas = 1;
    let managed = nats
        .cluster
        .spec
        .nats
        .as_mut()
        .unwrap()
        .managed
        .as_mut()
        .unwrap();
    managed.replicas = Some(1);
    let d = desired(&nats.inputs());
    assert!(
        d.children
            .iter()
            .any(|c| c.kind() == "StatefulSet" && c.name() == "nats-managed-nats"),
        "the NATS is still managed"
    );
    assert_eq!(budgets(&d), vec![]);
    assert!(!d.skipped.contains(&pdb::SKIPPED.to_string()));
}

#[test]
fn without_policy_v1_every_budget_is_skipped_and_reported_once() {
    let rc = Example::load("redis-cluster-managed.yaml");
    let inputs = sockudo_operator::build::Inputs {
        capabilities: Capabilities {
            pdb_v1: false,
            ..Capabilities::ALL
        },
        ..rc.inputs()
    };
    let d = desired(&inputs);
    assert_eq!(budgets(&d), vec![]);
    assert_eq!(
        d.skipped.iter().filter(|s| *s == pdb::SKIPPED).count(),
        1,
        "{:?}",
        d.skipped
    );
}
