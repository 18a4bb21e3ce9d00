//! `redis-server` standalone and in cluster mode.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::process::{BackendError, Guarded, free_port, require, resp_command, wait_until};

/// One `redis-server` on a free loopback port, no persistence.
#[derive(Debug)]
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    process: Guarded,
    cluster_mode: bool,
    /// `requirepass` (and `masterauth`, so replicas can sync), when set.
    password: Option<String>,
}

impl RedisServer {
    pub fn start() -> Result<RedisServer, BackendError> {
        Self::start_on(free_port(), false, None)
    }

    /// A lone `redis-server --cluster-enabled yes` that has met nobody and owns no slot, for
    /// tests of code that forms the cluster itself (no `redis-cli --cluster create`). With a
    /// password, it is both `requirepass` and `masterauth`, as in the operator's `auth.conf`.
    pub fn start_cluster_node(password: Option<&str>) -> Result<RedisServer, BackendError> {
        Self::start_on(free_cluster_port(), true, password)
    }

    /// [`RedisServer::start_cluster_node`] on a port chosen earlier (e.g. with [`free_port`]),
    /// for tests that must hand out the address before the password is known.
    pub fn start_cluster_node_on(
        port: u16,
        password: Option<&str>,
    ) -> Result<RedisServer, BackendError> {
        Self::start_on(port, true, password)
    }

    fn start_on(
        port: u16,
        cluster_mode: bool,
        password: Option<&str>,
    ) -> Result<RedisServer, BackendError> {
        let dir = tempfile::Builder::new()
            .prefix("sockudo-redis-")
            .tempdir()?;
        let process = spawn(&dir, port, cluster_mode, password)?;
        Ok(RedisServer {
            port,
            dir,
            process,
            cluster_mode,
            password: password.map(str::to_string),
        })
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// SIGKILL the server (a backend outage).
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Start again on the same port, after [`RedisServer::kill`] (a backend coming back).
    /// A cluster node keeps its `nodes.conf`, so it rejoins with its slots.
    pub fn restart(&mut self) -> Result<(), BackendError> {
        self.process.kill();
        self.process = spawn(
            &self.dir,
            self.port,
            self.cluster_mode,
            self.password.as_deref(),
        )?;
        Ok(())
    }

    /// Runs `redis-cli` against this server and returns its stdout.
    pub fn cli(&self, args: &[&str]) -> Result<String, BackendError> {
        match &self.password {
            Some(p) => {
                let mut all = vec!["-a", p.as_str(), "--no-auth-warning"];
                all.extend_from_slice(args);
                cli(self.port, &all)
            }
            None => cli(self.port, args),
        }
    }
}

/// A free port whose cluster bus port (port + 10000) is a valid port and free too: an ephemeral
/// port can be above 55535, or its bus port taken, and the node then aborts at start.
fn free_cluster_port() -> u16 {
    const BUS_OFFSET: u16 = 10000;
    loop {
        let port = free_port();
        let Some(bus) = port.checked_add(BUS_OFFSET) else {
            continue;
        };
        if std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, bus)).is_ok() {
            return port;
        }
    }
}

fn log_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("redis.log")
}

fn spawn(
    dir: &tempfile::TempDir,
    port: u16,
    cluster_mode: bool,
    password: Option<&str>,
) -> Result<Guarded, BackendError> {
    let bin = require("redis-server", "redis-server")?;
    let mut cmd = Command::new(bin);
    cmd.current_dir(dir.path())
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
        .args(["--dir", &dir.path().display().to_string()]);
    if cluster_mode {
        cmd.args([
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
        ])
        .args(["--cluster-node-timeout", "2000"]);
    }
    if let Some(p) = password {
        cmd.args(["--requirepass", p, "--masterauth", p]);
    }
    let log = log_path(dir);
    let process = Guarded::spawn(cmd, &format!("redis-server on port {port}"), &log)?;
    wait_until(
        &format!("redis-server on port {port}"),
        Duration::from_secs(10),
        &log,
        // With a password the server answers NOAUTH: up all the same.
        || {
            resp_command(port, "PING")
                .is_some_and(|r| r.starts_with("+PONG") || r.starts_with("-NOAUTH"))
        },
    )?;
    Ok(process)
}

fn cli(port: u16, args: &[&str]) -> Result<String, BackendError> {
    let bin = require("redis-cli", "redis-tools")?;
    let out = Command::new(bin)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .map_err(|source| BackendError::Spawn {
            what: "redis-cli".into(),
            source,
        })?;
    if !out.status.success() {
        return Err(BackendError::Command {
            what: format!("redis-cli {}", args.join(" ")),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A Redis Cluster of `masters` masters (and `replicas_per_master` replicas each), formed with
/// `redis-cli --cluster create`, ready when every node reports `cluster_state:ok`.
#[derive(Debug)]
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start(masters: usize, replicas_per_master: usize) -> Result<RedisCluster, BackendError> {
        let total = masters * (1 + replicas_per_master);
        let nodes = (0..total)
            .map(|_| RedisServer::start_on(free_cluster_port(), true, None))
            .collect::<Result<Vec<_>, _>>()?;
        let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
        args.extend(nodes.iter().map(RedisServer::address));
        args.extend([
            "--cluster-replicas".into(),
            replicas_per_master.to_string(),
            "--cluster-yes".into(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(nodes[0].port, &args)?;
        let cluster = RedisCluster { nodes };
        cluster.wait_ok()?;
        Ok(cluster)
    }

    /// Seed-node URLs, the shape of `database.redis_cluster.nodes`.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Waits until every node says `cluster_state:ok` (after create, restarts or resharding).
    pub fn wait_ok(&self) -> Result<(), BackendError> {
        let log = log_path(&self.nodes[0].dir);
        for node in &self.nodes {
            wait_until(
                &format!("cluster node {}", node.port),
                Duration::from_secs(30),
                &log,
                || {
                    node.cli(&["cluster", "info"])
                        .is_ok_and(|info| info.contains("cluster_state:ok"))
                },
            )?;
        }
        Ok(())
    }

    /// `redis-cli --cluster reshard`: moves `slots` slots from the node owning slot 0's range to
    /// another master, live.
    pub fn reshard(
        &self,
        from: &RedisServer,
        to: &RedisServer,
        slots: u32,
    ) -> Result<String, BackendError> {
        let from_id = from.cli(&["cluster", "myid"])?.trim().to_string();
        let to_id = to.cli(&["cluster", "myid"])?.trim().to_string();
        let out = cli(
            self.nodes[0].port,
            &[
                "--cluster",
                "reshard",
                &self.nodes[0].address(),
                "--cluster-from",
                &from_id,
                "--cluster-to",
                &to_id,
                "--cluster-slots",
                &slots.to_string(),
                "--cluster-yes",
            ],
        )?;
        self.wait_ok()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standalone_starts_restarts_and_dies_with_its_handle() {
        let mut r = RedisServer::start().unwrap();
        assert_eq!(r.cli(&["PING"]).unwrap().trim(), "PONG");
        r.kill();
        assert!(resp_command(r.port, "PING").is_none());
        r.restart().unwrap();
        assert_eq!(r.cli(&["PING"]).unwrap().trim(), "PONG");
        let port = r.port;
        drop(r);
        assert!(resp_command(port, "PING").is_none());
    }

    #[test]
    fn three_master_cluster_covers_every_slot() {
        let c = RedisCluster::start(3, 0).unwrap();
        let info = c.nodes[0].cli(&["cluster", "info"]).unwrap();
        assert!(info.contains("cluster_slots_assigned:16384"), "{info}");
        assert!(info.contains("cluster_size:3"), "{info}");
    }

    #[test]
    fn a_cluster_node_alone_with_a_password() {
        let n = RedisServer::start_cluster_node(Some("s3cret")).unwrap();
        let info = n.cli(&["cluster", "info"]).unwrap();
        assert!(info.contains("cluster_known_nodes:1"), "{info}");
        assert!(
            resp_command(n.port, "PING").is_some_and(|r| r.starts_with("-NOAUTH")),
            "a password is required"
        );
    }
}
