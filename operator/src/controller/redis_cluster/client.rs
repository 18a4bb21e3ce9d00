//! Talking to the nodes: observing each one and carrying out an [`Action`].

use std::collections::BTreeMap;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};

use super::nodes::{NodeView, parse_nodes};
use super::plan::{Action, SlotMove};
use super::{ClusterError, Nodes, TIMEOUT};

/// Redis adds this to the client port for the cluster bus when no bus port is announced.
const BUS_PORT_OFFSET: u16 = 10000;
/// Keys per `MIGRATE`: few round trips per slot without one huge transfer.
const KEYS_PER_MIGRATE: usize = 100;
/// `MIGRATE`'s own timeout (idle time talking to the target), in milliseconds.
const MIGRATE_TIMEOUT_MS: u64 = 5000;
/// Replies to `MIGRATE` wait for the transfer, so they get longer than other commands.
const MIGRATE_REPLY_TIMEOUT: Duration = Duration::from_secs(15);

fn split_address(address: &str) -> Result<(String, u16), ClusterError> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| ClusterError::Address(address.to_string()))?;
    let port = port
        .parse()
        .map_err(|_| ClusterError::Address(address.to_string()))?;
    Ok((host.to_string(), port))
}

fn redis_err(address: &str) -> impl Fn(redis::RedisError) -> ClusterError + '_ {
    move |source| ClusterError::Redis {
        address: address.to_string(),
        source,
    }
}

async fn connect(
    address: &str,
    password: Option<&str>,
) -> Result<MultiplexedConnection, ClusterError> {
    let (host, port) = split_address(address)?;
    let mut settings = RedisConnectionInfo::default();
    if let Some(p) = password {
        settings = settings.set_password(p);
    }
    let info = ConnectionAddr::Tcp(host, port)
        .into_connection_info()
        .map_err(redis_err(address))?
        .set_redis_settings(settings);
    let client = redis::Client::open(info).map_err(redis_err(address))?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(MIGRATE_REPLY_TIMEOUT));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(redis_err(address))
}

/// Runs `cmd` and renders a status or bulk reply as text. Every command but `MIGRATE` answers
/// within [`TIMEOUT`] or counts as failed.
async fn command(
    conn: &mut MultiplexedConnection,
    address: &str,
    cmd: &redis::Cmd,
    timeout: Duration,
) -> Result<String, ClusterError> {
    let reply: redis::Value = tokio::time::timeout(timeout, cmd.query_async(conn))
        .await
        .map_err(|_| ClusterError::Timeout(address.to_string()))?
        .map_err(redis_err(address))?;
    Ok(match reply {
        redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        redis::Value::SimpleString(s) | redis::Value::VerbatimString { text: s, .. } => s,
        redis::Value::Okay => "OK".into(),
        other => format!("{other:?}"),
    })
}

fn cluster(args: &[&str]) -> redis::Cmd {
    let mut cmd = redis::cmd("CLUSTER");
    for a in args {
        cmd.arg(*a);
    }
    cmd
}

pub async fn observe(address: &str, password: Option<&str>) -> Result<NodeView, ClusterError> {
    let mut conn = connect(address, password).await?;
    let id = command(&mut conn, address, &cluster(&["MYID"]), TIMEOUT).await?;
    let nodes = command(&mut conn, address, &cluster(&["NODES"]), TIMEOUT).await?;
    let info = command(&mut conn, address, &cluster(&["INFO"]), TIMEOUT).await?;
    let nodes = parse_nodes(&nodes).map_err(|line| ClusterError::Parse {
        address: address.to_string(),
        line,
    })?;
    Ok(NodeView {
        id: id.trim().to_string(),
        nodes,
        state_ok: info.lines().any(|l| l.trim() == "cluster_state:ok"),
    })
}

/// CLUSTER MEET takes an IP in Redis 7.0, so a pod's DNS name is resolved here (MIGRATE gets the
/// same address).
async fn resolve(address: &str) -> Result<(String, u16), ClusterError> {
    let (_, port) = split_address(address)?;
    let resolved = tokio::net::lookup_host(address)
        .await
        .map_err(|source| ClusterError::Resolve {
            address: address.to_string(),
            source,
        })?
        .next()
        .ok_or_else(|| ClusterError::Address(address.to_string()))?;
    Ok((resolved.ip().to_string(), port))
}

/// One connection per pod for the duration of an action.
struct Pool<'a> {
    nodes: &'a Nodes,
    conns: BTreeMap<usize, MultiplexedConnection>,
}

impl<'a> Pool<'a> {
    fn new(nodes: &'a Nodes) -> Self {
        Pool {
            nodes,
            conns: BTreeMap::new(),
        }
    }

    async fn conn(&mut self, pod: usize) -> Result<&mut MultiplexedConnection, ClusterError> {
        if !self.conns.contains_key(&pod) {
            let address = &self.nodes.addresses[pod];
            let conn = connect(address, self.nodes.password.as_deref()).await?;
            self.conns.insert(pod, conn);
        }
        Ok(self.conns.get_mut(&pod).expect("inserted above"))
    }

    async fn run(&mut self, pod: usize, cmd: &redis::Cmd) -> Result<String, ClusterError> {
        self.run_within(pod, cmd, TIMEOUT).await
    }

    async fn run_within(
        &mut self,
        pod: usize,
        cmd: &redis::Cmd,
        timeout: Duration,
    ) -> Result<String, ClusterError> {
        let nodes = self.nodes;
        let conn = self.conn(pod).await?;
        command(conn, &nodes.addresses[pod], cmd, timeout).await
    }

    async fn keys_in_slot(&mut self, pod: usize, slot: u16) -> Result<Vec<Vec<u8>>, ClusterError> {
        let nodes = self.nodes;
        let address = nodes.addresses[pod].as_str();
        let conn = self.conn(pod).await?;
        let mut cmd = cluster(&["GETKEYSINSLOT"]);
        cmd.arg(slot).arg(KEYS_PER_MIGRATE);
        tokio::time::timeout(TIMEOUT, cmd.query_async(conn))
            .await
            .map_err(|_| ClusterError::Timeout(address.to_string()))?
            .map_err(redis_err(address))
    }

    /// One slot, every sub-step safe to repeat: IMPORTING, MIGRATING, the keys, then the new
    /// owner on the target first (it bumps its epoch so its claim wins), the source, the rest.
    async fn migrate(&mut self, mv: &SlotMove, masters: &[usize]) -> Result<(), ClusterError> {
        let slot = mv.slot.to_string();
        if mv.import {
            let cmd = cluster(&["SETSLOT", &slot, "IMPORTING", &mv.from_id]);
            self.run(mv.to, &cmd).await?;
        }
        if mv.migrate {
            let cmd = cluster(&["SETSLOT", &slot, "MIGRATING", &mv.to_id]);
            self.run(mv.from, &cmd).await?;
        }
        if mv.keys {
            let (ip, port) = resolve(&self.nodes.addresses[mv.to]).await?;
            loop {
                let keys = self.keys_in_slot(mv.from, mv.slot).await?;
                if keys.is_empty() {
                    break;
                }
                // REPLACE: a key copied by an interrupted MIGRATE is overwritten by the
                // source's, which stayed authoritative while the slot was migrating.
                let mut cmd = redis::cmd("MIGRATE");
                cmd.arg(&ip)
                    .arg(port)
                    .arg("")
                    .arg(0)
                    .arg(MIGRATE_TIMEOUT_MS)
                    .arg("REPLACE");
                if let Some(p) = &self.nodes.password {
                    cmd.arg("AUTH").arg(p);
                }
                cmd.arg("KEYS").arg(keys);
                self.run_within(mv.from, &cmd, MIGRATE_REPLY_TIMEOUT)
                    .await?;
            }
        }
        let owner = cluster(&["SETSLOT", &slot, "NODE", &mv.to_id]);
        self.run(mv.to, &owner).await?;
        let others = masters.iter().filter(|&&p| p != mv.to && p != mv.from);
        for &p in masters.iter().filter(|&&p| p == mv.from).chain(others) {
            match self.run(p, &owner).await {
                // The source's last slot: the target's claim can reach it by gossip first and
                // make it a replica of the target, whose table it now follows.
                Err(ClusterError::Redis { source, .. })
                    if source.to_string().contains("SETSLOT only with masters") => {}
                other => {
                    other?;
                }
            }
        }
        Ok(())
    }
}

pub async fn act(nodes: &Nodes, action: &Action) -> Result<(), ClusterError> {
    let mut pool = Pool::new(nodes);
    match action {
        Action::Meet { from, to } => {
            for &i in to {
                let (ip, port) = resolve(&nodes.addresses[i]).await?;
                let mut cmd = cluster(&["MEET", &ip]);
                cmd.arg(port).arg(port.saturating_add(BUS_PORT_OFFSET));
                pool.run(*from, &cmd).await?;
            }
        }
        Action::AddSlots { pod, ranges } => {
            let mut cmd = cluster(&["ADDSLOTSRANGE"]);
            for (a, b) in ranges {
                cmd.arg(a).arg(b);
            }
            pool.run(*pod, &cmd).await?;
        }
        Action::Replicate { pod, master_id, .. } => {
            pool.run(*pod, &cluster(&["REPLICATE", master_id])).await?;
        }
        Action::Migrate { moves, masters } => {
            for mv in moves {
                pool.migrate(mv, masters).await?;
            }
        }
        Action::Stabilize { pod, slots } => {
            for s in slots {
                let cmd = cluster(&["SETSLOT", &s.to_string(), "STABLE"]);
                pool.run(*pod, &cmd).await?;
            }
        }
        Action::Reset { pods } => {
            for &p in pods {
                pool.run(p, &cluster(&["RESET", "HARD"])).await?;
            }
        }
        Action::Promote { pod } => {
            pool.run(*pod, &cluster(&["RESET", "SOFT"])).await?;
        }
        Action::Forget { forget } => {
            for (p, ids) in forget {
                for id in ids {
                    pool.run(*p, &cluster(&["FORGET", id])).await?;
                }
            }
        }
        Action::Wait(_) | Action::None => {}
    }
    Ok(())
}
