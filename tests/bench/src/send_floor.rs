//! send-floor: what the kernel charges for one small TCP write over loopback, measured without
//! any server. When each delivery is its own write (a publish to a channel with a few
//! subscribers), this is the floor under any server's CPU per delivery on this machine.
//!
//! A sender thread pinned to the server's core writes one `payload` per socket, round-robin, in
//! bursts of `burst` writes (one publish to `burst` subscribers) at `rate` writes/s, sleeping
//! between bursts; a receiver thread pinned to the load generator's core drains every socket.
//! The sender's own system CPU (getrusage RUSAGE_THREAD) per write is the result.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use serde_json::json;
use tokio::io::AsyncReadExt;

use crate::Target;
use crate::procfs;
use crate::record::Record;

#[derive(Args, Clone, Debug, Serialize)]
pub struct SendFloorArgs {
    /// Connected socket pairs (both ends in this process: 2 file descriptors each).
    #[arg(long, short = 'n', default_value_t = 9_000)]
    pub connections: usize,
    /// Bytes per write (a 200-byte event's frame is about 300).
    #[arg(long, default_value_t = 300)]
    pub payload_bytes: usize,
    /// Writes per burst (one publish to this many subscribers).
    #[arg(long, default_value_t = 10)]
    pub burst: usize,
    /// Writes per second at each step (paced); 0 = as fast as the sender can.
    #[arg(long, value_delimiter = ',', default_value = "40000,80000,120000,0")]
    pub rates: Vec<u64>,
    #[arg(long, default_value_t = 5.0)]
    pub step_secs: f64,
    /// Core of the sender (where the server runs in the other benchmarks).
    #[arg(long, default_value_t = 0)]
    pub sender_core: usize,
    /// Core of the receiver (the load generator's core).
    #[arg(long, default_value_t = 1)]
    pub receiver_core: usize,
}

#[derive(Debug, Serialize)]
struct Step {
    target_rate: u64,
    writes: u64,
    achieved_rate: f64,
    sender_system_us_per_write: f64,
    sender_user_us_per_write: f64,
    received_bytes: u64,
}

pub async fn run(target: &Target, a: SendFloorArgs) -> Result<Record> {
    if a.connections == 0 || a.burst == 0 || a.payload_bytes == 0 {
        bail!("--connections, --burst and --payload-bytes must be positive");
    }
    let method = format!(
        "No server: {n} loopback TCP socket pairs (TCP_NODELAY). A sender thread pinned to core \
         {sc} writes {b} bytes per socket round-robin, in bursts of {burst} writes, paced to each \
         step's rate (0 = flat out; paced steps sleep between bursts, as a server waits in epoll) \
         for {secs} s; a receiver thread pinned to core {rc} drains every socket. Result: the \
         sender thread's system CPU per write (getrusage RUSAGE_THREAD, the kernel's tick-sampled \
         share), the kernel's cost of one delivery sent as one write.",
        n = a.connections,
        sc = a.sender_core,
        b = a.payload_bytes,
        burst = a.burst,
        secs = a.step_secs,
        rc = a.receiver_core,
    );
    let mut rec = Record::new(target, "send-floor", method, serde_json::to_value(&a)?);
    rec.print_method();
    let limit = procfs::raise_nofile_limit()?;
    // Both ends of every pair live in this process.
    if (2 * a.connections + 64) as u64 > limit {
        bail!(
            "{} socket pairs need {} file descriptors; the open-files limit is {limit}: use -n {} or less",
            a.connections,
            2 * a.connections + 64,
            (limit.saturating_sub(64)) / 2
        );
    }
    let a2 = a.clone();
    let steps = tokio::task::spawn_blocking(move || measure(&a2))
        .await
        .context("send-floor thread")??;
    for s in &steps {
        let rate = if s.target_rate == 0 {
            "flat out".to_string()
        } else {
            format!("{}/s", s.target_rate)
        };
        println!(
            "step {rate}: {} writes at {:.0}/s, kernel {:.2} us/write (user {:.2}), {} bytes received",
            s.writes,
            s.achieved_rate,
            s.sender_system_us_per_write,
            s.sender_user_us_per_write,
            s.received_bytes
        );
        let name = if s.target_rate == 0 {
            "kernel CPU per write, flat out".to_string()
        } else {
            format!("kernel CPU per write at {} writes/s", s.target_rate)
        };
        rec.metric(&name, "us", Some(s.sender_system_us_per_write), false);
    }
    rec.details = json!({ "steps": steps });
    rec.print_summary();
    Ok(rec)
}

fn measure(a: &SendFloorArgs) -> Result<Vec<Step>> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind")?;
    let addr = listener.local_addr()?;
    let received = Arc::new(AtomicU64::new(0));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
    let receiver = {
        let (n, core) = (a.connections, a.receiver_core);
        let received = received.clone();
        std::thread::spawn(move || receive(addr, n, core, &received, ready_tx))
    };
    let mut senders = Vec::with_capacity(a.connections);
    for _ in 0..a.connections {
        let (s, _) = listener.accept().context("accept")?;
        s.set_nodelay(true)?;
        senders.push(s);
    }
    ready_rx
        .recv()
        .context("receiver thread ended before connecting")??;
    pin_to(a.sender_core)?;
    let payload = vec![b'x'; a.payload_bytes];
    let mut next = 0usize;
    let mut steps = Vec::new();
    for &rate in &a.rates {
        let before_bytes = received.load(Ordering::Relaxed);
        let (u0, s0) = thread_cpu_us()?;
        let start = Instant::now();
        let end = start + Duration::from_secs_f64(a.step_secs);
        let mut writes = 0u64;
        while Instant::now() < end {
            if rate > 0 {
                // Sleep until this burst's slot, as a server waits in epoll between publishes.
                // (Spinning would also skew the tick-sampled user/system split.) Slots are
                // absolute, so a late wake-up is caught up by the next bursts.
                let due = start + Duration::from_secs_f64(writes as f64 / rate as f64);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
            }
            for _ in 0..a.burst {
                senders[next]
                    .write_all(&payload)
                    .context("write to a loopback socket")?;
                next = (next + 1) % senders.len();
                writes += 1;
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        let (u1, s1) = thread_cpu_us()?;
        // Let the receiver drain this step before the next one starts.
        std::thread::sleep(Duration::from_millis(500));
        steps.push(Step {
            target_rate: rate,
            writes,
            achieved_rate: writes as f64 / elapsed,
            sender_system_us_per_write: (s1 - s0) as f64 / writes.max(1) as f64,
            sender_user_us_per_write: (u1 - u0) as f64 / writes.max(1) as f64,
            received_bytes: received.load(Ordering::Relaxed) - before_bytes,
        });
    }
    // Closing the senders ends every receiving task.
    drop(senders);
    receiver
        .join()
        .map_err(|_| anyhow::anyhow!("receiver thread panicked"))??;
    Ok(steps)
}

/// Connects `n` sockets and drains them on a current-thread runtime pinned to `core`.
fn receive(
    addr: std::net::SocketAddr,
    n: usize,
    core: usize,
    received: &Arc<AtomicU64>,
    ready: std::sync::mpsc::Sender<Result<()>>,
) -> Result<()> {
    pin_to(core)?;
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        match TcpStream::connect(addr) {
            Ok(s) => streams.push(s),
            Err(e) => {
                let _ = ready.send(Err(anyhow::anyhow!("connect {addr}: {e}")));
                bail!("connect failed");
            }
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let _ = ready.send(Ok(()));
    rt.block_on(async {
        let mut tasks = Vec::with_capacity(n);
        for s in streams {
            s.set_nonblocking(true)?;
            let mut s = tokio::net::TcpStream::from_std(s)?;
            let received = received.clone();
            tasks.push(tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(k) = s.read(&mut buf).await {
                    if k == 0 {
                        break;
                    }
                    received.fetch_add(k as u64, Ordering::Relaxed);
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        anyhow::Ok(())
    })?;
    Ok(())
}

fn pin_to(core: usize) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET stays in bounds for core < CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!(
                "pinning to core {core}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

/// This thread's (user, system) CPU in microseconds.
fn thread_cpu_us() -> Result<(u64, u64)> {
    // SAFETY: ru is a valid, writable rusage.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_THREAD, &mut ru) != 0 {
            bail!("getrusage: {}", std::io::Error::last_os_error());
        }
        ru
    };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Ok((us(ru.ru_utime), us(ru.ru_stime)))
}
