//! The rendered redis.conf and nats.conf are accepted by the real `redis-server` and
//! `nats-server`: each is started on a free loopback port with the rendered file (only its
//! absolute paths and ports overridden), must answer an authenticated PING, and is then killed.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sockudo_operator::build::redis::{REDIS_AUTH_DIR, auth_conf, redis_conf};
use sockudo_operator::build::topology::Topology;
use sockudo_operator::build::{Child as Built, nats};
use sockudo_operator::crd::RedisMode;

use super::support::Example;

const PASSWORD: &str = "generated-test-password";

fn require(binary: &str, package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"] {
        let p = Path::new(dir).join(binary);
        if p.exists() {
            return p;
        }
    }
    panic!("`{binary}` is not installed; install it with: apt-get install -y {package}");
}

/// Below the kernel's ephemeral range, so no outgoing connection takes it before the server binds.
fn free_port() -> u16 {
    sockudo_test_backends::free_port()
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sockudo-operator-{tag}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Kills the server it holds when dropped, so a failing assertion leaves nothing running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_port(port: u16, server: &mut Running, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!(
                "server exited with {status}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "server did not listen on {port}:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

fn start_redis(mode: RedisMode, persistent: bool) -> (Running, u16, PathBuf) {
    let binary = require("redis-server", "redis-server");
    let dir = temp_dir("redis");
    std::fs::write(dir.join("auth.conf"), auth_conf(PASSWORD)).unwrap();
    // Only the absolute paths of the pod are moved into the temporary directory.
    let conf = redis_conf(mode, persistent)
        .replace(REDIS_AUTH_DIR, dir.to_str().unwrap())
        .replace(" /data", &format!(" {}", dir.display()));
    std::fs::write(dir.join("redis.conf"), conf).unwrap();
    let port = free_port();
    let log = dir.join("log");
    let mut cmd = Command::new(binary);
    cmd.arg(dir.join("redis.conf"))
        .args(["--port", &port.to_string()]);
    if mode == RedisMode::Cluster {
        cmd.args(["--cluster-announce-hostname", "localhost"]);
    }
    let out = std::fs::File::create(&log).unwrap();
    let child = cmd
        .stderr(out.try_clone().unwrap())
        .stdout(out)
        .spawn()
        .unwrap();
    let mut running = Running(child);
    wait_for_port(port, &mut running, &log);
    (running, port, dir)
}

fn redis_url(port: u16, password: Option<&str>) -> String {
    match password {
        Some(p) => format!("redis://:{p}@127.0.0.1:{port}/"),
        None => format!("redis://127.0.0.1:{port}/"),
    }
}

#[test]
fn redis_conf_is_accepted_by_redis_server() {
    for (mode, persistent) in [
        (RedisMode::Standalone, false),
        (RedisMode::Standalone, true),
        (RedisMode::Cluster, true),
    ] {
        let (_server, port, dir) = start_redis(mode, persistent);
        let client = redis::Client::open(redis_url(port, Some(PASSWORD))).unwrap();
        let mut con = client.get_connection().unwrap();
        let pong: String = redis::cmd("PING").query(&mut con).unwrap();
        assert_eq!(pong, "PONG", "{mode:?}");
        if mode == RedisMode::Cluster {
            let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut con).unwrap();
            assert!(
                info.contains("cluster_enabled:1") || info.contains("cluster_state"),
                "{info}"
            );
        }
        // Without the password the server refuses to work.
        let anonymous = redis::Client::open(redis_url(port, None)).unwrap();
        let mut con = anonymous.get_connection().unwrap();
        let refused: redis::RedisResult<String> = redis::cmd("GET").arg("x").query(&mut con);
        assert!(refused.is_err(), "{mode:?}: unauthenticated GET worked");
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn nats_conf_for(example: &str) -> (String, bool) {
    let ex = Example::load(example);
    let inputs = ex.inputs();
    let spec = Topology::of(&ex.cluster.spec).nats.unwrap().clone();
    let built = nats::managed(&spec, &inputs);
    let conf = built
        .iter()
        .find_map(|c| match c {
            Built::ConfigMap(cm) => cm.data.as_ref()?.get("nats.conf").cloned(),
            _ => None,
        })
        .unwrap();
    (conf, nats::jetstream(&inputs, &spec))
}

/// Speaks just enough of the NATS protocol to authenticate and PING.
fn nats_ping(port: u16, token: &str) -> String {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut info = String::new();
    reader.read_line(&mut info).unwrap();
    assert!(info.starts_with("INFO "), "{info}");
    let mut w = stream;
    write!(
        w,
        "CONNECT {{\"auth_token\":\"{token}\",\"verbose\":false,\"pedantic\":false}}\r\nPING\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    reader.read_line(&mut reply).unwrap();
    reply
}

#[test]
fn nats_conf_is_accepted_by_nats_server() {
    let binary = require("nats-server", "nats-server");
    for example in ["nats-managed.yaml", "4-multi-node-nats.yaml"] {
        let (conf, jetstream) = nats_conf_for(example);
        assert!(jetstream, "{example}: delta coordination needs JetStream");
        let dir = temp_dir("nats");
        // Only the absolute paths of the pod are moved into the temporary directory.
        let conf = conf
            .replace("\"/data\"", &format!("\"{}\"", dir.join("js").display()))
            .replace(
                "/var/run/nats/nats.pid",
                dir.join("nats.pid").to_str().unwrap(),
            );
        std::fs::write(dir.join("nats.conf"), &conf).unwrap();
        let (port, monitor, cluster) = (free_port(), free_port(), free_port());
        let log = dir.join("log");
        let child = Command::new(&binary)
            .arg("-c")
            .arg(dir.join("nats.conf"))
            .args(["-p", &port.to_string(), "-m", &monitor.to_string()])
            .args(["--cluster", &format!("nats://127.0.0.1:{cluster}")])
            .env("SERVER_NAME", "test-nats-0")
            .env("NATS_TOKEN", PASSWORD)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut server = Running(child);
        wait_for_port(port, &mut server, &log);
        assert_eq!(nats_ping(port, PASSWORD).trim(), "PONG", "{example}");
        let refused = nats_ping(port, "wrong-token");
        assert!(
            refused.starts_with("-ERR"),
            "{example}: wrong token accepted: {refused}"
        );
        drop(server);
        let _ = std::fs::remove_dir_all(dir);
    }
}
