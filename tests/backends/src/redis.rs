//! `redis-server` standalone and in cluster mode.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::process::{BackendError, Guarded, free_port, require, resp_command, wait_until};
use crate::tls::{TestCa, path_str};

/// Whether `redis-server --tls-auth-clients` asks clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `no`: server-side TLS only.
    No,
    /// `optional`: a client certificate is checked when one is sent.
    Optional,
    /// `yes`: mutual TLS required.
    Yes,
}

impl ClientAuth {
    fn as_arg(self) -> &'static str {
        match self {
            ClientAuth::No => "no",
            ClientAuth::Optional => "optional",
            ClientAuth::Yes => "yes",
        }
    }
}

/// How to start a server: plain by default; TLS-only (`--port 0 --tls-port P`) with `tls`;
/// `requirepass` (also `masterauth`) with `password`; an ACL user with every permission with
/// `user` (the default user then needs `password`, or stays open without it).
#[derive(Debug, Clone, Default)]
pub struct RedisSetup {
    pub tls: Option<(Arc<TestCa>, ClientAuth)>,
    pub password: Option<String>,
    pub user: Option<(String, String)>,
    /// Cluster nodes: `cluster-require-full-coverage no`, so a lost master without replica
    /// stops only its own slots (Redis' default stops the whole cluster).
    pub partial_coverage: bool,
    /// `appendonly yes`, as the operator's pods on a volume: every acknowledged write survives
    /// a kill and [`RedisServer::restart`].
    pub persistent: bool,
}

impl RedisSetup {
    pub fn tls(ca: &Arc<TestCa>, auth: ClientAuth) -> RedisSetup {
        RedisSetup {
            tls: Some((ca.clone(), auth)),
            ..RedisSetup::default()
        }
    }
}

/// One `redis-server` on a free loopback port, no persistence unless `RedisSetup::persistent`.
#[derive(Debug)]
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    process: Guarded,
    cluster_mode: bool,
    setup: RedisSetup,
}

impl RedisServer {
    pub fn start() -> Result<RedisServer, BackendError> {
        Self::start_on(free_port(), false, RedisSetup::default())
    }

    /// A standalone server with TLS and/or credentials.
    pub fn start_with(setup: RedisSetup) -> Result<RedisServer, BackendError> {
        Self::start_on(free_port(), false, setup)
    }

    /// A lone `redis-server --cluster-enabled yes` that has met nobody and owns no slot, for
    /// tests of code that forms the cluster itself (no `redis-cli --cluster create`). With a
    /// password, it is both `requirepass` and `masterauth`, as in the operator's `auth.conf`.
    pub fn start_cluster_node(password: Option<&str>) -> Result<RedisServer, BackendError> {
        Self::start_cluster_node_on(free_cluster_port(), password)
    }

    /// [`RedisServer::start_cluster_node`] on a port chosen earlier (e.g. with [`free_port`]),
    /// for tests that must hand out the address before the password is known.
    pub fn start_cluster_node_on(
        port: u16,
        password: Option<&str>,
    ) -> Result<RedisServer, BackendError> {
        let setup = RedisSetup {
            password: password.map(str::to_string),
            ..RedisSetup::default()
        };
        Self::start_on(port, true, setup)
    }

    /// A lone cluster node (as [`RedisServer::start_cluster_node`]) with any setup, e.g.
    /// `persistent`.
    pub fn start_cluster_node_with(setup: RedisSetup) -> Result<RedisServer, BackendError> {
        Self::start_on(free_cluster_port(), true, setup)
    }

    fn start_on(
        port: u16,
        cluster_mode: bool,
        setup: RedisSetup,
    ) -> Result<RedisServer, BackendError> {
        let dir = tempfile::Builder::new()
            .prefix("sockudo-redis-")
            .tempdir()?;
        let process = spawn(&dir, port, cluster_mode, &setup)?;
        Ok(RedisServer {
            port,
            dir,
            process,
            cluster_mode,
            setup,
        })
    }

    /// `redis://127.0.0.1:P` (`rediss://` with TLS), without credentials.
    pub fn url(&self) -> String {
        let scheme = if self.setup.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
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
        self.process = spawn(&self.dir, self.port, self.cluster_mode, &self.setup)?;
        Ok(())
    }

    /// Start again on another port (e.g. from [`free_cluster_port`]), keeping the directory:
    /// a pod back with a new address and its volume. A cluster node keeps its `nodes.conf`,
    /// so it still has its id and its peers at their old addresses.
    pub fn restart_on(&mut self, port: u16) -> Result<(), BackendError> {
        self.process.kill();
        self.process = spawn(&self.dir, port, self.cluster_mode, &self.setup)?;
        self.port = port;
        Ok(())
    }

    /// Runs `redis-cli` against this server (with its TLS and credentials) and returns stdout.
    pub fn cli(&self, args: &[&str]) -> Result<String, BackendError> {
        cli(self.port, &self.setup, args)
    }
}

/// A free port whose cluster bus port (port + 10000) is a valid port and free too: an ephemeral
/// port can be above 55535, or its bus port taken, and the node then aborts at start.
pub fn free_cluster_port() -> u16 {
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
    setup: &RedisSetup,
) -> Result<Guarded, BackendError> {
    let bin = require("redis-server", "redis-server")?;
    let mut cmd = Command::new(bin);
    cmd.current_dir(dir.path())
        .args(["--bind", "127.0.0.1"])
        .args(["--save", "", "--protected-mode", "no"])
        .args(["--appendonly", if setup.persistent { "yes" } else { "no" }])
        .args(["--dir", &dir.path().display().to_string()]);
    match &setup.tls {
        None => {
            cmd.args(["--port", &port.to_string()]);
        }
        Some((ca, auth)) => {
            cmd.args(["--port", "0", "--tls-port", &port.to_string()])
                .args(["--tls-cert-file", &path_str(&ca.cert_file)])
                .args(["--tls-key-file", &path_str(&ca.key_file)])
                .args(["--tls-ca-cert-file", &path_str(&ca.ca_file)])
                .args(["--tls-auth-clients", auth.as_arg()]);
            if cluster_mode {
                cmd.args(["--tls-cluster", "yes", "--tls-replication", "yes"]);
            }
        }
    }
    if cluster_mode {
        cmd.args([
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
        ])
        .args(["--cluster-node-timeout", "2000"]);
        if setup.partial_coverage {
            cmd.args(["--cluster-require-full-coverage", "no"]);
        }
    }
    if let Some(p) = &setup.password {
        cmd.args(["--requirepass", p, "--masterauth", p]);
    }
    if let Some((u, p)) = &setup.user {
        // One argument per ACL rule: redis-server joins them into the `user` directive.
        cmd.args(["--user", u, "on", &format!(">{p}"), "~*", "&*", "+@all"]);
        cmd.args(["--masteruser", u, "--masterauth", p]);
    }
    let log = log_path(dir);
    let process = Guarded::spawn(cmd, &format!("redis-server on port {port}"), &log)?;
    let plain = setup.tls.is_none();
    wait_until(
        &format!("redis-server on port {port}"),
        Duration::from_secs(10),
        &log,
        // With a password the server answers NOAUTH: up all the same. A TLS port does not
        // answer plain RESP; its log says when it listens.
        || {
            if plain {
                resp_command(port, "PING")
                    .is_some_and(|r| r.starts_with("+PONG") || r.starts_with("-NOAUTH"))
            } else {
                std::fs::read_to_string(&log)
                    .is_ok_and(|l| l.contains("Ready to accept connections"))
            }
        },
    )?;
    Ok(process)
}

fn cli(port: u16, setup: &RedisSetup, args: &[&str]) -> Result<String, BackendError> {
    let bin = require("redis-cli", "redis-tools")?;
    let mut cmd = Command::new(bin);
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()]);
    if let Some((ca, _)) = &setup.tls {
        cmd.args(["--tls", "--cacert", &path_str(&ca.ca_file)])
            .args(["--cert", &path_str(&ca.client_cert_file)])
            .args(["--key", &path_str(&ca.client_key_file)]);
    }
    match (&setup.user, &setup.password) {
        (Some((u, p)), _) => {
            cmd.args(["--user", u, "--pass", p, "--no-auth-warning"]);
        }
        (None, Some(p)) => {
            cmd.args(["-a", p, "--no-auth-warning"]);
        }
        (None, None) => {}
    }
    let out = cmd
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
        Self::start_with(masters, replicas_per_master, RedisSetup::default())
    }

    /// A cluster whose every node (and cluster bus) uses `setup`'s TLS and credentials.
    pub fn start_with(
        masters: usize,
        replicas_per_master: usize,
        setup: RedisSetup,
    ) -> Result<RedisCluster, BackendError> {
        let total = masters * (1 + replicas_per_master);
        let nodes = (0..total)
            .map(|_| RedisServer::start_on(free_cluster_port(), true, setup.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
        args.extend(nodes.iter().map(RedisServer::address));
        args.extend([
            "--cluster-replicas".into(),
            replicas_per_master.to_string(),
            "--cluster-yes".into(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        nodes[0].cli(&args)?;
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
        let out = self.nodes[0].cli(&[
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
        ])?;
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

    /// Polls until the lone node serves its slots (a restarted master waits a moment).
    fn wait_serving(n: &RedisServer) {
        for _ in 0..100 {
            let info = n.cli(&["cluster", "info"]).unwrap();
            if info.contains("cluster_state:ok") {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("node {} never reported cluster_state:ok", n.port);
    }

    #[test]
    fn a_persistent_cluster_node_moves_to_another_port_with_its_data() {
        let setup = RedisSetup {
            persistent: true,
            ..RedisSetup::default()
        };
        let mut n = RedisServer::start_cluster_node_with(setup).unwrap();
        let id = n.cli(&["cluster", "myid"]).unwrap();
        n.cli(&["cluster", "addslotsrange", "0", "16383"]).unwrap();
        wait_serving(&n);
        assert_eq!(n.cli(&["set", "k", "v"]).unwrap().trim(), "OK");
        let old = n.port;
        n.kill();
        let port = std::iter::repeat_with(free_cluster_port)
            .find(|&p| p != old)
            .unwrap();
        n.restart_on(port).unwrap();
        assert_eq!(n.port, port);
        assert_eq!(n.cli(&["cluster", "myid"]).unwrap(), id);
        wait_serving(&n);
        assert_eq!(n.cli(&["get", "k"]).unwrap().trim(), "v");
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

    #[test]
    fn tls_only_server_with_an_acl_user() {
        let ca = Arc::new(TestCa::generate("redis-test-ca").unwrap());
        let setup = RedisSetup {
            user: Some(("app".into(), "pw".into())),
            password: Some("admin".into()),
            ..RedisSetup::tls(&ca, ClientAuth::Optional)
        };
        let r = RedisServer::start_with(setup).unwrap();
        assert!(r.url().starts_with("rediss://"));
        assert_eq!(r.cli(&["PING"]).unwrap().trim(), "PONG");
        assert!(
            resp_command(r.port, "PING").is_none_or(|reply| !reply.starts_with("+PONG")),
            "the port speaks TLS only"
        );
    }

    #[test]
    fn tls_cluster_forms() {
        let ca = Arc::new(TestCa::generate("redis-cluster-ca").unwrap());
        let c = RedisCluster::start_with(3, 0, RedisSetup::tls(&ca, ClientAuth::No)).unwrap();
        let info = c.nodes[1].cli(&["cluster", "info"]).unwrap();
        assert!(info.contains("cluster_slots_assigned:16384"), "{info}");
        assert!(c.urls()[0].starts_with("rediss://"));
    }

    #[test]
    fn password_cluster_with_an_acl_user_forms() {
        let setup = RedisSetup {
            password: Some("default-pw".into()),
            user: Some(("app".into(), "app-pw".into())),
            ..RedisSetup::default()
        };
        let c = RedisCluster::start_with(3, 0, setup).unwrap();
        let info = c.nodes[2].cli(&["cluster", "info"]).unwrap();
        assert!(info.contains("cluster_slots_assigned:16384"), "{info}");
        for n in &c.nodes {
            assert!(
                resp_command(n.port, "PING").is_some_and(|r| r.starts_with("-NOAUTH")),
                "node {} requires a password",
                n.port
            );
        }
    }
}
