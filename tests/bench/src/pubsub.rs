//! fanout / channels / cross-node: subscribers on WebSockets, signed HTTP publishes, and the
//! publish-to-receive latency of every delivery.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use serde::Serialize;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::Target;
use crate::procfs;
use crate::publisher::Publisher;
use crate::record::Record;
use crate::stats::{Latency, lock, now_us, sample_buffer};
use crate::subscriber::{EVENT, Pool, WsTarget, payload};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Fanout,
    Channels,
    CrossNode,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Fanout => "fanout",
            Kind::Channels => "channels",
            Kind::CrossNode => "cross-node",
        }
    }
}

#[derive(Args, Clone, Debug, Serialize)]
pub struct PubSubArgs {
    /// WebSocket subscribers [fanout/cross-node: 1000, channels: 10000].
    #[arg(long, short = 'n')]
    pub connections: Option<usize>,
    /// Channels; connection i subscribes to channel i mod C [fanout: 1, channels: 1000,
    /// cross-node: 1].
    #[arg(long, short = 'c')]
    pub channels: Option<usize>,
    /// Publishes per second (one step), open loop.
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// Publishes per step [default: rate x --step-secs].
    #[arg(long, short = 'm')]
    pub messages: Option<u64>,
    /// Length of a step when --messages is not given.
    #[arg(long, default_value_t = 10.0)]
    pub step_secs: f64,
    /// Comma-separated publish rates to step through (ascending); stops at the first step whose
    /// p99 passes --threshold-ms (or that loses deliveries or cannot reach its rate).
    #[arg(long, value_delimiter = ',')]
    pub ramp: Vec<f64>,
    /// p99 limit in ms that a step must meet to count as sustained [fanout/cross-node: 500,
    /// channels: 20].
    #[arg(long)]
    pub threshold_ms: Option<f64>,
    /// Bytes of the event's `data` string.
    #[arg(long, default_value_t = 200)]
    pub payload_bytes: usize,
    /// After the last publish of a step, wait at most this long for missing deliveries.
    #[arg(long, default_value_t = 5.0)]
    pub drain_secs: f64,
    /// Publish requests in flight at once (open loop until this cap).
    #[arg(long, default_value_t = 256)]
    pub max_in_flight: usize,
    /// Channel name prefix (a per-run suffix keeps runs apart).
    #[arg(long, default_value = "bench")]
    pub channel_prefix: String,
    /// Pause between subscribing and the first step.
    #[arg(long, default_value_t = 1.0)]
    pub settle_secs: f64,
    #[arg(long, default_value_t = 120)]
    pub connect_timeout_secs: u64,
    /// In a ramp, how many times a failed step is run again before the ramp stops on it.
    #[arg(long, default_value_t = 1)]
    pub retries: u32,
}

#[derive(Debug, Default, Serialize)]
struct StepResult {
    target_rate: f64,
    attempt: u32,
    publishes: u64,
    achieved_publish_rate: f64,
    publish_errors: u64,
    first_publish_error: Option<String>,
    expected: u64,
    delivered: u64,
    late_from_earlier_steps: u64,
    delivered_ratio: f64,
    deliveries_per_sec: f64,
    latency: Latency,
    http_latency: Latency,
    server_cpu_us: Option<u64>,
    server_cpu_us_per_delivery: Option<f64>,
    server_cpu_pct_of_core: Option<f64>,
    /// Share of the server's CPU spent in the kernel (mostly socket writes).
    server_kernel_pct: Option<f64>,
    client_cpu_pct_of_core: f64,
    /// CPU used by everything but server and generator (kernel threads such as a memory
    /// reclaimer, other processes), in % of one core: a busy neighbour explains a stalled step.
    other_cpu_pct_of_core: Option<f64>,
    /// Hypervisor steal over all cores, in % of one core.
    steal_pct_of_core: f64,
    /// Silences between deliveries of at least `delivery_gap_threshold_ms`, and their total.
    delivery_gaps: u64,
    delivery_gap_threshold_ms: f64,
    delivery_gaps_total_ms: f64,
    connections_dropped_so_far: usize,
    passed: bool,
    verdict: String,
}

#[derive(Default)]
struct PubCounters {
    ok: AtomicU64,
    err: AtomicU64,
    first_err: Mutex<Option<String>>,
    latencies_us: Mutex<Vec<u32>>,
}

fn method(kind: Kind, n: usize, c: usize, a: &PubSubArgs, threshold: f64) -> String {
    let shape = match kind {
        Kind::Fanout => format!("{n} WebSocket connections all subscribe to ONE public channel."),
        Kind::Channels => format!(
            "{n} WebSocket connections over {c} public channels (connection i on channel i mod {c}); \
             publishes go round-robin over the channels."
        ),
        Kind::CrossNode => format!(
            "{n} WebSocket connections on node A over {c} channel(s); every publish is sent to node B's \
             HTTP API, so each delivery crosses the server's horizontal adapter."
        ),
    };
    let steps = if a.ramp.is_empty() {
        format!(
            "One step: {} publishes at {}/s.",
            a.messages
                .map(|m| m.to_string())
                .unwrap_or_else(|| format!("{:.0}", a.rate * a.step_secs)),
            a.rate
        )
    } else {
        format!(
            "Ramp: steps at {:?} publishes/s, {} each; the ramp stops at the first step that fails. \
             A step passes if p99 <= {threshold} ms, >= 99.9% of expected deliveries arrive, no publish \
             fails and the achieved publish rate is >= 95% of the target. The result is the best passing step.",
            a.ramp,
            a.messages
                .map(|m| format!("{m} publishes"))
                .unwrap_or_else(|| format!("{} s", a.step_secs)),
        )
    };
    format!(
        "{shape}\n\
         Load generator: one tokio current-thread runtime (one core) with all sockets and the publisher.\n\
         Publisher: signed POST /apps/{{id}}/events (HMAC-SHA256, body_md5), event {EVENT:?}, data = {} bytes \
         starting with the send time; open loop on a fixed schedule, up to {} requests in flight.\n\
         {steps}\n\
         Latency = receive time - send time (one monotonic clock, same process) for EVERY delivery to \
         EVERY subscriber: HTTP request + server fan-out + client read. Nearest-rank percentiles.\n\
         Publish request = send time to the whole HTTP response: when it is about as slow as the \
         deliveries, they waited before the fan-out (requests queued at a saturated server).\n\
         deliveries/s = deliveries / (last receive - first send). Server CPU = delta of utime+stime \
         (/proc/PID/stat) over the step incl. drain; CPU us/delivery = server CPU / deliveries. \
         Client CPU is reported too: near 100% means the load generator, not the server, was the limit.",
        a.payload_bytes, a.max_in_flight
    )
}

pub async fn run(target: &Target, kind: Kind, a: PubSubArgs) -> Result<Record> {
    let n = a
        .connections
        .unwrap_or(if kind == Kind::Channels { 10_000 } else { 1000 });
    let c = match (kind, a.channels) {
        (Kind::Fanout, Some(c)) if c != 1 => bail!("fanout uses one channel; use `channels`"),
        (Kind::Fanout, _) => 1,
        (Kind::Channels, c) => c.unwrap_or(1000),
        (Kind::CrossNode, c) => c.unwrap_or(1),
    }
    .clamp(1, n.max(1));
    let threshold = a
        .threshold_ms
        .unwrap_or(if kind == Kind::Channels { 20.0 } else { 500.0 });
    if a.rate <= 0.0 || a.ramp.iter().any(|r| *r <= 0.0) {
        bail!("rates must be > 0");
    }
    let rates = if a.ramp.is_empty() {
        vec![a.rate]
    } else {
        a.ramp.clone()
    };

    let mut params = serde_json::to_value(&a)?;
    params["connections"] = json!(n);
    params["channels"] = json!(c);
    params["threshold_ms"] = json!(threshold);
    let mut rec = Record::new(
        target,
        kind.name(),
        method(kind, n, c, &a, threshold),
        params,
    );
    rec.print_method();

    let nofile = procfs::raise_nofile_limit()?;
    if n + 64 > nofile as usize {
        bail!("{n} connections need more than the open-files limit {nofile}");
    }
    let pids = &target.args.server_pid;
    let server_before = procfs::sample(pids)?;

    let run_tag = now_unix_ms() % 1_000_000;
    let names: Vec<String> = (0..c)
        .map(|i| format!("{}-{run_tag}-{i}", a.channel_prefix))
        .collect();
    let ws_target = WsTarget {
        addr: target.ws,
        key: target.args.key.clone(),
        source_ips: target.source_ips(n),
    };
    let mut pool = Pool::new(ws_target, names.clone(), target.args.connect_concurrency);
    let t = Instant::now();
    pool.grow_to(n, Duration::from_secs(a.connect_timeout_secs))
        .await?;
    let connect_secs = t.elapsed().as_secs_f64();
    let ready = pool.shared.ready.load(Ordering::SeqCst);
    let failed = pool.shared.failed.load(Ordering::SeqCst);
    println!(
        "subscribed {ready}/{n} connections in {connect_secs:.1} s ({failed} failed{})",
        lock(&pool.shared.first_error)
            .as_ref()
            .map(|e| format!("; first error: {e}"))
            .unwrap_or_default()
    );
    if ready == 0 {
        pool.stop().await;
        bail!("no connection could subscribe");
    }
    tokio::time::sleep(Duration::from_secs_f64(a.settle_secs)).await;
    let server_subscribed = procfs::sample(pids)?;

    let publisher = Publisher::new(
        target.http,
        &target.args.app_id,
        &target.args.key,
        &target.args.secret,
        a.max_in_flight,
    );
    let names = Arc::new(names);
    let mut steps: Vec<StepResult> = Vec::new();
    let mut seq: u64 = 0;
    let ramping = a.ramp.len() > 1;
    let mut step_id: u32 = 0;
    for &rate in &rates {
        // On a shared machine one step can fail on a transient stall: in a ramp, a failed step
        // is run once more before the ramp stops on it.
        let attempts = if ramping { 1 + a.retries } else { 1 };
        for attempt in 1..=attempts {
            if attempt > 1 {
                quiesce(&pool.shared).await;
            }
            step_id += 1;
            let mut step = run_step(
                &pool, &publisher, &names, &a, pids, step_id, rate, threshold, &mut seq,
            )
            .await?;
            step.attempt = attempt;
            println!(
                "step {step_id} @ {rate}/s{}: {} | {}/{} delivered ({:.2}%), {:.0} deliveries/s, {} | \
                 publish request p50 {:.2} ms, p99 {:.2} ms | {}",
                if attempt > 1 { " (retry)" } else { "" },
                step.verdict,
                step.delivered,
                step.expected,
                step.delivered_ratio * 100.0,
                step.deliveries_per_sec,
                step.latency.line(),
                step.http_latency.p50_ms,
                step.http_latency.p99_ms,
                cpu_line(&step),
            );
            let passed = step.passed;
            steps.push(step);
            if passed {
                break;
            }
        }
        if ramping && !steps.last().is_some_and(|s| s.passed) {
            break;
        }
    }
    let server_after = procfs::sample(pids)?;
    let dropped = pool.shared.dropped.load(Ordering::SeqCst);
    let close_codes = pool.shared.close_codes();
    let first_connect_error = lock(&pool.shared.first_error).clone();
    pool.stop().await;

    let metered = !pids.is_empty();
    if a.ramp.len() > 1 {
        let best = steps.iter().filter(|s| s.passed).max_by(|x, y| {
            x.deliveries_per_sec
                .partial_cmp(&y.deliveries_per_sec)
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let first_fail = steps.iter().rev().find(|s| !s.passed);
        rec.metric(
            &format!("max sustained deliveries/s (p99 <= {threshold} ms)"),
            "deliveries/s",
            best.map(|s| s.deliveries_per_sec),
            true,
        );
        rec.metric(
            &format!("max publishes/s (p99 <= {threshold} ms)"),
            "publishes/s",
            best.map(|s| s.achieved_publish_rate),
            true,
        );
        rec.metric(
            "p99 at that step",
            "ms",
            best.map(|s| s.latency.p99_ms),
            false,
        );
        rec.metric(
            "server CPU per delivery at that step",
            "us",
            best.and_then(|s| s.server_cpu_us_per_delivery),
            false,
        );
        rec.metric(
            "first failing step (target publishes/s)",
            "publishes/s",
            first_fail.map(|s| s.target_rate),
            true,
        );
    } else {
        let s = &steps[0];
        rec.metric("latency p50", "ms", Some(s.latency.p50_ms), false);
        rec.metric("latency p90", "ms", Some(s.latency.p90_ms), false);
        rec.metric("latency p99", "ms", Some(s.latency.p99_ms), false);
        rec.metric("latency max", "ms", Some(s.latency.max_ms), false);
        rec.metric(
            "delivered / expected",
            "%",
            Some(s.delivered_ratio * 100.0),
            true,
        );
        rec.metric(
            "deliveries/s",
            "deliveries/s",
            Some(s.deliveries_per_sec),
            true,
        );
        rec.metric(
            "server CPU per delivery",
            "us",
            s.server_cpu_us_per_delivery,
            false,
        );
        rec.metric(
            "server CPU (share of one core)",
            "%",
            s.server_cpu_pct_of_core,
            false,
        );
    }
    rec.metric(
        "server RSS with subscribers",
        "MiB",
        metered.then(|| server_subscribed.rss_kb as f64 / 1024.0),
        false,
    );
    rec.details = json!({
        "connections_ready": ready,
        "connections_failed": failed,
        "first_connect_error": first_connect_error,
        "connect_secs": connect_secs,
        "connections_dropped": dropped,
        "close_codes": close_codes,
        "server_rss_kb_before": metered.then_some(server_before.rss_kb),
        "server_rss_kb_subscribed": metered.then_some(server_subscribed.rss_kb),
        "server_rss_kb_after": metered.then_some(server_after.rss_kb),
        "steps": steps,
    });
    rec.print_summary();
    if dropped > 0 {
        println!("  WARNING: {dropped} connections dropped during the run: {close_codes:?}");
    }
    Ok(rec)
}

/// Waits (at most 10 s) until deliveries of an overloaded step stop trickling in, so a retry
/// starts from an idle server.
async fn quiesce(shared: &crate::subscriber::Shared) {
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut last = shared.delivered.load(Ordering::SeqCst);
    while tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = shared.delivered.load(Ordering::SeqCst);
        if now == last {
            return;
        }
        last = now;
    }
}

fn cpu_line(s: &StepResult) -> String {
    let server = match (s.server_cpu_us_per_delivery, s.server_cpu_pct_of_core) {
        (Some(per), Some(pct)) => format!(
            "server CPU {per:.2} us/delivery ({pct:.0}% of a core, {:.0}% of it in the kernel)",
            s.server_kernel_pct.unwrap_or(0.0)
        ),
        _ => "server CPU n/a".into(),
    };
    let mut line = format!("{server}, client CPU {:.0}%", s.client_cpu_pct_of_core);
    if let Some(other) = s.other_cpu_pct_of_core {
        line.push_str(&format!(", other CPU {other:.0}%"));
    }
    if s.steal_pct_of_core >= 0.5 {
        line.push_str(&format!(", steal {:.0}%", s.steal_pct_of_core));
    }
    if s.delivery_gaps > 0 {
        line.push_str(&format!(
            " | {} delivery gaps >= {:.0} ms ({:.0} ms in all)",
            s.delivery_gaps, s.delivery_gap_threshold_ms, s.delivery_gaps_total_ms
        ));
    }
    line
}

fn now_unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

#[allow(clippy::too_many_arguments)]
async fn run_step(
    pool: &Pool,
    publisher: &Publisher,
    names: &Arc<Vec<String>>,
    a: &PubSubArgs,
    pids: &[u32],
    step_id: u32,
    rate: f64,
    threshold: f64,
    seq: &mut u64,
) -> Result<StepResult> {
    let shared = &pool.shared;
    let subs = lock(&shared.subscribers).clone();
    let messages = a
        .messages
        .unwrap_or_else(|| (rate * a.step_secs).ceil().max(1.0) as u64);
    // Deliveries this step's publishes should make: publish k goes to channel (seq + k) mod C.
    let expected: u64 = (0..messages)
        .map(|k| subs[((*seq + k) % names.len() as u64) as usize])
        .sum();
    // A gap is a silence of 3 ms, or of 20 publish intervals at slow rates.
    let gap_threshold_us = (20e6 / rate).max(3000.0) as u64;
    shared.begin_step(step_id, expected as usize, gap_threshold_us);
    let counters = Arc::new(PubCounters::default());
    sample_buffer(&mut lock(&counters.latencies_us), messages as usize);
    let gate = Arc::new(Semaphore::new(a.max_in_flight.max(1)));
    let server0 = procfs::sample(pids)?;
    let client0 = procfs::sample_self()?;
    let machine0 = procfs::machine()?;
    let wall0 = Instant::now();
    let first_send = now_us();
    let start = tokio::time::Instant::now();
    for i in 0..messages {
        tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate)).await;
        let permit = gate.clone().acquire_owned().await?;
        let ch = (*seq % names.len() as u64) as usize;
        let this_seq = *seq;
        *seq += 1;
        let publisher = publisher.clone();
        let names = names.clone();
        let counters = counters.clone();
        let size = a.payload_bytes;
        tokio::spawn(async move {
            let sent = now_us();
            let data = payload(sent, this_seq, step_id, size);
            let body = Publisher::event_body(&names[ch], EVENT, &data);
            let res = publisher.post_events(body).await;
            let took = now_us().saturating_sub(sent).min(u32::MAX as u64) as u32;
            lock(&counters.latencies_us).push(took);
            match res {
                Ok(st) if st.is_success() => {
                    counters.ok.fetch_add(1, Ordering::Relaxed);
                }
                other => {
                    counters.err.fetch_add(1, Ordering::Relaxed);
                    let msg = match other {
                        Ok(st) => format!("HTTP {st}"),
                        Err(e) => format!("{e:#}"),
                    };
                    lock(&counters.first_err).get_or_insert(msg);
                }
            }
            drop(permit);
        });
    }
    let publish_secs = start.elapsed().as_secs_f64().max(1e-6);
    // Every publish answered (bounded: a stuck server must not hang the run).
    let all = a.max_in_flight.max(1) as u32;
    let _ = tokio::time::timeout(Duration::from_secs(30), gate.acquire_many(all)).await;
    let drain_until = tokio::time::Instant::now() + Duration::from_secs_f64(a.drain_secs);
    while shared.delivered.load(Ordering::SeqCst) < expected
        && tokio::time::Instant::now() < drain_until
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let wall = wall0.elapsed().as_secs_f64();
    let server1 = procfs::sample(pids)?;
    let client1 = procfs::sample_self()?;
    let client_cpu = client1.cpu_since(&client0);
    let machine1 = procfs::machine()?;

    let delivered = shared.delivered.load(Ordering::SeqCst);
    let last_recv = shared.last_recv_us.load(Ordering::SeqCst);
    let latency = Latency::from_us(&mut lock(&shared.latencies_us));
    let http_latency = Latency::from_us(&mut lock(&counters.latencies_us));
    let span = (last_recv.saturating_sub(first_send) as f64 / 1e6).max(1e-6);
    let publish_errors = counters.err.load(Ordering::SeqCst);
    // Each publish owns a 1/rate slot: a perfect schedule achieves exactly `rate`.
    let achieved = messages as f64 / (publish_secs + 1.0 / rate);
    let ratio = if expected == 0 {
        0.0
    } else {
        delivered as f64 / expected as f64
    };
    let server_cpu = (!pids.is_empty()).then(|| server1.cpu_since(&server0));
    let mut reasons = Vec::new();
    if latency.p99_ms > threshold {
        reasons.push(format!("p99 {:.1} ms > {threshold} ms", latency.p99_ms));
    }
    if ratio < 0.999 {
        reasons.push(format!("only {:.2}% delivered", ratio * 100.0));
    }
    if publish_errors > 0 {
        reasons.push(format!("{publish_errors} publish errors"));
    }
    // A rate the publisher cannot keep up is not a sustained rate (one-message steps excepted).
    if messages > 1 && achieved < 0.95 * rate {
        reasons.push(format!("publisher reached only {achieved:.1}/s"));
    }
    let passed = reasons.is_empty();
    Ok(StepResult {
        target_rate: rate,
        attempt: 1,
        publishes: messages,
        achieved_publish_rate: achieved,
        publish_errors,
        first_publish_error: lock(&counters.first_err).clone(),
        expected,
        delivered,
        late_from_earlier_steps: shared.late.load(Ordering::SeqCst),
        delivered_ratio: ratio,
        deliveries_per_sec: delivered as f64 / span,
        latency,
        http_latency,
        server_cpu_us: server_cpu,
        server_cpu_us_per_delivery: server_cpu.map(|c| c as f64 / delivered.max(1) as f64),
        server_cpu_pct_of_core: server_cpu.map(|c| c as f64 / 1e4 / wall),
        server_kernel_pct: server_cpu
            .map(|c| server1.sys_since(&server0) as f64 * 100.0 / c.max(1) as f64),
        client_cpu_pct_of_core: client_cpu as f64 / 1e4 / wall,
        // Without a server PID the server's own time would count as "other".
        other_cpu_pct_of_core: server_cpu.map(|server| {
            machine1
                .busy_us
                .saturating_sub(machine0.busy_us)
                .saturating_sub(server)
                .saturating_sub(client_cpu) as f64
                / 1e4
                / wall
        }),
        steal_pct_of_core: machine1.steal_us.saturating_sub(machine0.steal_us) as f64 / 1e4 / wall,
        delivery_gaps: shared.gaps.load(Ordering::SeqCst),
        delivery_gap_threshold_ms: gap_threshold_us as f64 / 1000.0,
        delivery_gaps_total_ms: shared.gap_us.load(Ordering::SeqCst) as f64 / 1000.0,
        connections_dropped_so_far: shared.dropped.load(Ordering::SeqCst),
        passed,
        verdict: if passed {
            "PASS".into()
        } else {
            format!("FAIL ({})", reasons.join("; "))
        },
    })
}
