//! sockudo-bench: load generator and meter for any Pusher-compatible server.
//!
//! One current-thread tokio runtime drives every connection and the publisher, so the whole
//! load generator fits on one pinned core (`taskset -c 1`) next to the server on another.

mod connections;
mod delta_bandwidth;
mod http_publish;
mod procfs;
mod publisher;
mod pubsub;
mod raw_ws;
mod record;
mod report;
mod send_floor;
mod sign;
mod stats;
mod subscriber;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

// The generator allocates per publish (HTTP request, body, signature); glibc's allocator took
// ~12% of its core at 12k publishes/s.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "sockudo-bench",
    version,
    about = "Benchmarks a Pusher-compatible server: fan-out latency, channels, idle connections, HTTP publish"
)]
struct Cli {
    #[command(flatten)]
    target: TargetArgs,
    #[command(subcommand)]
    mode: Mode,
}

/// Which server, which app, and how to report.
#[derive(Args, Clone, Debug)]
pub struct TargetArgs {
    /// Server host (WebSocket and HTTP API).
    #[arg(long, global = true, default_value = "127.0.0.1")]
    pub host: String,
    /// Server port (WebSocket and HTTP API, unless --ws-port / --http-port are given).
    #[arg(long, global = true, default_value_t = 6001)]
    pub port: u16,
    #[arg(long, global = true)]
    pub ws_port: Option<u16>,
    #[arg(long, global = true)]
    pub http_port: Option<u16>,
    /// Publish to this host instead (cross-node: subscribers on one node, publishes on another).
    #[arg(long, global = true)]
    pub publish_host: Option<String>,
    #[arg(long, global = true)]
    pub publish_port: Option<u16>,
    #[arg(long, global = true, default_value = "1234")]
    pub app_id: String,
    #[arg(long, global = true, default_value = "app-key")]
    pub key: String,
    #[arg(long, global = true, default_value = "app-secret")]
    pub secret: String,
    /// Server process id(s), comma-separated, to meter CPU (utime+stime) and RSS from /proc.
    #[arg(long, global = true, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Name of the server under test, stored in the JSON record (e.g. "ours", "reference").
    #[arg(long, global = true, default_value = "server")]
    pub server_name: String,
    /// Name of this run in the JSON record (the report joins runs of two servers on it).
    #[arg(long, global = true)]
    pub label: Option<String>,
    /// Append one JSON record (one line) with parameters and results to this file.
    #[arg(long, global = true)]
    pub json: Option<PathBuf>,
    /// Source addresses 127.0.0.1..127.0.0.K to spread WebSockets over (0: one per 5,000
    /// connections, only when the target is loopback), well inside each address's ~28k ports.
    #[arg(long, global = true, default_value_t = 0)]
    pub source_ips: usize,
    /// WebSocket handshakes in flight at once (kept under common listen backlogs of 128, where
    /// overflowing SYNs wait a 1 s retransmit).
    #[arg(long, global = true, default_value_t = 64)]
    pub connect_concurrency: usize,
}

#[derive(Subcommand)]
enum Mode {
    /// N connections on ONE channel; publish M messages at rate R; publish-to-receive latency.
    Fanout(pubsub::PubSubArgs),
    /// N connections over C channels; publishes round-robin over channels at rate R.
    Channels(pubsub::PubSubArgs),
    /// Subscribers on the target, publishes on --publish-host/--publish-port (another node).
    CrossNode(pubsub::PubSubArgs),
    /// Idle subscribed connections: server RSS per connection at each step.
    Connections(connections::ConnectionsArgs),
    /// Bytes on the wire for a slowly changing stream, delta compression on vs off.
    DeltaBandwidth(delta_bandwidth::DeltaArgs),
    /// HTTP publish throughput and latency with K concurrent requesters for D seconds.
    HttpPublish(http_publish::HttpPublishArgs),
    /// No server: the kernel's CPU per small loopback TCP write, the floor under CPU per delivery.
    SendFloor(send_floor::SendFloorArgs),
    /// Render JSON records of two servers as a Markdown comparison (stdout).
    Report(report::ReportArgs),
}

/// Resolved addresses of the target.
#[derive(Clone, Debug)]
pub struct Target {
    pub ws: SocketAddr,
    pub http: SocketAddr,
    pub args: TargetArgs,
}

impl Target {
    async fn resolve(args: &TargetArgs) -> Result<Target> {
        let ws = resolve(&args.host, args.ws_port.unwrap_or(args.port)).await?;
        let http_host = args.publish_host.as_deref().unwrap_or(&args.host);
        let http_port = args.publish_port.or(args.http_port).unwrap_or(args.port);
        let http = resolve(http_host, http_port).await?;
        Ok(Target {
            ws,
            http,
            args: args.clone(),
        })
    }

    /// Source IPs for `n` connections: several only against loopback, where 127.0.0.x exist.
    pub fn source_ips(&self, n: usize) -> Vec<Ipv4Addr> {
        let IpAddr::V4(dst) = self.ws.ip() else {
            return Vec::new();
        };
        if !dst.is_loopback() {
            return Vec::new();
        }
        let k = if self.args.source_ips > 0 {
            self.args.source_ips
        } else {
            n.div_ceil(5_000).max(1)
        };
        (1..=k.min(250) as u8)
            .map(|i| Ipv4Addr::new(127, 0, 0, i))
            .collect()
    }

    pub fn describe(&self) -> String {
        let pids = if self.args.server_pid.is_empty() {
            "none (no CPU/RSS metering)".to_string()
        } else {
            format!("{:?}", self.args.server_pid)
        };
        format!(
            "server {:?}: WebSocket ws://{}/app/{}, HTTP API http://{}/apps/{}/events, server pid(s) {}",
            self.args.server_name, self.ws, self.args.key, self.http, self.args.app_id, pids
        )
    }
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr> {
    let mut addrs = tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("resolving {host}:{port}"))?;
    addrs
        .find(SocketAddr::is_ipv4)
        .with_context(|| format!("{host} has no IPv4 address"))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // One thread: the load generator must fit on one pinned core.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(cli))
}

async fn run(cli: Cli) -> Result<()> {
    stats::now_us(); // start the shared clock
    if let Mode::Report(a) = &cli.mode {
        return report::run(a);
    }
    let target = Target::resolve(&cli.target).await?;
    let record = match cli.mode {
        Mode::Fanout(a) => pubsub::run(&target, pubsub::Kind::Fanout, a).await?,
        Mode::Channels(a) => pubsub::run(&target, pubsub::Kind::Channels, a).await?,
        Mode::CrossNode(a) => {
            if cli.target.publish_host.is_none() && cli.target.publish_port.is_none() {
                bail!("cross-node needs --publish-host and/or --publish-port (the second node)");
            }
            pubsub::run(&target, pubsub::Kind::CrossNode, a).await?
        }
        Mode::Connections(a) => connections::run(&target, a).await?,
        Mode::HttpPublish(a) => http_publish::run(&target, a).await?,
        Mode::DeltaBandwidth(a) => delta_bandwidth::run(&target, a).await?,
        Mode::SendFloor(a) => send_floor::run(&target, a).await?,
        Mode::Report(_) => unreachable!("handled above"),
    };
    if let Some(path) = &cli.target.json {
        record::append(path, &record)?;
        println!("JSON record appended to {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// run.sh starts our server with ours-config.json (ports replaced): the schema must accept it.
    #[test]
    fn benchmark_config_is_valid_for_our_server() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ours-config.json");
        let cfg = sockudo_config::load(Some(&path), |_| None).expect("ours-config.json is valid");
        assert!(
            !cfg.rate_limiter.is_active(),
            "benchmarks run without rate limiting"
        );
        assert_eq!(cfg.apps[0].id, "1234");
    }
}
