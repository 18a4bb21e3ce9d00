//! The managed backends of every example start from the operator's own redis.conf / nats.conf as
//! local processes, answer with the operator's credentials, and are what the localized server
//! config points at. Independent of which drivers the server has built.

use sockudo_config::ServerConfig;
use sockudo_fleet::backends::{BackendPorts, Backends};
use sockudo_fleet::fleet::http_get;
use sockudo_fleet::localize::LOOPBACK;
use sockudo_fleet::localize::{NodePorts, backend_addresses, localize};
use sockudo_fleet::plan::Plan;
use sockudo_fleet::ports::Ports;
use sockudo_fleet::process::{Spawn, alive};
use sockudo_operator::crd::RedisMode;

mod common;
use common::example;

/// One authenticated command through redis-cli.
fn redis_cli(port: u16, password: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .env("REDISCLI_AUTH", password)
        .args(["-h", LOOPBACK, "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts the example's backends and checks each against the plan and the localized config.
fn backends_serve(name: &str) {
    let manifest = example(name);
    let plan = Plan::of(&manifest).unwrap();
    assert!(
        plan.redis.len() + plan.nats.iter().count() > 0,
        "{name} has managed backends"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut ports = Ports::new(None);
    let bp = BackendPorts::allocate(&plan, &mut ports).unwrap();
    let how = Spawn {
        echo: false,
        die_with_parent: false,
    };
    let mut backends = Backends::start(&plan, &bp, dir.path(), how).unwrap();

    let node = NodePorts {
        port: ports.take().unwrap(),
        metrics_port: ports.take().unwrap(),
    };
    let config: ServerConfig =
        localize(&plan, &bp.local_addrs(), dir.path(), node, Some(0)).unwrap();
    let reached = backend_addresses(&config);
    // These examples have only managed backends: no cluster DNS name may remain.
    assert!(reached.iter().all(|a| !a.contains(".svc")), "{reached:?}");

    for (r, pods) in plan.redis.iter().zip(&bp.redis) {
        // The operator's generated password is required (requirepass from its auth.conf).
        assert!(
            !redis_cli(pods[0].client, "wrong", &["ping"]).contains("PONG"),
            "{}",
            r.name
        );
        assert!(
            redis_cli(pods[0].client, &r.password, &["ping"]).contains("PONG"),
            "{}",
            r.name
        );
        assert!(
            reached.contains(&format!("{LOOPBACK}:{}", pods[0].client)),
            "{reached:?}"
        );
        if r.mode == RedisMode::Cluster {
            let info = redis_cli(pods[0].client, &r.password, &["cluster", "info"]);
            assert!(info.contains("cluster_state:ok"), "{info}");
            assert!(info.contains("cluster_slots_assigned:16384"), "{info}");
            assert!(
                info.contains(&format!("cluster_size:{}", r.masters)),
                "{info}"
            );
            assert!(
                info.contains(&format!("cluster_known_nodes:{}", pods.len())),
                "{info}"
            );
        }
    }
    if let Some(n) = &plan.nats {
        for p in &bp.nats {
            let (status, body) = http_get(p.monitor, "/varz").expect("nats monitor answers");
            assert_eq!(status, 200);
            let varz: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                varz["jetstream"]["config"].is_object(),
                n.jetstream,
                "{name}: JetStream as the operator decides"
            );
            if n.replicas > 1 {
                // Routes are solicited after start-up (with retries), so give them time.
                let want = n.replicas as u64 - 1;
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
                loop {
                    let (_, routez) = http_get(p.monitor, "/routez").unwrap();
                    let routez: serde_json::Value = serde_json::from_str(&routez).unwrap();
                    if routez["num_routes"] == want {
                        break;
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "{name}: {want} routes within 20 s: {routez}"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
            }
        }
        assert!(
            reached.contains(&format!("{LOOPBACK}:{}", bp.nats[0].client)),
            "{reached:?}"
        );
    }

    let pids = backends.pids();
    backends.stop();
    assert!(
        pids.iter().all(|p| !alive(*p)),
        "every backend process is gone"
    );
}

macro_rules! backend_tests {
    ($($test:ident => $file:literal,)*) => {$(
        #[test]
        fn $test() {
            backends_serve($file);
        }
    )*};
}

backend_tests! {
    multi_node_redis => "2-multi-node-redis.yaml",
    full_sharing => "3-multi-node-full-sharing.yaml",
    multi_node_nats => "4-multi-node-nats.yaml",
    redis_cluster => "5-redis-cluster.yaml",
    nats_managed => "nats-managed.yaml",
    redis_cluster_managed => "redis-cluster-managed.yaml",
    redis_managed => "redis-managed.yaml",
}
