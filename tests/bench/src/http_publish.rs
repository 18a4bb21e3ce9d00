//! http-publish: closed-loop HTTP trigger throughput.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use serde_json::json;

use crate::Target;
use crate::procfs;
use crate::publisher::Publisher;
use crate::record::Record;
use crate::stats::{Latency, lock, now_us};
use crate::subscriber::{EVENT, payload};

#[derive(Args, Clone, Debug, Serialize)]
pub struct HttpPublishArgs {
    /// Requests in flight (K workers, each sends its next request when the last one answered).
    #[arg(long, short = 'k', default_value_t = 50)]
    pub concurrency: usize,
    #[arg(long, short = 'd', default_value_t = 10.0)]
    pub duration_secs: f64,
    #[arg(long, default_value_t = 200)]
    pub payload_bytes: usize,
    /// Channel to publish to (nobody subscribes: this measures the API path, not fan-out).
    #[arg(long, default_value = "bench-http")]
    pub channel: String,
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    by_status: BTreeMap<String, u64>,
    first_error: Option<String>,
}

pub async fn run(target: &Target, a: HttpPublishArgs) -> Result<Record> {
    let method = format!(
        "{k} concurrent requesters for {d} s, closed loop: each sends a signed POST \
         /apps/{{id}}/events (one channel {ch:?} with no subscribers, data {s} bytes; a fresh \
         signature per request) as soon as its previous one is answered. HTTP/1.1 keep-alive, \
         up to {k} pooled connections (a new connection per request if the server answers \
         `Connection: close`). Throughput = 2xx responses / elapsed; latency = request sent -> \
         response body read, nearest-rank percentiles. Server CPU per request = delta \
         utime+stime of --server-pid / requests.",
        k = a.concurrency,
        d = a.duration_secs,
        ch = a.channel,
        s = a.payload_bytes
    );
    let mut rec = Record::new(target, "http-publish", method, serde_json::to_value(&a)?);
    rec.print_method();
    procfs::raise_nofile_limit()?;
    let pids = &target.args.server_pid;
    let publisher = Publisher::new(
        target.http,
        &target.args.app_id,
        &target.args.key,
        &target.args.secret,
        a.concurrency,
    );
    let tally = Arc::new(Mutex::new(Tally::default()));
    let s0 = procfs::sample(pids)?;
    let c0 = procfs::sample_self()?;
    let start = Instant::now();
    let end = tokio::time::Instant::now() + Duration::from_secs_f64(a.duration_secs);
    let mut workers = Vec::new();
    for w in 0..a.concurrency.max(1) {
        let publisher = publisher.clone();
        let tally = tally.clone();
        let a = a.clone();
        workers.push(tokio::spawn(async move {
            let mut seq = w as u64;
            while tokio::time::Instant::now() < end {
                let t = now_us();
                let body =
                    Publisher::event_body(&a.channel, EVENT, &payload(t, seq, 0, a.payload_bytes));
                seq += a.concurrency as u64;
                let res = publisher.post_events(body).await;
                let took = now_us().saturating_sub(t).min(u32::MAX as u64) as u32;
                let failed = {
                    let mut tl = lock(&tally);
                    match res {
                        Ok(st) => {
                            if st.is_success() {
                                tl.latencies_us.push(took);
                            } else if tl.first_error.is_none() {
                                tl.first_error = Some(format!("HTTP {st}"));
                            }
                            *tl.by_status.entry(st.as_u16().to_string()).or_default() += 1;
                            false
                        }
                        Err(e) => {
                            *tl.by_status.entry("transport error".into()).or_default() += 1;
                            tl.first_error.get_or_insert_with(|| format!("{e:#}"));
                            true
                        }
                    }
                };
                if failed {
                    // Don't spin on a refused connection.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let s1 = procfs::sample(pids)?;
    let c1 = procfs::sample_self()?;
    let mut tl = lock(&tally);
    let ok = tl.latencies_us.len() as u64;
    let total: u64 = tl.by_status.values().sum();
    let lat = Latency::from_us(&mut tl.latencies_us);
    let cpu = (!pids.is_empty()).then(|| s1.cpu_since(&s0));
    println!(
        "{ok} ok of {total} requests in {elapsed:.1} s; statuses {:?}; {}",
        tl.by_status,
        lat.line()
    );
    rec.metric(
        "requests/s (2xx)",
        "requests/s",
        Some(ok as f64 / elapsed),
        true,
    );
    rec.metric("latency p50", "ms", Some(lat.p50_ms), false);
    rec.metric("latency p90", "ms", Some(lat.p90_ms), false);
    rec.metric("latency p99", "ms", Some(lat.p99_ms), false);
    rec.metric("latency max", "ms", Some(lat.max_ms), false);
    rec.metric(
        "non-2xx or failed requests",
        "requests",
        Some((total - ok) as f64),
        false,
    );
    rec.metric(
        "server CPU per request",
        "us",
        cpu.map(|c| c as f64 / ok.max(1) as f64),
        false,
    );
    rec.details = json!({
        "elapsed_secs": elapsed,
        "by_status": tl.by_status,
        "first_error": tl.first_error,
        "latency": lat,
        "server_cpu_us": cpu,
        "server_rss_kb_after": (!pids.is_empty()).then_some(s1.rss_kb),
        "client_cpu_pct_of_core": c1.cpu_since(&c0) as f64 / 1e4 / elapsed,
    });
    drop(tl);
    rec.print_summary();
    Ok(rec)
}
