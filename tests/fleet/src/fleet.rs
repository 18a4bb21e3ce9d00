//! A whole fleet on this machine: backends, then `replicas` sockudo nodes, each with the operator's
//! config pointed at local processes. Stopped in reverse order (nodes drain first) on
//! [`Fleet::stop`] or drop.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use sockudo_config::{CacheDriver, RateLimiterDriver};

use crate::backends::{BackendPorts, Backends};
use crate::error::{FleetError, Result};
use crate::localize::{LOOPBACK, NodePorts, localize};
use crate::manifest::Manifest;
use crate::plan::{AppInfo, Plan};
use crate::ports::Ports;
use crate::process::{Proc, Spawn, stop_all, wait_ready};

const NODE_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How to run a fleet.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The `sockudo` binary; default: `SOCKUDO_BIN`, then next to this executable, then PATH.
    pub sockudo: Option<PathBuf>,
    /// First port to hand out (nodes get consecutive ports from here); default: ephemeral ports.
    pub base_port: Option<u16>,
    /// Print every process's output with a `[name]` prefix.
    pub echo_logs: bool,
    /// Override the manifest's `shutdown_grace_period` (seconds), e.g. 0 in tests.
    pub shutdown_grace: Option<u64>,
    /// See [`Spawn::die_with_parent`].
    pub die_with_parent: bool,
}

/// One sockudo node.
#[derive(Debug)]
pub struct Node {
    /// `NODE_ID`, like the pod name: `NAME-0`, `NAME-1`...
    pub name: String,
    pub port: u16,
    pub metrics_port: u16,
    pub config_path: PathBuf,
    proc: Option<Proc>,
}

impl Node {
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// Last lines of its output.
    pub fn output(&self) -> String {
        self.proc.as_ref().map(Proc::output).unwrap_or_default()
    }
}

/// A running fleet.
#[derive(Debug)]
pub struct Fleet {
    plan: Plan,
    nodes: Vec<Node>,
    backends: Backends,
    grace: u64,
    // Last: removed after every process is gone.
    dir: tempfile::TempDir,
}

/// `GET http://127.0.0.1:port{path}` with HTTP/1.0: status and body, None when unreachable.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {LOOPBACK}\r\n\r\n").as_bytes())
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// Where the sockudo binary is, or an error that says how to build it.
pub fn find_sockudo(explicit: Option<&Path>) -> Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    candidates.extend(explicit.map(Path::to_path_buf));
    candidates.extend(std::env::var_os("SOCKUDO_BIN").map(PathBuf::from));
    if explicit.is_none() {
        // `target/debug/sockudo-fleet` or `target/debug/deps/<test>`: the server sits in target/debug.
        if let Ok(exe) = std::env::current_exe() {
            for dir in exe.ancestors().skip(1).take(2) {
                candidates.push(dir.join("sockudo"));
            }
        }
        candidates.extend(std::env::var_os("PATH").into_iter().flat_map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("sockudo"))
                .collect::<Vec<_>>()
        }));
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| FleetError::MissingServer {
            looked: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// A `sockudo` command with none of the environment overrides the server reads, so a stray
/// `PORT` or `REDIS_URL` in the user's shell cannot change what the fleet runs.
fn sockudo_command(bin: &Path) -> Command {
    let mut cmd = Command::new(bin);
    for var in sockudo_config::env::ENV_VARS {
        cmd.env_remove(var);
    }
    cmd
}

/// `sockudo check-config`: the server's own verdict on the rendered config, before anything starts.
pub fn check_config(bin: &Path, config: &Path) -> Result<()> {
    let out = sockudo_command(bin)
        .arg("check-config")
        .arg(config)
        .output()
        .map_err(|source| FleetError::Spawn {
            what: format!("{} check-config", bin.display()),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    let message =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    Err(FleetError::from_server_message(&message))
}

fn write_private(path: &Path, content: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(content)?;
    Ok(())
}

/// Everything written before a process starts: configs, Secret files, chosen ports.
struct Prepared {
    plan: Plan,
    bin: PathBuf,
    nodes: Vec<Node>,
    backend_ports: BackendPorts,
    dir: tempfile::TempDir,
}

impl Prepared {
    fn new(manifest: &Manifest, options: &Options) -> Result<Prepared> {
        let plan = Plan::of(manifest)?;
        let bin = find_sockudo(options.sockudo.as_deref())?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("sockudo-fleet-{}-", plan.name))
            .tempdir()?;
        let root = dir.path();

        // Every port first: node configs name the backends' ports.
        let mut ports = Ports::new(options.base_port);
        let node_ports = (0..plan.replicas)
            .map(|_| ports.take())
            .collect::<Result<Vec<_>>>()?;
        let metrics_ports = (0..plan.replicas)
            .map(|_| ports.take())
            .collect::<Result<Vec<_>>>()?;
        let backend_ports = BackendPorts::allocate(&plan, &mut ports)?;
        let local = backend_ports.local_addrs();

        // The pod's Secret volumes, as files under the fleet's directory.
        for volume in &plan.secret_files {
            for (file, content) in &volume.files {
                let path = root.join(volume.dir.trim_start_matches('/')).join(file);
                write_private(&path, content)?;
            }
        }
        let mut nodes = Vec::new();
        for (i, (&port, &metrics_port)) in node_ports.iter().zip(&metrics_ports).enumerate() {
            let ports = NodePorts { port, metrics_port };
            let config = localize(&plan, &local, root, ports, options.shutdown_grace)?;
            let name = format!("{}-{i}", plan.name);
            let config_path = root.join("nodes").join(&name).join("config.json");
            let json = serde_json::to_string_pretty(&config).expect("config serialises");
            write_private(&config_path, json.as_bytes())?;
            nodes.push(Node {
                name,
                port,
                metrics_port,
                config_path,
                proc: None,
            });
        }
        Ok(Prepared {
            plan,
            bin,
            nodes,
            backend_ports,
            dir,
        })
    }

    fn check(&self) -> Result<()> {
        match self.nodes.first() {
            Some(node) => check_config(&self.bin, &node.config_path),
            None => Ok(()),
        }
    }
}

impl Fleet {
    pub fn start(manifest: &Manifest) -> Result<Fleet> {
        Fleet::start_with(manifest, Options::default())
    }

    pub fn start_with(manifest: &Manifest, options: Options) -> Result<Fleet> {
        let p = Prepared::new(manifest, &options)?;
        // The server's own verdict first: a driver it lacks fails here, before any backend starts.
        p.check()?;
        let how = Spawn {
            echo: options.echo_logs,
            die_with_parent: options.die_with_parent,
        };
        let grace = options
            .shutdown_grace
            .unwrap_or(p.plan.config.shutdown_grace_period);
        let mut fleet = Fleet {
            backends: Backends::start(&p.plan, &p.backend_ports, p.dir.path(), how)?,
            plan: p.plan,
            nodes: p.nodes,
            grace,
            dir: p.dir,
        };
        for i in 0..fleet.nodes.len() {
            fleet.start_node(i, &p.bin, how)?;
        }
        Ok(fleet)
    }

    /// Renders and localizes like [`Fleet::start_with`] and asks `sockudo check-config`, starting
    /// nothing: for manifests whose backends live elsewhere.
    pub fn check(manifest: &Manifest, options: &Options) -> Result<()> {
        Prepared::new(manifest, options)?.check()
    }

    fn start_node(&mut self, i: usize, bin: &Path, how: Spawn) -> Result<()> {
        let node = &mut self.nodes[i];
        let mut cmd = sockudo_command(bin);
        cmd.arg("--config")
            .arg(&node.config_path)
            .env("NODE_ID", &node.name);
        cmd.envs(self.plan.env.iter().map(|(k, v)| (k, v)));
        let mut proc = Proc::spawn(&node.name, cmd, how)?;
        let port = node.port;
        let ready = wait_ready(&mut proc, NODE_READY_TIMEOUT, || {
            http_get(port, "/ready").is_some_and(|(s, _)| s == 200)
        });
        ready?;
        node.proc = Some(proc);
        Ok(())
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The fleet's temporary directory (configs, Secret files, backend data).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `ws://127.0.0.1:PORT` of node `i` (pusher-js: `wsHost` / `wsPort`).
    pub fn ws_url(&self, i: usize) -> String {
        format!("ws://{LOOPBACK}:{}", self.nodes[i].port)
    }

    /// The HTTP API of node `i`.
    pub fn http_url(&self, i: usize) -> String {
        format!("http://{LOOPBACK}:{}", self.nodes[i].port)
    }

    pub fn metrics_url(&self, i: usize) -> Option<String> {
        self.plan
            .config
            .metrics
            .enabled
            .then(|| format!("http://{LOOPBACK}:{}/metrics", self.nodes[i].metrics_port))
    }

    /// App `i` of the manifest with its key and secret.
    pub fn app(&self, i: usize) -> &AppInfo {
        &self.plan.apps[i]
    }

    /// SIGKILL node `i`: a crash, no drain.
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].proc.take() {
            p.kill();
        }
    }

    /// Every process the fleet started and still runs.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.nodes.iter().filter_map(Node::pid).collect();
        pids.extend(self.backends.pids());
        pids
    }

    /// The first node that exited on its own, with its status and last output.
    pub fn exited_node(&mut self) -> Option<(String, String, String)> {
        for node in &mut self.nodes {
            if let Some(p) = &mut node.proc
                && let Some(status) = p.exited()
            {
                let out = p.output_after_exit();
                node.proc = None;
                return Some((node.name.clone(), status.to_string(), out));
            }
        }
        None
    }

    /// Nodes drain (SIGTERM, their grace period, then SIGKILL), then backends stop.
    pub fn stop(&mut self) {
        let mut procs: Vec<Proc> = self
            .nodes
            .iter_mut()
            .filter_map(|n| n.proc.take())
            .collect();
        stop_all(&mut procs, Duration::from_secs(self.grace + 5));
        self.backends.stop();
    }

    /// Machine-readable endpoints and the behaviours the configuration promises; the conformance
    /// suite's JavaScript reads this.
    pub fn describe(&self) -> serde_json::Value {
        let c = &self.plan.config;
        let shared_cache = matches!(
            c.cache.driver,
            CacheDriver::Redis | CacheDriver::RedisCluster
        );
        let shared_limiter = c.rate_limiter.is_active()
            && matches!(
                c.rate_limiter.driver,
                RateLimiterDriver::Redis | RateLimiterDriver::RedisCluster
            );
        json!({
            "name": self.plan.name,
            "nodes": self.nodes.iter().enumerate().map(|(i, n)| json!({
                "name": n.name,
                "host": LOOPBACK,
                "port": n.port,
                "ws_url": self.ws_url(i),
                "http_url": self.http_url(i),
                "metrics_url": self.metrics_url(i),
            })).collect::<Vec<_>>(),
            "apps": self.plan.apps,
            "adapter": c.adapter.driver.as_str(),
            "cache": {
                "driver": c.cache.driver.as_str(),
                "enabled": c.cache.driver != CacheDriver::None,
                "shared": shared_cache,
            },
            "rate_limiter": {
                "active": c.rate_limiter.is_active(),
                "driver": c.rate_limiter.driver.as_str(),
                "shared": shared_limiter,
                "api": {
                    "max_requests": c.rate_limiter.api_rate_limit.max_requests,
                    "window_seconds": c.rate_limiter.api_rate_limit.window_seconds,
                },
                "trusted_proxy_hops": c.rate_limiter.trusted_proxy_hops,
            },
            "delta": {
                "enabled": c.delta_compression.enabled,
                "cluster_coordination": c.delta_compression.cluster_coordination,
            },
        })
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop();
    }
}
