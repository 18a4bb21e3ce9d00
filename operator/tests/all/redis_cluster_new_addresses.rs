//! Every pod of a managed Redis Cluster coming back with a new address at once (a node pool
//! replaced, a namespace restored): each node keeps its volume, so its `nodes.conf` still has
//! its id and its peers at their old, dead addresses, and no node can reach any other by
//! itself. The operator, reaching the pods through their (re-resolved) names, MEETs them again
//! and the cluster comes back with the same nodes, slots, replicas and keys.
//!
//! Redis records a peer by IP and port, and on loopback every node has 127.0.0.1: restarting
//! each node on a new port is the honest stand-in for a pod's new IP. (The operator's pods also
//! announce their DNS names with `cluster-announce-hostname`, but that is for clients; the
//! cluster bus still dials the IP a peer was last seen at.) The nodes run with AOF, as the
//! operator's pods on a volume, so their keys survive the SIGKILL.

use std::collections::{BTreeMap, BTreeSet};

use sockudo_operator::controller::Config;
use sockudo_operator::controller::redis_cluster;
use sockudo_test_backends::{RedisServer, RedisSetup, free_cluster_port};

use super::redis_cluster_fixture::{
    PASSWORD, assert_keys, assert_shape, id_of, overridden, run_to_ready, start_with, write_keys,
};
use super::support::Example;

const KEYS: usize = 1000;

/// Each node's own account of whom it replicates: replica id -> master id.
fn replication(servers: &[RedisServer]) -> BTreeMap<String, String> {
    servers
        .iter()
        .filter_map(|s| {
            let nodes = redis_cluster::parse_nodes(&s.cli(&["cluster", "nodes"]).unwrap()).unwrap();
            let me = nodes.into_iter().find(|n| n.is_myself()).unwrap();
            Some((me.id, me.master_id?))
        })
        .collect()
}

/// The address `s` has for the node `id`, as its `CLUSTER NODES` prints it (`ip:port@bus`).
fn address_seen(s: &RedisServer, id: &str) -> String {
    let nodes = s.cli(&["cluster", "nodes"]).unwrap();
    let line = nodes
        .lines()
        .find(|l| l.starts_with(id))
        .unwrap_or_else(|| panic!("{} does not know {id}:\n{nodes}", s.port));
    line.split_whitespace().nth(1).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_after_every_node_restarts_with_a_new_address() {
    let example = Example::load("5-redis-cluster.yaml");
    let setup = RedisSetup {
        password: Some(PASSWORD.into()),
        persistent: true,
        ..RedisSetup::default()
    };
    let pods = redis_cluster::target(&example.cluster, &example.generated, &Config::default())
        .unwrap()
        .goal
        .pods();
    let mut servers = start_with(&setup, pods);
    let formed = overridden(&example, &servers);
    assert_eq!(
        (formed.goal.masters, formed.goal.replicas_per_master),
        (3, 1)
    );
    run_to_ready(&formed.nodes, formed.goal).await;
    write_keys(&servers, "before", KEYS).await;
    let ids: Vec<String> = servers.iter().map(id_of).collect();
    let replicas = replication(&servers);
    assert_eq!(replicas.len(), 3, "{replicas:?}");

    // Every pod goes away, then every one comes back elsewhere, with its directory.
    let old: Vec<u16> = servers.iter().map(|s| s.port).collect();
    for s in &mut servers {
        s.kill();
    }
    let mut taken: BTreeSet<u16> = old.iter().copied().collect();
    for s in &mut servers {
        let port = std::iter::repeat_with(free_cluster_port)
            .find(|p| !taken.contains(p))
            .unwrap();
        taken.insert(port);
        s.restart_on(port).unwrap();
    }
    // The nodes remember each other only at the old addresses.
    let stale = address_seen(&servers[0], &ids[1]);
    assert!(
        stale.starts_with(&format!("127.0.0.1:{}@", old[1])),
        "pod 0 has pod 1 at {stale}"
    );

    let moved = overridden(&example, &servers);
    assert_ne!(moved.nodes.addresses, formed.nodes.addresses);
    let status = run_to_ready(&moved.nodes, moved.goal).await;
    assert_eq!(
        (status.masters, status.replicas, status.slots_assigned),
        (3, 3, 16384)
    );

    // The same cluster, not a new one: same ids, same pairs, every key, new addresses known.
    let now: Vec<String> = servers.iter().map(id_of).collect();
    assert_eq!(now, ids, "node ids changed: the cluster was formed anew");
    assert_eq!(replication(&servers), replicas);
    assert_shape(&servers, moved.goal);
    for s in &servers {
        for (i, id) in ids.iter().enumerate() {
            let seen = address_seen(s, id);
            let port = servers[i].port;
            assert!(
                seen.starts_with(&format!("127.0.0.1:{port}@")),
                "{} has pod {i} at {seen}",
                s.port
            );
        }
    }
    assert_keys(&servers, "before", KEYS).await;
}
