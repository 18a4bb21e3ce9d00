//! The managed backends of a manifest as local processes, each started from the configuration the
//! operator renders (redis.conf / nats.conf) with only ports and paths rewritten for this machine.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use sockudo_operator::build::nats::{CLIENT_PORT, CLUSTER_PORT, MONITOR_PORT};
use sockudo_operator::crd::RedisMode;

use crate::error::{FleetError, Result};
use crate::localize::{LOOPBACK, LocalAddrs};
use crate::plan::{ManagedNats, ManagedRedis, Plan};
use crate::ports::Ports;
use crate::process::{Proc, Spawn, require, stop_all, wait_ready};

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Ports of one Redis pod: client and cluster bus.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RedisPorts {
    pub client: u16,
    pub bus: u16,
}

/// Ports of one NATS server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NatsPorts {
    pub client: u16,
    pub cluster: u16,
    pub monitor: u16,
}

/// Every backend port, chosen before anything starts (the server config needs them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackendPorts {
    pub redis: Vec<Vec<RedisPorts>>,
    pub nats: Vec<NatsPorts>,
}

impl BackendPorts {
    pub fn allocate(plan: &Plan, ports: &mut Ports) -> Result<BackendPorts> {
        let mut redis = Vec::new();
        for r in &plan.redis {
            let pods = (0..r.pods())
                .map(|_| {
                    // The bus port is set explicitly: client + 10000 may not exist or be free.
                    Ok(RedisPorts {
                        client: ports.take()?,
                        bus: ports.take()?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            redis.push(pods);
        }
        let nats = match &plan.nats {
            Some(n) => (0..n.replicas)
                .map(|_| {
                    Ok(NatsPorts {
                        client: ports.take()?,
                        cluster: ports.take()?,
                        monitor: ports.take()?,
                    })
                })
                .collect::<Result<Vec<_>>>()?,
            None => Vec::new(),
        };
        Ok(BackendPorts { redis, nats })
    }

    pub fn local_addrs(&self) -> LocalAddrs {
        LocalAddrs {
            redis: self
                .redis
                .iter()
                .map(|pods| pods.iter().map(|p| p.client).collect())
                .collect(),
            nats: self.nats.iter().map(|p| p.client).collect(),
        }
    }
}

/// The operator's redis.conf for one local pod: loopback, its ports, its directory, its auth file.
pub fn local_redis_conf(
    conf: &str,
    ports: RedisPorts,
    mode: RedisMode,
    dir: &Path,
    auth_conf: &Path,
) -> Result<String> {
    let mut out = String::new();
    for line in conf.lines() {
        let key = line.split_whitespace().next().unwrap_or("");
        let replaced = match key {
            "bind" => format!("bind {LOOPBACK}"),
            "port" => format!("port {}", ports.client),
            "dir" => format!("dir {}", dir.display()),
            "cluster-config-file" => {
                format!("cluster-config-file {}", dir.join("nodes.conf").display())
            }
            "include" => format!("include {}", auth_conf.display()),
            _ => line.to_string(),
        };
        out.push_str(&replaced);
        out.push('\n');
    }
    if mode == RedisMode::Cluster {
        // In the pod the announced name is its DNS name (a command-line argument of the
        // StatefulSet); here it is the loopback address.
        out.push_str(&format!(
            "# Local run: sockudo-fleet.\ncluster-port {}\ncluster-announce-hostname {LOOPBACK}\n",
            ports.bus
        ));
    }
    if out.contains("/data") || out.contains("/etc/redis") {
        return Err(FleetError::Localize(format!(
            "redis.conf has container paths this harness does not rewrite:\n{out}"
        )));
    }
    Ok(out)
}

/// The operator's nats.conf for local server `i`: loopback ports, local routes, local store.
pub fn local_nats_conf(
    nats: &ManagedNats,
    ports: &[NatsPorts],
    i: usize,
    dir: &Path,
) -> Result<String> {
    let headless = format!("{}-headless", nats.name);
    let mut conf = nats
        .conf
        .replace(
            &format!("\"0.0.0.0:{CLIENT_PORT}\""),
            &format!("\"{LOOPBACK}:{}\"", ports[i].client),
        )
        .replace(
            &format!("\"0.0.0.0:{MONITOR_PORT}\""),
            &format!("\"{LOOPBACK}:{}\"", ports[i].monitor),
        )
        .replace(
            &format!("\"0.0.0.0:{CLUSTER_PORT}\""),
            &format!("\"{LOOPBACK}:{}\"", ports[i].cluster),
        );
    for (j, p) in ports.iter().enumerate() {
        conf = conf.replace(
            &format!(
                "nats://{}-{j}.{headless}.{}.svc:{CLUSTER_PORT}",
                nats.name, nats.namespace
            ),
            &format!("nats://{LOOPBACK}:{}", p.cluster),
        );
    }
    let conf: String = conf
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            let indent = &line[..line.len() - trimmed.len()];
            if trimmed.starts_with("pid_file:") {
                format!("{indent}pid_file: \"{}\"", dir.join("nats.pid").display())
            } else if trimmed.starts_with("store_dir:") {
                format!("{indent}store_dir: \"{}\"", dir.join("jetstream").display())
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    if conf.contains(".svc")
        || conf.contains("0.0.0.0")
        || conf.contains("\"/data")
        || conf.contains("/var/run")
    {
        return Err(FleetError::Localize(format!(
            "nats.conf has cluster addresses or paths this harness does not rewrite:\n{conf}"
        )));
    }
    Ok(conf + "\n")
}

/// Sends RESP commands after AUTH; returns the raw replies once `done` accepts them.
fn redis_query(
    port: u16,
    password: &str,
    command: &str,
    done: impl Fn(&str) -> bool,
) -> Option<String> {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(300))).ok()?;
    s.write_all(format!("AUTH {password}\r\n{command}\r\n").as_bytes())
        .ok()?;
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
        if done(&got) {
            return Some(got);
        }
    }
    None
}

fn http_ok(port: u16, path: &str) -> bool {
    crate::fleet::http_get(port, path).is_some_and(|(status, _)| status == 200)
}

/// Running backend processes; stopped (SIGTERM, then SIGKILL) on drop.
#[derive(Debug, Default)]
pub struct Backends {
    pub procs: Vec<Proc>,
}

impl Backends {
    /// Starts every managed backend of `plan` on `ports`, files under `root`, and waits until each
    /// is usable: Redis answers an authenticated PING, a Redis Cluster says `cluster_state:ok`
    /// on every node, NATS reports healthy.
    pub fn start(plan: &Plan, ports: &BackendPorts, root: &Path, how: Spawn) -> Result<Backends> {
        let mut backends = Backends::default();
        for (r, pods) in plan.redis.iter().zip(&ports.redis) {
            backends.start_redis(r, pods, root, how)?;
        }
        if let Some(n) = &plan.nats {
            backends.start_nats(n, &ports.nats, root, how)?;
        }
        Ok(backends)
    }

    fn start_redis(
        &mut self,
        r: &ManagedRedis,
        pods: &[RedisPorts],
        root: &Path,
        how: Spawn,
    ) -> Result<()> {
        let bin = require("redis-server", "redis-server")?;
        let cli = match r.mode {
            RedisMode::Cluster => Some(require("redis-cli", "redis-tools")?),
            RedisMode::Standalone => None,
        };
        let auth = root.join(&r.name).join("auth.conf");
        std::fs::create_dir_all(root.join(&r.name))?;
        std::fs::write(&auth, &r.auth_conf)?;
        for (i, p) in pods.iter().enumerate() {
            let pod = match r.mode {
                RedisMode::Standalone => r.name.clone(),
                RedisMode::Cluster => format!("{}-{i}", r.name),
            };
            let dir = root.join(&r.name).join(&pod);
            std::fs::create_dir_all(&dir)?;
            let conf_path = dir.join("redis.conf");
            std::fs::write(
                &conf_path,
                local_redis_conf(&r.conf, *p, r.mode, &dir, &auth)?,
            )?;
            let mut cmd = Command::new(&bin);
            cmd.arg(&conf_path).current_dir(&dir);
            let mut proc = Proc::spawn(&pod, cmd, how)?;
            let port = p.client;
            wait_ready(&mut proc, READY_TIMEOUT, || {
                redis_query(port, &r.password, "PING", |s| s.contains("+PONG")).is_some()
            })?;
            self.procs.push(proc);
        }
        if let Some(cli) = cli {
            // The operator forms the cluster through the `redis` crate; here redis-cli does the same
            // (slots spread over the masters, replicas attached).
            let mut cmd = Command::new(cli);
            cmd.env("REDISCLI_AUTH", &r.password)
                .args(["--cluster", "create"])
                .args(pods.iter().map(|p| format!("{LOOPBACK}:{}", p.client)))
                .args([
                    "--cluster-replicas",
                    &r.replicas_per_master.to_string(),
                    "--cluster-yes",
                ]);
            let out = cmd.output().map_err(|source| FleetError::Spawn {
                what: "redis-cli --cluster create".into(),
                source,
            })?;
            if !out.status.success() {
                return Err(FleetError::Command {
                    what: format!("redis-cli --cluster create for {}", r.name),
                    detail: String::from_utf8_lossy(&out.stdout).into_owned()
                        + &String::from_utf8_lossy(&out.stderr),
                });
            }
            let first = self.procs.len() - pods.len();
            for (p, proc) in pods.iter().zip(&mut self.procs[first..]) {
                wait_ready(proc, READY_TIMEOUT, || {
                    redis_query(p.client, &r.password, "CLUSTER INFO", |s| {
                        s.contains("cluster_state:")
                    })
                    .is_some_and(|s| s.contains("cluster_state:ok"))
                })?;
            }
        }
        Ok(())
    }

    fn start_nats(
        &mut self,
        n: &ManagedNats,
        ports: &[NatsPorts],
        root: &Path,
        how: Spawn,
    ) -> Result<()> {
        let bin = require("nats-server", "nats-server")?;
        let first = self.procs.len();
        for i in 0..n.replicas {
            let pod = format!("{}-{i}", n.name);
            let dir = root.join(&n.name).join(&pod);
            std::fs::create_dir_all(&dir)?;
            let conf_path = dir.join("nats.conf");
            std::fs::write(&conf_path, local_nats_conf(n, ports, i, &dir)?)?;
            let mut cmd = Command::new(&bin);
            // The pod's environment: its name and the token Secret.
            cmd.args(["--config"])
                .arg(&conf_path)
                .env("SERVER_NAME", &pod)
                .env("NATS_TOKEN", &n.token);
            self.procs.push(Proc::spawn(&pod, cmd, how)?);
        }
        // Started together (a JetStream cluster needs its quorum), then waited for together.
        for (p, proc) in ports.iter().zip(&mut self.procs[first..]) {
            wait_ready(proc, READY_TIMEOUT, || http_ok(p.monitor, "/healthz"))?;
        }
        Ok(())
    }

    pub fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(Proc::pid).collect()
    }

    pub fn stop(&mut self) {
        stop_all(&mut self.procs, Duration::from_secs(10));
        self.procs.clear();
    }
}

impl Drop for Backends {
    fn drop(&mut self) {
        self.stop();
    }
}
