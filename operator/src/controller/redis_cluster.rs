//! Bootstrap of a managed Redis Cluster, one step at a time.
//!
//! Each call to [`step`] observes every node (`CLUSTER MYID`, `CLUSTER NODES`, `CLUSTER INFO`),
//! decides the single next action toward the goal with the pure [`plan`], takes it, and reports a
//! [`RedisClusterStatus`]. Nothing is remembered between calls: the observed cluster is the only
//! state, so a run interrupted anywhere resumes from what the nodes say, and a slot that is
//! already assigned is never assigned again.

use std::collections::BTreeSet;
use std::time::Duration;

use redis::{AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};
use tracing::{debug, info};

use super::context::Config;
use crate::build::names;
use crate::build::redis::{REDIS_PORT, masters, replicas_per_master};
use crate::build::topology::Topology;
use crate::crd::{RedisClusterPhase, RedisClusterStatus, RedisMode, SockudoCluster};

/// Slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;
/// Redis adds this to the client port for the cluster bus when no bus port is announced.
const BUS_PORT_OFFSET: u16 = 10000;
/// A node that does not answer within this is treated as not ready (Pending), not waited for.
const TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("Redis node {address}: {source}")]
    Redis {
        address: String,
        source: redis::RedisError,
    },
    #[error("Redis node {0} did not answer within {TIMEOUT:?}")]
    Timeout(String),
    #[error("Redis node address {0} is not host:port")]
    Address(String),
    #[error("cannot resolve Redis node {address}: {source}")]
    Resolve {
        address: String,
        source: std::io::Error,
    },
    #[error("unexpected CLUSTER NODES line from {address}: {line}")]
    Parse { address: String, line: String },
}

/// What the cluster should become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Goal {
    /// Pods `0..masters` own the slots.
    pub masters: usize,
    /// Pods from `masters` on replicate masters round-robin.
    pub replicas_per_master: usize,
}

impl Goal {
    pub fn pods(&self) -> usize {
        self.masters * (1 + self.replicas_per_master)
    }

    /// The slot range master `k` gets: the slots split evenly, the remainder spread over the
    /// first masters.
    pub fn range(&self, k: usize) -> (u16, u16) {
        let m = self.masters as u32;
        let start = (k as u32 * u32::from(SLOTS)) / m;
        let end = ((k as u32 + 1) * u32::from(SLOTS)) / m - 1;
        (start as u16, end as u16)
    }

    /// The master pod a replica pod follows.
    pub fn master_of(&self, pod: usize) -> usize {
        (pod - self.masters) % self.masters
    }
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEntry {
    pub id: String,
    pub flags: BTreeSet<String>,
    /// The master's id when this is a replica.
    pub master_id: Option<String>,
    pub slots: Vec<(u16, u16)>,
}

impl NodeEntry {
    pub fn is_myself(&self) -> bool {
        self.flags.contains("myself")
    }
    pub fn is_replica(&self) -> bool {
        self.flags.contains("slave") || self.flags.contains("replica")
    }
    /// Known well enough to be a peer: not still handshaking, with an address, and not marked
    /// failed. A failed entry of a node we just reached is a stale address (pods restarted with
    /// new IPs): MEET tells the cluster where it is now.
    pub fn is_connected_peer(&self) -> bool {
        !["handshake", "noaddr", "fail"]
            .iter()
            .any(|f| self.flags.contains(*f))
    }
}

/// Parses `CLUSTER NODES`. Migrating/importing markers (`[slot->-id]`) are not slots and skipped.
pub fn parse_nodes(text: &str) -> Result<Vec<NodeEntry>, String> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 {
            return Err(line.to_string());
        }
        let mut slots = Vec::new();
        for s in &fields[8..] {
            if s.starts_with('[') {
                continue;
            }
            let range = match s.split_once('-') {
                Some((a, b)) => (a.parse(), b.parse()),
                None => (s.parse(), s.parse()),
            };
            match range {
                (Ok(a), Ok(b)) => slots.push((a, b)),
                _ => return Err(line.to_string()),
            }
        }
        out.push(NodeEntry {
            id: fields[0].to_string(),
            flags: fields[2].split(',').map(str::to_string).collect(),
            master_id: (fields[3] != "-").then(|| fields[3].to_string()),
            slots,
        });
    }
    Ok(out)
}

/// What one node said about itself and the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub id: String,
    /// Every node it knows, itself included.
    pub nodes: Vec<NodeEntry>,
    /// `cluster_state:ok`.
    pub state_ok: bool,
}

impl NodeView {
    pub fn myself(&self) -> Option<&NodeEntry> {
        self.nodes.iter().find(|n| n.is_myself())
    }
    pub fn knows(&self, id: &str) -> bool {
        self.nodes
            .iter()
            .any(|n| n.id == id && (n.is_myself() || n.is_connected_peer()))
    }
}

/// The single next action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `CLUSTER MEET` from pod `from` to each of the pods `to`.
    Meet { from: usize, to: Vec<usize> },
    /// `CLUSTER ADDSLOTSRANGE` on pod `pod`.
    AddSlots { pod: usize, ranges: Vec<(u16, u16)> },
    /// `CLUSTER REPLICATE master_id` on pod `pod`.
    Replicate {
        pod: usize,
        master_pod: usize,
        master_id: String,
    },
    /// Nothing to do but wait for gossip (a node not yet knowing another, the state not yet ok).
    Wait(String),
    /// Done.
    None,
}

impl Action {
    pub fn describe(&self) -> String {
        match self {
            Action::Meet { from, to } => format!("CLUSTER MEET from pod {from} to pods {to:?}"),
            Action::AddSlots { pod, ranges } => {
                let r: Vec<String> = ranges.iter().map(|(a, b)| format!("{a}-{b}")).collect();
                format!("CLUSTER ADDSLOTSRANGE {} on pod {pod}", r.join(" "))
            }
            Action::Replicate {
                pod, master_pod, ..
            } => format!("CLUSTER REPLICATE pod {master_pod} on pod {pod}"),
            Action::Wait(why) => format!("waiting: {why}"),
            Action::None => "cluster formed".to_string(),
        }
    }
}

/// Slots each node owns by its own account (its `myself` line), so a stale view of another
/// node never makes us think a slot is free.
fn owned_slots(views: &[NodeView]) -> BTreeSet<u16> {
    views
        .iter()
        .filter_map(NodeView::myself)
        .flat_map(|m| m.slots.iter().flat_map(|&(a, b)| a..=b))
        .collect()
}

/// Unowned sub-ranges of `start..=end`.
fn free_ranges(owned: &BTreeSet<u16>, start: u16, end: u16) -> Vec<(u16, u16)> {
    let mut out: Vec<(u16, u16)> = Vec::new();
    for s in start..=end {
        if owned.contains(&s) {
            continue;
        }
        match out.last_mut() {
            Some((_, b)) if *b + 1 == s => *b = s,
            _ => out.push((s, s)),
        }
    }
    out
}

/// Decides the next action from every pod's view (`views[i]` is pod `i`).
pub fn plan(views: &[NodeView], goal: Goal) -> Action {
    let ids: Vec<&str> = views.iter().map(|v| v.id.as_str()).collect();
    // 1. Every node must know every other; MEET is sent from the first node missing someone,
    // straight to the missing nodes (after all pods restart with new IPs this also repairs).
    for (from, v) in views.iter().enumerate() {
        let to: Vec<usize> = (0..views.len())
            .filter(|&i| i != from && !v.knows(ids[i]))
            .collect();
        if !to.is_empty() {
            // A node still handshaking another is in progress, not unknown: wait for it.
            let handshaking = to.iter().all(|&i| {
                v.nodes
                    .iter()
                    .any(|n| n.id == ids[i] && n.flags.contains("handshake"))
            });
            if handshaking {
                return Action::Wait(format!("pod {from} is handshaking pods {to:?}"));
            }
            return Action::Meet { from, to };
        }
    }
    // 2. Unassigned slots go to their master pod, if that pod is still a master.
    let owned = owned_slots(views);
    for (k, view) in views.iter().enumerate().take(goal.masters) {
        if view.myself().is_some_and(NodeEntry::is_replica) {
            continue;
        }
        let (start, end) = goal.range(k);
        let ranges = free_ranges(&owned, start, end);
        if !ranges.is_empty() {
            return Action::AddSlots { pod: k, ranges };
        }
    }
    // 3. An empty master among the replica pods follows its master pod (or whoever took over
    // that master's slots after a failover).
    for pod in goal.masters..views.len() {
        let Some(me) = views[pod].myself() else {
            continue;
        };
        if me.is_replica() || !me.slots.is_empty() {
            continue;
        }
        let master_pod = goal.master_of(pod);
        let target = match views[master_pod].myself() {
            Some(m) if m.is_replica() => m.master_id.clone(),
            Some(m) => Some(m.id.clone()),
            None => None,
        };
        let Some(master_id) = target else { continue };
        if !views[pod].knows(&master_id) {
            return Action::Wait(format!("pod {pod} does not know its master yet"));
        }
        return Action::Replicate {
            pod,
            master_pod,
            master_id,
        };
    }
    if owned.len() < usize::from(SLOTS) {
        return Action::Wait(format!("{} slots assigned", owned.len()));
    }
    // Ready means every node agrees with every other about roles and slots, not just that
    // each node says ok: clients discover the topology from any node.
    for (j, v) in views.iter().enumerate() {
        for (i, other) in views.iter().enumerate() {
            let (Some(truth), Some(seen)) =
                (other.myself(), v.nodes.iter().find(|n| n.id == other.id))
            else {
                continue;
            };
            if seen.is_replica() != truth.is_replica()
                || seen.master_id != truth.master_id
                || seen.slots != truth.slots
            {
                return Action::Wait(format!("pod {j} does not yet see pod {i} as it is"));
            }
        }
    }
    if let Some(i) = views.iter().position(|v| !v.state_ok) {
        return Action::Wait(format!("pod {i} does not report cluster_state:ok"));
    }
    Action::None
}

/// The status the views and the chosen action amount to.
pub fn status(views: &[NodeView], action: &Action) -> RedisClusterStatus {
    let owned = owned_slots(views);
    let masters = views
        .iter()
        .filter_map(NodeView::myself)
        .filter(|m| !m.is_replica() && !m.slots.is_empty())
        .count();
    let replicas = views
        .iter()
        .filter_map(NodeView::myself)
        .filter(|m| m.is_replica())
        .count();
    let phase = if *action == Action::None {
        RedisClusterPhase::Ready
    } else {
        RedisClusterPhase::Bootstrapping
    };
    RedisClusterStatus {
        phase,
        masters: masters as i32,
        replicas: replicas as i32,
        slots_assigned: owned.len() as i32,
        last_step: Some(action.describe()),
    }
}

/// How to reach the nodes: `host:port` per pod index, and the password (`requirepass`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nodes {
    pub addresses: Vec<String>,
    pub password: Option<String>,
}

/// The managed Redis Cluster of a SockudoCluster, as the operator bootstraps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The StatefulSet (and headless Service) name.
    pub name: String,
    pub goal: Goal,
    pub nodes: Nodes,
    /// Every address is overridden in the [`Config`] (tests): no need to wait for the pods.
    pub overridden: bool,
}

/// What to bootstrap, if the SockudoCluster uses a managed Redis Cluster. Pods are reached by
/// their stable DNS names through the headless Service (or the test override); the password is
/// the generated one of the auth Secret (`requirepass`/`masterauth` in its `auth.conf`).
pub fn target(
    cluster: &SockudoCluster,
    generated: &std::collections::BTreeMap<String, String>,
    config: &Config,
) -> Option<Target> {
    let topology = Topology::of(&cluster.spec);
    let instance = topology
        .used_redis()
        .into_iter()
        .find(|i| i.is_managed() && i.mode() == RedisMode::Cluster)?;
    let managed = instance.spec.managed.clone().unwrap_or_default();
    let goal = Goal {
        masters: usize::try_from(masters(&managed)).ok()?.max(1),
        replicas_per_master: usize::try_from(replicas_per_master(&managed)).unwrap_or(0),
    };
    let name = instance.managed_name(cluster);
    let ns = names::namespace(cluster);
    let in_cluster: Vec<String> = (0..goal.pods())
        .map(|i| format!("{name}-{i}.{name}.{ns}.svc:{REDIS_PORT}"))
        .collect();
    let overridden = in_cluster
        .iter()
        .all(|a| config.backend_addresses.contains_key(a));
    Some(Target {
        nodes: Nodes {
            addresses: in_cluster
                .iter()
                .map(|a| config.backend_address(a))
                .collect(),
            password: generated.get(&instance.auth_secret(cluster)).cloned(),
        },
        name,
        goal,
        overridden,
    })
}

fn split_address(address: &str) -> Result<(String, u16), BootstrapError> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| BootstrapError::Address(address.to_string()))?;
    let port = port
        .parse()
        .map_err(|_| BootstrapError::Address(address.to_string()))?;
    Ok((host.to_string(), port))
}

async fn connect(
    address: &str,
    password: Option<&str>,
) -> Result<redis::aio::MultiplexedConnection, BootstrapError> {
    let redis_err = |source| BootstrapError::Redis {
        address: address.to_string(),
        source,
    };
    let (host, port) = split_address(address)?;
    let mut settings = RedisConnectionInfo::default();
    if let Some(p) = password {
        settings = settings.set_password(p);
    }
    let info = ConnectionAddr::Tcp(host, port)
        .into_connection_info()
        .map_err(redis_err)?
        .set_redis_settings(settings);
    let client = redis::Client::open(info).map_err(redis_err)?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(TIMEOUT));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(redis_err)
}

async fn command(
    conn: &mut redis::aio::MultiplexedConnection,
    address: &str,
    cmd: &redis::Cmd,
) -> Result<String, BootstrapError> {
    let reply: redis::Value =
        cmd.query_async(conn)
            .await
            .map_err(|source| BootstrapError::Redis {
                address: address.to_string(),
                source,
            })?;
    Ok(match reply {
        redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        redis::Value::SimpleString(s) | redis::Value::VerbatimString { text: s, .. } => s,
        redis::Value::Okay => "OK".into(),
        other => format!("{other:?}"),
    })
}

async fn observe(address: &str, password: Option<&str>) -> Result<NodeView, BootstrapError> {
    let mut conn = connect(address, password).await?;
    let id = command(&mut conn, address, redis::cmd("CLUSTER").arg("MYID")).await?;
    let nodes = command(&mut conn, address, redis::cmd("CLUSTER").arg("NODES")).await?;
    let info = command(&mut conn, address, redis::cmd("CLUSTER").arg("INFO")).await?;
    let nodes = parse_nodes(&nodes).map_err(|line| BootstrapError::Parse {
        address: address.to_string(),
        line,
    })?;
    Ok(NodeView {
        id: id.trim().to_string(),
        nodes,
        state_ok: info.lines().any(|l| l.trim() == "cluster_state:ok"),
    })
}

/// CLUSTER MEET takes an IP in Redis 7.0, so a pod's DNS name is resolved here.
async fn resolve(address: &str) -> Result<(String, u16), BootstrapError> {
    let (_, port) = split_address(address)?;
    let resolved = tokio::net::lookup_host(address)
        .await
        .map_err(|source| BootstrapError::Resolve {
            address: address.to_string(),
            source,
        })?
        .next()
        .ok_or_else(|| BootstrapError::Address(address.to_string()))?;
    Ok((resolved.ip().to_string(), port))
}

async fn act(nodes: &Nodes, action: &Action) -> Result<(), BootstrapError> {
    let password = nodes.password.as_deref();
    match action {
        Action::Meet { from, to } => {
            let address = &nodes.addresses[*from];
            let mut conn = connect(address, password).await?;
            for &i in to {
                let (ip, port) = resolve(&nodes.addresses[i]).await?;
                let mut cmd = redis::cmd("CLUSTER");
                cmd.arg("MEET")
                    .arg(&ip)
                    .arg(port)
                    .arg(port.saturating_add(BUS_PORT_OFFSET));
                command(&mut conn, address, &cmd).await?;
            }
        }
        Action::AddSlots { pod, ranges } => {
            let address = &nodes.addresses[*pod];
            let mut conn = connect(address, password).await?;
            let mut cmd = redis::cmd("CLUSTER");
            cmd.arg("ADDSLOTSRANGE");
            for (a, b) in ranges {
                cmd.arg(a).arg(b);
            }
            command(&mut conn, address, &cmd).await?;
        }
        Action::Replicate { pod, master_id, .. } => {
            let address = &nodes.addresses[*pod];
            let mut conn = connect(address, password).await?;
            let mut cmd = redis::cmd("CLUSTER");
            cmd.arg("REPLICATE").arg(master_id);
            command(&mut conn, address, &cmd).await?;
        }
        Action::Wait(_) | Action::None => {}
    }
    Ok(())
}

/// Observes every node; a node that cannot be reached makes the cluster Pending.
pub async fn observe_all(nodes: &Nodes) -> Result<Vec<NodeView>, BootstrapError> {
    let password = nodes.password.as_deref();
    let views = futures::future::join_all(nodes.addresses.iter().map(|a| async move {
        tokio::time::timeout(TIMEOUT * 2, observe(a, password))
            .await
            .map_err(|_| BootstrapError::Timeout(a.clone()))?
    }))
    .await;
    views.into_iter().collect()
}

/// One bootstrap step: observe, plan, act. The status describes the cluster before the action
/// (with the action as `lastStep`); an unreachable node gives `Pending` rather than an error,
/// since pods not being up yet is the normal start.
pub async fn step(nodes: &Nodes, goal: Goal) -> Result<RedisClusterStatus, BootstrapError> {
    let views = match observe_all(nodes).await {
        Ok(v) => v,
        Err(e) => {
            debug!(error = %e, "Redis Cluster node not reachable yet");
            return Ok(RedisClusterStatus {
                phase: RedisClusterPhase::Pending,
                masters: 0,
                replicas: 0,
                slots_assigned: 0,
                last_step: Some(format!("waiting for nodes: {e}")),
            });
        }
    };
    let action = plan(&views, goal);
    let status = status(&views, &action);
    if !matches!(action, Action::None | Action::Wait(_)) {
        info!(step = %action.describe(), "Redis Cluster bootstrap");
    }
    act(nodes, &action).await?;
    Ok(status)
}

/// Steps until Ready or `max_steps` have been taken, pausing `pause` between steps; for tests
/// and tools (the controller takes one step per reconcile).
pub async fn run(
    nodes: &Nodes,
    goal: Goal,
    max_steps: usize,
    pause: Duration,
) -> Result<RedisClusterStatus, BootstrapError> {
    let mut last = None;
    for _ in 0..max_steps {
        let s = step(nodes, goal).await?;
        if s.phase == RedisClusterPhase::Ready {
            return Ok(s);
        }
        last = Some(s);
        tokio::time::sleep(pause).await;
    }
    Ok(last.unwrap_or(RedisClusterStatus {
        phase: RedisClusterPhase::Pending,
        masters: 0,
        replicas: 0,
        slots_assigned: 0,
        last_step: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, flags: &str, master: Option<&str>, slots: &[(u16, u16)]) -> NodeEntry {
        NodeEntry {
            id: id.into(),
            flags: flags.split(',').map(str::to_string).collect(),
            master_id: master.map(str::to_string),
            slots: slots.to_vec(),
        }
    }

    /// `n` nodes that all know each other; `own[i]` are pod i's slots, `replica_of[i]` its master.
    fn views(own: &[Vec<(u16, u16)>], replica_of: &[Option<usize>], ok: bool) -> Vec<NodeView> {
        let n = own.len();
        let id = |i: usize| format!("id{i}");
        (0..n)
            .map(|me| NodeView {
                id: id(me),
                state_ok: ok,
                nodes: (0..n)
                    .map(|i| {
                        let role = if replica_of[i].is_some() {
                            "slave"
                        } else {
                            "master"
                        };
                        let flags = if i == me {
                            format!("myself,{role}")
                        } else {
                            role.to_string()
                        };
                        entry(&id(i), &flags, replica_of[i].map(id).as_deref(), &own[i])
                    })
                    .collect(),
            })
            .collect()
    }

    const GOAL: Goal = Goal {
        masters: 3,
        replicas_per_master: 1,
    };

    #[test]
    fn ranges_cover_every_slot_once() {
        assert_eq!(GOAL.range(0), (0, 5460));
        assert_eq!(GOAL.range(1), (5461, 10921));
        assert_eq!(GOAL.range(2), (10922, 16383));
        assert_eq!(GOAL.pods(), 6);
        assert_eq!(
            (3..6).map(|p| GOAL.master_of(p)).collect::<Vec<_>>(),
            [0, 1, 2]
        );
    }

    #[test]
    fn parses_cluster_nodes() {
        let text = "07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host-4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected\n\
            e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 5462 [5461->-abc]\n";
        let n = parse_nodes(text).unwrap();
        assert_eq!(n.len(), 2);
        assert!(n[0].is_replica());
        assert_eq!(
            n[0].master_id.as_deref(),
            Some("e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca")
        );
        assert!(n[1].is_myself());
        assert_eq!(n[1].slots, [(0, 5460), (5462, 5462)]);
        assert!(parse_nodes("garbage").is_err());
    }

    #[test]
    fn fresh_nodes_meet_first() {
        let fresh: Vec<NodeView> = (0..6)
            .map(|i| NodeView {
                id: format!("id{i}"),
                state_ok: false,
                nodes: vec![entry(&format!("id{i}"), "myself,master", None, &[])],
            })
            .collect();
        assert_eq!(
            plan(&fresh, GOAL),
            Action::Meet {
                from: 0,
                to: vec![1, 2, 3, 4, 5]
            }
        );
    }

    #[test]
    fn a_peer_marked_failed_but_reachable_is_met_again() {
        // After all pods restart with new IPs, pod 1 still has pod 0's old address, failed.
        let own = vec![vec![(0, 5460)], vec![(5461, 16383)], vec![]];
        let mut v = views(&own, &[None; 3], true);
        v[1].nodes[0].flags.insert("fail".into());
        assert_eq!(
            plan(&v, GOAL),
            Action::Meet {
                from: 1,
                to: vec![0]
            }
        );
    }

    #[test]
    fn assigns_only_free_slots_of_the_next_master() {
        // Pod 0 done, pod 1 half done (an interrupted run).
        let own = vec![
            vec![(0, 5460)],
            vec![(5461, 8000)],
            vec![],
            vec![],
            vec![],
            vec![],
        ];
        let v = views(&own, &[None; 6], false);
        assert_eq!(
            plan(&v, GOAL),
            Action::AddSlots {
                pod: 1,
                ranges: vec![(8001, 10921)]
            }
        );
    }

    #[test]
    fn never_reassigns_a_slot_someone_else_owns() {
        // Pod 2 somehow owns a slot of pod 0's range: pod 0 gets the rest around it.
        let own = vec![
            vec![],
            vec![(5461, 10921)],
            vec![(100, 100), (10922, 16383)],
            vec![],
            vec![],
            vec![],
        ];
        let v = views(&own, &[None; 6], false);
        assert_eq!(
            plan(&v, GOAL),
            Action::AddSlots {
                pod: 0,
                ranges: vec![(0, 99), (101, 5460)]
            }
        );
    }

    #[test]
    fn replicas_follow_masters_round_robin_then_ready() {
        let own = vec![
            vec![(0, 5460)],
            vec![(5461, 10921)],
            vec![(10922, 16383)],
            vec![],
            vec![],
            vec![],
        ];
        let v = views(&own, &[None, None, None, Some(0), None, None], false);
        assert_eq!(
            plan(&v, GOAL),
            Action::Replicate {
                pod: 4,
                master_pod: 1,
                master_id: "id1".into()
            }
        );
        let replicas = [None, None, None, Some(0), Some(1), Some(2)];
        let v = views(&own, &replicas, false);
        assert!(matches!(plan(&v, GOAL), Action::Wait(_)));
        let v = views(&own, &replicas, true);
        assert_eq!(plan(&v, GOAL), Action::None);
        let s = status(&v, &Action::None);
        assert_eq!(s.phase, RedisClusterPhase::Ready);
        assert_eq!((s.masters, s.replicas, s.slots_assigned), (3, 3, 16384));
    }

    #[test]
    fn after_a_failover_the_promoted_replica_keeps_its_slots() {
        // Pod 0 became a replica of pod 3, which took its slots: nothing to assign or replicate.
        let own = vec![
            vec![],
            vec![(5461, 10921)],
            vec![(10922, 16383)],
            vec![(0, 5460)],
            vec![],
            vec![],
        ];
        let v = views(&own, &[Some(3), None, None, None, Some(1), Some(2)], true);
        assert_eq!(plan(&v, GOAL), Action::None);
    }
}
