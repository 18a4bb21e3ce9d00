//! Every example manifest of `operator/examples/`, run as a fleet and checked with the real clients
//! (`tests/js/fleet-conformance.js`: pusher-js over WebSocket, the pusher HTTP SDK for publishing),
//! and, where delta compression is coordinated across nodes, with a delta-decoding client
//! (`common/delta.rs`: pusher-js does not decode deltas).
//!
//! Which examples run is decided in ONE place, the lists below; an example in neither list fails.
//! Nothing is skipped.

use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::process::Command;

use sockudo_fleet::process::alive;
use sockudo_fleet::{Fleet, Manifest, Options};
use sockudo_operator::crd::{RateLimitSpec, RateLimitsSpec};
use sockudo_test_backends::{NatsAuth, NatsOperator, NatsServer, NatsSetup};

mod common;
use common::{example, repo_root, server_bin};

/// Examples whose backends the harness starts: run and checked with real clients.
const RUN_TODAY: &[&str] = &[
    "1-single-node.yaml",
    "2-multi-node-redis.yaml",
    "3-multi-node-full-sharing.yaml",
    "4-multi-node-nats.yaml",
    "5-redis-cluster.yaml",
    "nats-managed.yaml",
    "redis-managed.yaml",
    "redis-cluster-managed.yaml",
];

/// Examples whose backends are external (addresses elsewhere, TLS material not in the manifest):
/// once the server has their drivers they cannot be run here, only rendered and passed through
/// `sockudo check-config`.
const CHECK_ONLY: &[&str] = &[
    "nats-external.yaml",
    "redis-external.yaml",
    "redis-cluster-external.yaml",
];

/// The suite's API limit: a window long enough that the GCRA bucket does not refill during the
/// burst, so "the fleet lets through exactly N" is exact. Everything else is the example as written.
const API_LIMIT: RateLimitSpec = RateLimitSpec {
    max_requests: 40,
    window_seconds: 3600,
};

fn options() -> Options {
    Options {
        sockudo: Some(server_bin()),
        shutdown_grace: Some(0),
        ..Options::default()
    }
}

fn assert_all_gone(pids: &[u32]) {
    let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "processes left behind: {left:?}");
}

fn run_js(fleet: &Fleet) -> String {
    let root = repo_root();
    assert!(
        Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "node is not installed: run tests/setup/install-deps.sh (or `apt-get install nodejs npm`)"
    );
    assert!(
        root.join("tests/js/node_modules/pusher-js").is_dir(),
        "tests/js/node_modules is missing: run tests/setup/install-deps.sh (or `cd tests/js && npm ci`)"
    );
    let out = Command::new("node")
        .args(["--test", "--test-force-exit", "--test-concurrency=1"])
        .arg(Path::new("tests/js/fleet-conformance.js"))
        .current_dir(&root)
        .env("FLEET", fleet.describe().to_string())
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let logs: Vec<String> = fleet
        .nodes()
        .iter()
        .map(|n| format!("--- {} ---\n{}", n.name, n.output()))
        .collect();
    assert!(
        out.status.success() && stdout.contains("# fail 0"),
        "fleet conformance failed:\n{stdout}\n{stderr}\nnode logs:\n{}",
        logs.join("\n")
    );
    stdout
}

/// Starts the example and runs the client checks against it.
fn runs_and_conforms(file: &str) {
    let mut manifest = example(file);
    if let Some(limiter) = &mut manifest.cluster.spec.rate_limiter {
        limiter
            .limits
            .get_or_insert_with(RateLimitsSpec::default)
            .api = Some(API_LIMIT);
    }
    let fleet = Fleet::start_with(&manifest, options())
        .unwrap_or_else(|e| panic!("{file}: the fleet did not start: {e}"));
    assert_eq!(fleet.nodes().len(), manifest.cluster.spec.replicas as usize);
    let pids = fleet.pids();
    let report = run_js(&fleet);
    println!("{file}:\n{report}");
    let delta = &fleet.plan().config.delta_compression;
    if delta.enabled && delta.cluster_coordination {
        println!(
            "{file}: {}",
            common::delta::full_message_intervals_are_synchronised(&fleet)
        );
    }
    drop(fleet);
    assert_all_gone(&pids);
}

/// Renders, localizes and passes `sockudo check-config`, starting nothing.
fn passes_check(file: &str) {
    Fleet::check(&example(file), &options())
        .unwrap_or_else(|e| panic!("{file}: rendered config refused: {e}"));
}

fn conformance(file: &str) {
    if RUN_TODAY.contains(&file) {
        runs_and_conforms(file);
    } else if CHECK_ONLY.contains(&file) {
        passes_check(file);
    } else {
        panic!("{file} is in neither RUN_TODAY nor CHECK_ONLY in tests/fleet/tests/conformance.rs");
    }
}

macro_rules! examples {
    ($($test:ident => $file:literal,)*) => {
        $(
            #[test]
            fn $test() {
                conformance($file);
            }
        )*

        /// A new example without a test here would go unchecked.
        #[test]
        fn every_example_has_a_test() {
            let mut files: Vec<String> = std::fs::read_dir(repo_root().join("operator/examples"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|f| f.ends_with(".yaml"))
                .collect();
            files.sort();
            let mut listed = vec![$($file.to_string()),*];
            listed.sort();
            assert_eq!(files, listed);
            for f in RUN_TODAY.iter().chain(CHECK_ONLY) {
                assert!(listed.contains(&f.to_string()), "{f} is listed but has no test");
            }
        }
    };
}

examples! {
    single_node => "1-single-node.yaml",
    multi_node_redis => "2-multi-node-redis.yaml",
    multi_node_full_sharing => "3-multi-node-full-sharing.yaml",
    multi_node_nats => "4-multi-node-nats.yaml",
    redis_cluster => "5-redis-cluster.yaml",
    nats_external => "nats-external.yaml",
    nats_managed => "nats-managed.yaml",
    redis_cluster_external => "redis-cluster-external.yaml",
    redis_cluster_managed => "redis-cluster-managed.yaml",
    redis_external => "redis-external.yaml",
    redis_managed => "redis-managed.yaml",
}

/// The library API tests drive fleets with: endpoints, a crash, and a stop that leaves nothing.
#[test]
fn kill_node_and_stop_leave_nothing_behind() {
    let mut fleet = Fleet::start_with(&example("1-single-node.yaml"), options()).unwrap();
    assert_eq!(fleet.app(0).key, "app-key");
    assert_eq!(fleet.app(0).secret, "app-secret");
    let port = fleet.nodes()[0].port;
    assert_eq!(fleet.ws_url(0), format!("ws://127.0.0.1:{port}"));
    assert_eq!(fleet.http_url(0), format!("http://127.0.0.1:{port}"));
    let metrics = fleet.metrics_url(0).expect("metrics on by default");
    let metrics_port: u16 = metrics
        .trim_end_matches("/metrics")
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let (status, body) = sockudo_fleet::fleet::http_get(metrics_port, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("sockudo_"), "{body}");
    // The node runs under its pod-like name.
    let (_, ready) = sockudo_fleet::fleet::http_get(port, "/ready").unwrap();
    assert!(
        ready.contains("single-node-0") || !ready.is_empty(),
        "{ready}"
    );

    let pids = fleet.pids();
    fleet.kill_node(0);
    assert!(
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(),
        "node 0 is down"
    );
    fleet.stop();
    assert_all_gone(&pids);
    let dir = fleet.dir().to_path_buf();
    drop(fleet);
    assert!(!dir.exists(), "the temporary directory is removed");
}

/// An external NATS in operator (JWT) mode, reached with a user `.creds` file from the
/// credentials Secret (`secretRef.credentialsKey`): the operator mounts it and renders
/// `nats.credentials_file`, every node connects with it, and the cross-node delta check passes
/// (publishes through every node, sequence numbers from JetStream KV in the user's account).
#[test]
fn external_nats_with_a_creds_file() {
    let operator = NatsOperator::generate("fleet").unwrap_or_else(|e| panic!("{e}"));
    let nats = NatsServer::start_with(NatsSetup {
        auth: Some(NatsAuth::Operator(Box::new(operator.clone()))),
        ..NatsSetup::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let creds: String = operator
        .user_creds("fleet")
        .unwrap_or_else(|e| panic!("{e}"))
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect();
    let url = nats.url();
    let yaml = format!(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: creds-fleet-app-1234
stringData:
  key: app-key
  secret: app-secret
---
apiVersion: v1
kind: Secret
metadata:
  name: creds-fleet-nats
stringData:
  user.creds: |
{creds}---
apiVersion: sockudo.io/v1alpha1
kind: SockudoCluster
metadata:
  name: creds-fleet
spec:
  replicas: 2
  adapter:
    driver: nats
  nats:
    prefix: creds
    external:
      servers:
        - {url}
      secretRef:
        name: creds-fleet-nats
        credentialsKey: user.creds
  rateLimiter:
    driver: memory
  deltaCompression:
    enabled: true
    clusterCoordination: true
  apps:
    - id: "1234"
      secretRef:
        name: creds-fleet-app-1234
"#
    );
    let manifest = Manifest::parse(&yaml, "external_nats_with_a_creds_file").unwrap();
    let fleet = Fleet::start_with(&manifest, options())
        .unwrap_or_else(|e| panic!("the fleet did not start: {e}"));
    assert_eq!(
        fleet.plan().config.nats.credentials_file.as_deref(),
        Some("/etc/sockudo/backends/nats/nats.creds")
    );
    assert!(
        fleet.plan().missing.is_empty(),
        "{:?}",
        fleet.plan().missing
    );
    println!(
        "{}",
        common::delta::full_message_intervals_are_synchronised(&fleet)
    );
    let pids = fleet.pids();
    drop(fleet);
    assert_all_gone(&pids);
}
