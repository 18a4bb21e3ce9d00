//! connections: idle subscribed WebSockets and what each costs the server in memory.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use serde::Serialize;
use serde_json::json;

use crate::Target;
use crate::procfs;
use crate::record::Record;
use crate::stats::lock;
use crate::subscriber::{Pool, WsTarget};

#[derive(Args, Clone, Debug, Serialize)]
pub struct ConnectionsArgs {
    /// Cumulative connection counts at which server RSS is read (ascending).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,15000")]
    pub steps: Vec<usize>,
    /// Channels; connection i subscribes to channel i mod C.
    #[arg(long, short = 'c', default_value_t = 1000)]
    pub channels: usize,
    /// Wait after each step before reading RSS (lets the allocator and server settle).
    #[arg(long, default_value_t = 3.0)]
    pub settle_secs: f64,
    #[arg(long, default_value = "idle")]
    pub channel_prefix: String,
    /// Connections opened and closed before the baseline RSS is read, so one-time start-up
    /// costs (lazily started threads, first buffers) are not counted per connection.
    #[arg(long, default_value_t = 50)]
    pub warmup: usize,
    /// Per step.
    #[arg(long, default_value_t = 120)]
    pub connect_timeout_secs: u64,
}

#[derive(Debug, Serialize)]
struct Step {
    target: usize,
    subscribed: usize,
    failed: usize,
    dropped: usize,
    connect_secs: f64,
    connects_per_sec: f64,
    server_rss_kb: Option<u64>,
    server_rss_kb_per_connection: Option<f64>,
    server_cpu_us_per_connect: Option<f64>,
    client_rss_kb: u64,
}

pub async fn run(target: &Target, a: ConnectionsArgs) -> Result<Record> {
    if a.steps.is_empty() || a.steps.windows(2).any(|w| w[0] >= w[1]) {
        bail!("--steps must be ascending, e.g. 1000,10000,15000");
    }
    let max = *a.steps.last().unwrap_or(&0);
    let c = a.channels.clamp(1, max.max(1));
    let method = format!(
        "Opens idle WebSocket connections in cumulative steps {:?}, each subscribed to one public \
         channel (connection i on channel i mod {c}), {} handshakes in flight at most, from source \
         addresses 127.0.0.1..K (K = --source-ips, default one per 5,000 connections).\n\
         Server memory: VmRSS of --server-pid (/proc/PID/status) read after a warm-up ({} \
         connections opened and closed, then {} s pause), then {} s after each step has fully subscribed. RSS per connection = (RSS at step - RSS \
         before) / subscribed connections, so it includes the subscription and the server's \
         per-socket buffers and tasks, and allocator overhead. Nothing is published.",
        a.steps, target.args.connect_concurrency, a.warmup, a.settle_secs, a.settle_secs
    );
    let mut params = serde_json::to_value(&a)?;
    params["channels"] = json!(c);
    let mut rec = Record::new(target, "connections", method, params);
    rec.print_method();

    let nofile = procfs::raise_nofile_limit()?;
    if max + 64 > nofile as usize {
        bail!("{max} connections need more than the open-files limit {nofile}");
    }
    let pids = &target.args.server_pid;
    let metered = !pids.is_empty();
    let run_tag = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() % 1_000_000)
        .unwrap_or(0);
    let names = (0..c)
        .map(|i| format!("{}-{run_tag}-{i}", a.channel_prefix))
        .collect();
    let ws_target = WsTarget {
        addr: target.ws,
        key: target.args.key.clone(),
        source_ips: target.source_ips(max),
    };
    if a.warmup > 0 {
        let mut warm = Pool::new(
            ws_target.clone(),
            vec![format!("{}-{run_tag}-warmup", a.channel_prefix)],
            target.args.connect_concurrency,
        );
        warm.grow_to(a.warmup, Duration::from_secs(a.connect_timeout_secs))
            .await?;
        let ok = warm.shared.ready.load(Ordering::SeqCst);
        warm.stop().await;
        if ok < a.warmup {
            bail!("warm-up: only {ok}/{} connections subscribed", a.warmup);
        }
        tokio::time::sleep(Duration::from_secs_f64(a.settle_secs)).await;
    }
    let before = procfs::sample(pids)?;
    println!(
        "source addresses: {:?}; server RSS before: {}",
        ws_target.source_ips,
        if metered {
            format!("{} KiB", before.rss_kb)
        } else {
            "n/a".into()
        }
    );
    let mut pool = Pool::new(ws_target, names, target.args.connect_concurrency);
    let mut steps = Vec::new();
    for &n in &a.steps {
        let s0 = procfs::sample(pids)?;
        let ready0 = pool.shared.ready.load(Ordering::SeqCst);
        let t = Instant::now();
        pool.grow_to(n, Duration::from_secs(a.connect_timeout_secs))
            .await?;
        let connect_secs = t.elapsed().as_secs_f64();
        let s1 = procfs::sample(pids)?;
        tokio::time::sleep(Duration::from_secs_f64(a.settle_secs)).await;
        let s2 = procfs::sample(pids)?;
        let ready = pool.shared.ready.load(Ordering::SeqCst);
        let failed = pool.shared.failed.load(Ordering::SeqCst);
        let dropped = pool.shared.dropped.load(Ordering::SeqCst);
        let alive = ready.saturating_sub(dropped);
        let new = ready - ready0;
        let step = Step {
            target: n,
            subscribed: ready,
            failed,
            dropped,
            connect_secs,
            connects_per_sec: new as f64 / connect_secs.max(1e-6),
            server_rss_kb: metered.then_some(s2.rss_kb),
            server_rss_kb_per_connection: metered
                .then(|| (s2.rss_kb as f64 - before.rss_kb as f64) / alive.max(1) as f64),
            server_cpu_us_per_connect: metered
                .then(|| s1.cpu_since(&s0) as f64 / new.max(1) as f64),
            client_rss_kb: procfs::sample_self()?.rss_kb,
        };
        println!(
            "step {n}: {ready} subscribed ({failed} failed, {dropped} dropped) in {connect_secs:.1} s \
             ({:.0}/s); server RSS {} -> {} per connection{}",
            step.connects_per_sec,
            step.server_rss_kb
                .map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
                .unwrap_or_else(|| "n/a".into()),
            step.server_rss_kb_per_connection
                .map(|k| format!("{k:.2} KiB"))
                .unwrap_or_else(|| "n/a".into()),
            lock(&pool.shared.first_error)
                .as_ref()
                .map(|e| format!("; first error: {e}"))
                .unwrap_or_default()
        );
        let short = ready < n;
        steps.push(step);
        if short {
            println!("  stopping: not every connection of this step subscribed");
            break;
        }
    }
    let close_codes = pool.shared.close_codes();
    let first_error = lock(&pool.shared.first_error).clone();
    pool.stop().await;

    for s in &steps {
        rec.metric(
            &format!("server RSS per idle subscribed connection @ {}", s.target),
            "KiB",
            s.server_rss_kb_per_connection,
            false,
        );
    }
    if let Some(last) = steps.last() {
        rec.metric(
            "connections subscribed (last step)",
            "connections",
            Some(last.subscribed as f64),
            true,
        );
        rec.metric(
            "connect+subscribe rate (last step)",
            "connections/s",
            Some(last.connects_per_sec),
            true,
        );
        rec.metric(
            "server CPU per connect+subscribe (last step)",
            "us",
            last.server_cpu_us_per_connect,
            false,
        );
    }
    rec.details = json!({
        "server_rss_kb_before": metered.then_some(before.rss_kb),
        "steps": steps,
        "close_codes": close_codes,
        "first_error": first_error,
    });
    rec.print_summary();
    Ok(rec)
}
