//! The operator's rendered config, pointed at local processes and files: pure, no processes.

use std::path::Path;

use sockudo_config::{ClusterNode, NatsServers};
use sockudo_fleet::localize::{LocalAddrs, NodePorts, localize};
use sockudo_fleet::plan::Plan;

mod common;
use common::example;

const ROOT: &str = "/tmp/fleet-root";
const NODE: NodePorts = NodePorts {
    port: 7001,
    metrics_port: 7002,
};

#[test]
fn standalone_redis_secrets_and_node_settings() {
    let plan = Plan::of(&example("3-multi-node-full-sharing.yaml")).unwrap();
    let local = LocalAddrs {
        redis: vec![vec![7100]],
        nats: vec![],
    };
    let c = localize(&plan, &local, Path::new(ROOT), NODE, Some(0)).unwrap();
    let redis = c.database.redis.as_ref().unwrap();
    assert_eq!(
        (redis.host.as_deref(), redis.port),
        (Some("127.0.0.1"), Some(7100))
    );
    assert_eq!(
        redis.password_file.as_deref(),
        Some("/tmp/fleet-root/etc/sockudo/backends/redis/password")
    );
    assert_eq!(
        c.apps[0].key_file.as_deref(),
        Some("/tmp/fleet-root/etc/sockudo/apps/1234.key")
    );
    assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 7001));
    assert_eq!(
        (c.metrics.host.as_str(), c.metrics.port),
        ("127.0.0.1", 7002)
    );
    assert_eq!(c.shutdown_grace_period, 0);
    assert_eq!(c.node_id, None, "NODE_ID comes from the environment");
    // Everything else is the operator's config as rendered.
    assert_eq!(c.cache, plan.config.cache);
    assert_eq!(c.delta_compression, plan.config.delta_compression);
    // Every mounted Secret file of the pod is provided.
    let files: Vec<String> = plan
        .secret_files
        .iter()
        .flat_map(|v| v.files.keys().map(move |f| format!("{}/{f}", v.dir)))
        .collect();
    assert!(files.contains(&"/etc/sockudo/backends/redis/password".to_string()));
    assert!(files.contains(&"/etc/sockudo/apps/1234.secret".to_string()));
}

#[test]
fn redis_cluster_nodes_and_nats_servers() {
    let plan = Plan::of(&example("5-redis-cluster.yaml")).unwrap();
    let ports: Vec<u16> = (7200..7206).collect();
    let local = LocalAddrs {
        redis: vec![ports.clone()],
        nats: vec![],
    };
    let c = localize(&plan, &local, Path::new(ROOT), NODE, None).unwrap();
    let nodes: Vec<String> = c
        .database
        .redis_cluster
        .as_ref()
        .unwrap()
        .nodes
        .iter()
        .map(ClusterNode::address)
        .collect();
    let want: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    assert_eq!(nodes, want);

    let plan = Plan::of(&example("4-multi-node-nats.yaml")).unwrap();
    let local = LocalAddrs {
        redis: vec![vec![7300]],
        nats: vec![7401, 7402, 7403],
    };
    let c = localize(&plan, &local, Path::new(ROOT), NODE, None).unwrap();
    assert_eq!(
        c.nats.servers,
        NatsServers::List(vec![
            "nats://127.0.0.1:7401".into(),
            "nats://127.0.0.1:7402".into(),
            "nats://127.0.0.1:7403".into()
        ])
    );
    assert_eq!(c.cache.redis.port, Some(7300));
    assert_eq!(
        c.nats.token_file.as_deref(),
        Some("/tmp/fleet-root/etc/sockudo/backends/nats/token")
    );
}

#[test]
fn external_backends_are_used_as_given() {
    let manifest = example("nats-external.yaml");
    let plan = Plan::of(&manifest).unwrap();
    let c = localize(&plan, &LocalAddrs::default(), Path::new(ROOT), NODE, None).unwrap();
    assert_eq!(c.nats.servers, plan.config.nats.servers);
    assert!(!plan.external.is_empty());
    assert!(plan.missing.is_empty(), "{:?}", plan.missing);
    // Without its TLS CA Secret in the manifest, the gap is reported, not invented.
    let mut without_ca = manifest.clone();
    assert!(without_ca.secrets.remove("nats-external-ca").is_some());
    let plan = Plan::of(&without_ca).unwrap();
    assert!(
        plan.missing.iter().any(|m| m.contains("nats-external-ca")),
        "{:?}",
        plan.missing
    );
}
