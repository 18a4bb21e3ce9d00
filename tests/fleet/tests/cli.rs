//! The `sockudo-fleet` command as a person uses it: `render`, `run` until Ctrl-C, and the "not
//! built yet" refusal.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FLEET: &str = env!("CARGO_BIN_EXE_sockudo-fleet");

mod common;
use common::{example_path as example, server_bin};

#[test]
fn render_prints_the_operator_config_and_backend_confs() {
    let out = Command::new(FLEET)
        .arg("render")
        .arg(example("4-multi-node-nats.yaml"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "\"driver\": \"nats\"",
        "/etc/sockudo/backends/nats/token",
        "redis.conf",
        "nats.conf",
        "jetstream",
        "JetStream on",
    ] {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }
    // Passwords live in the auth Secrets, never in what render prints.
    assert!(
        !text.lines().any(|l| l.starts_with("requirepass")),
        "render leaks a password:\n{text}"
    );
}

#[test]
fn run_serves_until_interrupted_and_leaves_nothing() {
    let mut child = Command::new(FLEET)
        .arg("run")
        .arg(example("1-single-node.yaml"))
        .arg("--sockudo")
        .arg(server_bin())
        .args(["--grace", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    let mut port = None;
    while Instant::now() < deadline && port.is_none() {
        let line = lines.next().expect("output until the table").unwrap();
        // NODE table row: `single-node-0   ws://127.0.0.1:PORT ...`
        if line.starts_with("single-node-0 ") {
            port = line
                .split("ws://127.0.0.1:")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|p| p.parse::<u16>().ok());
        }
        seen.push(line);
    }
    let port = port.unwrap_or_else(|| panic!("no endpoint table:\n{}", seen.join("\n")));
    // Read on in the background so the harness never blocks on a full pipe.
    let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    assert!(
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok(),
        "the node listens"
    );

    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let status = child.wait().unwrap();
    let rest = rest.join().unwrap();
    assert!(status.success(), "{status}:\n{}", rest.join("\n"));
    assert!(
        rest.iter().any(|l| l == "[fleet] stopped"),
        "{}",
        rest.join("\n")
    );
    assert!(
        rest.iter().any(|l| l.starts_with("[single-node-0] ")),
        "node logs are prefixed"
    );
    assert!(
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(),
        "the node is gone"
    );
}

#[test]
fn external_backends_are_rendered_at_the_manifest_addresses() {
    let out = Command::new(FLEET)
        .arg("render")
        .arg(example("redis-cluster-external.yaml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("redis-0.redis.data.svc:6379"), "{stdout}");
}

#[test]
fn a_missing_backend_binary_says_how_to_install_it() {
    let err = sockudo_fleet::process::require("nats-server-not-here", "nats-server").unwrap_err();
    assert!(
        err.to_string().contains("apt-get install -y nats-server"),
        "{err}"
    );
}
