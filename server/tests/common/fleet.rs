//! Multi-node tests: a real backend ([`Backend`]) and `sockudo` processes on it ([`Node`]), each
//! a separate OS process with its own config file and log, killed when its handle drops.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sockudo_config::{
    AdapterDriver, ClusterNode, NatsServers, RedisClusterConnection, RedisConnection, ServerConfig,
    TlsConfig,
};
use sockudo_test_backends::{NatsServer, RedisCluster, RedisServer};

use super::{Api, Client, KEY};

/// Bound for anything eventual (start-up, replication, recovery).
pub const EVENTUALLY: Duration = Duration::from_secs(20);

/// The adapter backend a fleet shares.
pub enum Backend {
    Redis(RedisServer),
    Cluster(RedisCluster),
    Nats(NatsServer),
}

impl Backend {
    /// Points `c`'s adapter (and so its delta coordination) at this backend.
    pub fn configure(&self, c: &mut ServerConfig) {
        self.configure_tls(c, None);
    }

    /// Same, connecting with TLS (`tls` is the `tls` block of the backend section).
    pub fn configure_tls(&self, c: &mut ServerConfig, tls: Option<TlsConfig>) {
        match self {
            Backend::Redis(r) => {
                c.adapter.driver = AdapterDriver::Redis;
                c.database.redis = Some(RedisConnection {
                    url: Some(r.url()),
                    tls,
                    ..RedisConnection::default()
                });
            }
            Backend::Cluster(rc) => {
                c.adapter.driver = AdapterDriver::RedisCluster;
                c.database.redis_cluster = Some(RedisClusterConnection {
                    nodes: rc.urls().into_iter().map(ClusterNode::Url).collect(),
                    tls,
                    ..RedisClusterConnection::default()
                });
            }
            Backend::Nats(n) => {
                c.adapter.driver = AdapterDriver::Nats;
                c.nats.servers = NatsServers::List(vec![n.url()]);
                c.nats.tls = tls;
            }
        }
    }

    /// SIGKILL every backend process (an outage).
    pub fn kill(&mut self) {
        match self {
            Backend::Redis(r) => r.kill(),
            Backend::Cluster(rc) => rc.nodes.iter_mut().for_each(RedisServer::kill),
            Backend::Nats(n) => n.kill(),
        }
    }

    /// Starts them again on the same ports (a cluster rejoins with its slots).
    pub fn restart(&mut self) {
        match self {
            Backend::Redis(r) => r.restart().unwrap(),
            Backend::Cluster(rc) => {
                for n in &mut rc.nodes {
                    n.restart().unwrap();
                }
                rc.wait_ok().unwrap();
            }
            Backend::Nats(n) => n.restart().unwrap(),
        }
    }
}

/// One `sockudo` process.
pub struct Node {
    pub name: String,
    pub port: u16,
    config: PathBuf,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Node {
    /// Writes `config` to a file and starts `sockudo --config` on it (log beside it).
    pub fn launch(name: &str, config: &ServerConfig) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, serde_json::to_string_pretty(config).unwrap()).unwrap();
        let mut node = Node {
            name: name.into(),
            port: config.port,
            config: path,
            child: None,
            _dir: dir,
        };
        node.start();
        node
    }

    /// (Re)starts the process with the same config (after [`Node::kill`]).
    pub fn start(&mut self) {
        let log = std::fs::File::create(self.config.with_extension("log")).unwrap();
        // SOCKUDO_BIN overrides the binary (several worktrees may share one target directory).
        let bin = std::env::var_os("SOCKUDO_BIN").map_or_else(
            || std::path::PathBuf::from(env!("CARGO_BIN_EXE_sockudo")),
            std::path::PathBuf::from,
        );
        let child = Command::new(bin)
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("sockudo starts");
        self.child = Some(child);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.config.with_extension("log")).unwrap_or_default()
    }

    pub fn signal(&mut self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    /// SIGKILL: no goodbye.
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    /// SIGTERM: graceful stop.
    pub fn terminate(&mut self) {
        self.signal(libc::SIGTERM);
    }

    /// Waits for the process to exit by itself.
    pub async fn wait_exit(&mut self) {
        let start = Instant::now();
        while let Some(c) = &mut self.child {
            if c.try_wait().unwrap().is_some() {
                self.child = None;
                return;
            }
            assert!(
                start.elapsed() < EVENTUALLY,
                "node {} did not stop",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn api(&self) -> Api {
        Api {
            base: format!("http://127.0.0.1:{}", self.port),
            http: reqwest::Client::new(),
            app: super::app(),
        }
    }

    /// `/ready`'s status code and body, if the node answers.
    async fn ready_answer(&self) -> Option<(u16, Value)> {
        let r = reqwest::get(format!("http://127.0.0.1:{}/ready", self.port))
            .await
            .ok()?;
        let status = r.status().as_u16();
        Some((status, serde_json::from_str(&r.text().await.ok()?).ok()?))
    }

    pub async fn ready_body(&self) -> Option<Value> {
        self.ready_answer().await.map(|(_, body)| body)
    }

    /// Waits until the node serves and its adapter backend is up.
    pub async fn wait_ready(&self) {
        self.wait_ready_for("adapter up", |b| b["backends"]["adapter"]["status"] == "ok")
            .await;
    }

    /// Waits until `/ready` answers 200 (what a Kubernetes readiness probe waits for) and
    /// returns that answer's body.
    pub async fn wait_probe_ready(&self) -> Value {
        self.wait_answer("answering 200", |status, body| {
            (status == 200).then_some(body)
        })
        .await
    }

    /// Waits until `/ready` answers with a body that satisfies `ok`.
    pub async fn wait_ready_for(&self, what: &str, ok: impl Fn(&Value) -> bool) {
        self.wait_answer(what, |_, body| ok(&body).then_some(()))
            .await
    }

    /// Polls `/ready` until `pick` takes an answer; fails after [`EVENTUALLY`].
    async fn wait_answer<T>(&self, what: &str, pick: impl Fn(u16, Value) -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(t) = self
                .ready_answer()
                .await
                .and_then(|(status, body)| pick(status, body))
            {
                return t;
            }
            assert!(
                start.elapsed() < EVENTUALLY,
                "node {} not ready ({what}); log:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn connect(&self) -> Client {
        self.connect_key(KEY).await
    }

    pub async fn connect_key(&self, key: &str) -> Client {
        let url = format!(
            "ws://127.0.0.1:{}/app/{key}?protocol=7&client=test&version=1",
            self.port
        );
        let mut ws = tokio_tungstenite::connect_async(url).await.expect("ws").0;
        let first = super::next_json(&mut ws).await;
        assert_eq!(first["event"], "pusher:connection_established");
        let data: Value = serde_json::from_str(first["data"].as_str().unwrap()).unwrap();
        Client {
            ws,
            socket_id: data["socket_id"].as_str().unwrap().to_string(),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}
