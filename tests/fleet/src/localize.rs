//! Turns the operator's rendered server config into one that runs on this machine: managed backend
//! addresses (cluster DNS names) become the local processes, mounted Secret paths become files in
//! the fleet's temporary directory, and each node gets its own ports. Nothing else changes.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;
use sockudo_config::{
    ClusterNode, ConsumerRedisConfig, NatsServers, RedisClusterConnection, RedisConnection,
    ServerConfig,
};
use sockudo_operator::build::redis::REDIS_PORT;
use sockudo_operator::build::server_config::NATS_CLIENT_PORT;
use sockudo_operator::crd::RedisMode;

use crate::error::{FleetError, Result};
use crate::plan::Plan;

pub const LOOPBACK: &str = "127.0.0.1";

/// Client ports of the local backend processes, in the plan's order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LocalAddrs {
    /// One entry per `plan.redis`: its pods' client ports.
    pub redis: Vec<Vec<u16>>,
    /// Client ports of the NATS servers.
    pub nats: Vec<u16>,
}

/// This node's listeners.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodePorts {
    pub port: u16,
    pub metrics_port: u16,
}

/// Operator address (`host:port`) to local `127.0.0.1:port`.
struct AddressMap {
    redis: HashMap<String, String>,
    /// The NATS client Service, and every local server it stands for.
    nats: Option<(String, Vec<String>)>,
}

impl AddressMap {
    fn of(plan: &Plan, local: &LocalAddrs) -> AddressMap {
        let mut redis = HashMap::new();
        for (r, ports) in plan.redis.iter().zip(&local.redis) {
            match r.mode {
                RedisMode::Standalone => {
                    redis.insert(
                        format!("{}.{}.svc:{REDIS_PORT}", r.name, r.namespace),
                        format!("{LOOPBACK}:{}", ports[0]),
                    );
                }
                RedisMode::Cluster => {
                    for (i, port) in ports.iter().enumerate() {
                        redis.insert(
                            format!("{}-{i}.{}.{}.svc:{REDIS_PORT}", r.name, r.name, r.namespace),
                            format!("{LOOPBACK}:{port}"),
                        );
                    }
                }
            }
        }
        let nats = plan.nats.as_ref().map(|n| {
            (
                format!("{}.{}.svc:{NATS_CLIENT_PORT}", n.name, n.namespace),
                local
                    .nats
                    .iter()
                    .map(|p| format!("nats://{LOOPBACK}:{p}"))
                    .collect(),
            )
        });
        AddressMap { redis, nats }
    }

    fn host_port(&self, host: &mut Option<String>, port: &mut Option<u16>) {
        let Some(h) = host.as_deref() else { return };
        let key = format!("{h}:{}", port.unwrap_or(REDIS_PORT));
        if let Some((lh, lp)) = self.redis.get(&key).and_then(|a| a.rsplit_once(':')) {
            *host = Some(lh.to_string());
            *port = lp.parse().ok();
        }
    }

    fn url(&self, url: &mut Option<String>) {
        let Some(u) = url.as_deref() else { return };
        let address = ClusterNode::Url(u.to_string()).address();
        if let Some(local) = self.redis.get(&address) {
            *url = Some(u.replacen(&address, local, 1));
        }
    }

    fn nodes(&self, nodes: &mut [ClusterNode]) {
        for node in nodes {
            if let Some(local) = self.redis.get(&node.address()) {
                *node = ClusterNode::Url(format!("redis://{local}"));
            }
        }
    }

    fn connection(&self, c: &mut RedisConnection) {
        self.url(&mut c.url);
        self.host_port(&mut c.host, &mut c.port);
    }

    fn cluster(&self, c: &mut RedisClusterConnection) {
        self.nodes(&mut c.nodes);
    }

    fn consumer(&self, c: &mut ConsumerRedisConfig) {
        self.url(&mut c.url_override);
        self.host_port(&mut c.host, &mut c.port);
        if let Some(nodes) = &mut c.nodes {
            self.nodes(nodes);
        }
    }

    fn nats(&self, servers: &mut NatsServers) {
        let Some((service, locals)) = &self.nats else {
            return;
        };
        let mut out = Vec::new();
        for s in servers.to_vec() {
            if ClusterNode::Url(s.clone()).address() == *service {
                out.extend(locals.iter().cloned());
            } else {
                out.push(s);
            }
        }
        *servers = NatsServers::List(out);
    }
}

/// Prefixes every absolute `*_file` path with `root`: the pod's mounted Secrets live there.
fn relocate_files(value: &mut Value, root: &Path) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match v {
                    Value::String(s) if key.ends_with("_file") && s.starts_with('/') => {
                        *s = root.join(s.trim_start_matches('/')).display().to_string();
                    }
                    other => relocate_files(other, root),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| relocate_files(v, root)),
        _ => {}
    }
}

/// `host:port` of every backend the config names (Redis sections and NATS servers).
pub fn backend_addresses(c: &ServerConfig) -> Vec<String> {
    fn conn(out: &mut Vec<String>, url: &Option<String>, host: &Option<String>, port: Option<u16>) {
        if let Some(u) = url {
            out.push(ClusterNode::Url(u.clone()).address());
        }
        if let Some(h) = host {
            out.push(format!("{h}:{}", port.unwrap_or(REDIS_PORT)));
        }
    }
    let mut out = Vec::new();
    if let Some(r) = &c.database.redis {
        conn(&mut out, &r.url, &r.host, r.port);
    }
    if let Some(r) = &c.database.redis_cluster {
        out.extend(r.nodes.iter().map(ClusterNode::address));
    }
    for r in [&c.cache.redis, &c.rate_limiter.redis] {
        conn(&mut out, &r.url_override, &r.host, r.port);
        out.extend(r.nodes.iter().flatten().map(ClusterNode::address));
    }
    out.extend(
        c.nats
            .servers
            .to_vec()
            .into_iter()
            .map(|s| ClusterNode::Url(s).address()),
    );
    out
}

/// The config node `ports` loads: the operator's, pointed at local processes and files.
pub fn localize(
    plan: &Plan,
    local: &LocalAddrs,
    root: &Path,
    node: NodePorts,
    shutdown_grace: Option<u64>,
) -> Result<ServerConfig> {
    let map = AddressMap::of(plan, local);
    let mut c: ServerConfig = plan.config.clone();
    if let Some(r) = &mut c.database.redis {
        map.connection(r);
    }
    if let Some(r) = &mut c.database.redis_cluster {
        map.cluster(r);
    }
    map.consumer(&mut c.cache.redis);
    map.consumer(&mut c.rate_limiter.redis);
    map.nats(&mut c.nats.servers);

    c.host = LOOPBACK.into();
    c.port = node.port;
    c.metrics.host = LOOPBACK.into();
    c.metrics.port = node.metrics_port;
    // NODE_ID comes from the environment, as in the pod.
    c.node_id = None;
    if let Some(grace) = shutdown_grace {
        c.shutdown_grace_period = grace;
    }

    // Every managed backend must now be reached locally: an address format the operator changed
    // would otherwise send nodes to cluster DNS names that do not resolve here.
    let reached = backend_addresses(&c);
    for (r, ports) in plan.redis.iter().zip(&local.redis) {
        if !ports
            .iter()
            .any(|p| reached.contains(&format!("{LOOPBACK}:{p}")))
        {
            return Err(FleetError::Localize(format!(
                "the rendered config does not reach the managed Redis `{}` at an address this harness knows",
                r.name
            )));
        }
    }
    if let (Some(n), Some(p)) = (&plan.nats, local.nats.first())
        && !reached.contains(&format!("{LOOPBACK}:{p}"))
    {
        return Err(FleetError::Localize(format!(
            "the rendered config does not reach the managed NATS `{}` at an address this harness knows",
            n.name
        )));
    }

    let mut value = serde_json::to_value(&c).expect("ServerConfig serialises");
    relocate_files(&mut value, root);
    serde_json::from_value(value).map_err(|e| FleetError::Localize(e.to_string()))
}
