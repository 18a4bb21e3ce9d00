//! Pusher protocol WebSocket subscribers: many connections on one thread, each subscribed to one
//! public channel, timing every benchmark message it receives.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::raw_ws::{Frame, RawWs};
use crate::stats::{lock, now_us, sample_buffer};

/// Event name of every benchmark message.
pub const EVENT: &str = "bench";

/// Where subscribers connect.
#[derive(Clone)]
pub struct WsTarget {
    pub addr: SocketAddr,
    pub key: String,
    /// Local addresses to spread connections over (127.0.0.x), to get past ~28k ephemeral
    /// ports per address pair. Empty: let the kernel choose.
    pub source_ips: Vec<Ipv4Addr>,
}

/// Counters shared by all connections and the driver. One thread, so the locks never contend.
#[derive(Default)]
pub struct Shared {
    /// Id of the current measurement step; messages of other steps are counted as late.
    pub step: AtomicU32,
    pub delivered: AtomicU64,
    pub late: AtomicU64,
    pub last_recv_us: AtomicU64,
    /// Silences between two deliveries this long or longer count as gaps (set per step).
    pub gap_threshold_us: AtomicU64,
    /// Gaps of the current step and their summed length.
    pub gaps: AtomicU64,
    pub gap_us: AtomicU64,
    /// Publish-to-receive latencies of the current step, in microseconds.
    pub latencies_us: Mutex<Vec<u32>>,
    pub ready: AtomicUsize,
    pub failed: AtomicUsize,
    /// Connections that were ready and then closed or errored before the end.
    pub dropped: AtomicUsize,
    pub first_error: Mutex<Option<String>>,
    /// Close codes seen on dropped connections (e.g. 4100 = slow consumer disconnected).
    pub close_codes: Mutex<BTreeMap<String, u64>>,
    /// Ready subscribers per channel index, to know how many deliveries a publish must make.
    pub subscribers: Mutex<Vec<u64>>,
    pub stopping: AtomicBool,
}

impl Shared {
    pub fn new(channels: usize) -> Arc<Self> {
        let s = Shared::default();
        *lock(&s.subscribers) = vec![0; channels];
        Arc::new(s)
    }

    /// Starts a new step: clears the counters and readies room for `expected` samples.
    /// `gap_threshold_us`: see [`Shared::gaps`].
    pub fn begin_step(&self, id: u32, expected: usize, gap_threshold_us: u64) {
        self.step.store(id, Ordering::SeqCst);
        self.delivered.store(0, Ordering::SeqCst);
        self.late.store(0, Ordering::SeqCst);
        self.last_recv_us.store(0, Ordering::SeqCst);
        self.gap_threshold_us
            .store(gap_threshold_us, Ordering::SeqCst);
        self.gaps.store(0, Ordering::SeqCst);
        self.gap_us.store(0, Ordering::SeqCst);
        sample_buffer(&mut lock(&self.latencies_us), expected);
    }

    fn note_error(&self, e: &anyhow::Error) {
        let mut first = lock(&self.first_error);
        if first.is_none() {
            *first = Some(format!("{e:#}"));
        }
    }

    pub fn close_codes(&self) -> BTreeMap<String, u64> {
        lock(&self.close_codes).clone()
    }

    fn on_text(&self, text: &str) {
        self.received_at(text, now_us());
    }

    /// Times a frame received at `now` (microseconds of [`now_us`]).
    fn received_at(&self, text: &str, now: u64) {
        let Some((sent_us, _seq, step)) = parse_marker(text) else {
            return;
        };
        if step != self.step.load(Ordering::Relaxed) {
            self.late.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.delivered.fetch_add(1, Ordering::Relaxed);
        let previous = self.last_recv_us.fetch_max(now, Ordering::Relaxed);
        // Nothing arrived for a while although publishes go out many times a millisecond:
        // the publisher, the server or the generator stood still. Counting these tells a
        // stalled step from a slow one.
        if previous != 0
            && now.saturating_sub(previous) >= self.gap_threshold_us.load(Ordering::Relaxed)
        {
            self.gaps.fetch_add(1, Ordering::Relaxed);
            self.gap_us.fetch_add(now - previous, Ordering::Relaxed);
        }
        let lat = now.saturating_sub(sent_us).min(u32::MAX as u64) as u32;
        lock(&self.latencies_us).push(lat);
    }
}

/// The message payload: a marker with the send time, sequence and step, padded with 'x' to
/// `size` bytes. It is found again by substring search, so receiving costs no JSON parse.
pub fn payload(sent_us: u64, seq: u64, step: u32, size: usize) -> String {
    let mut s = format!("~t{sent_us}~s{seq}~p{step}~");
    while s.len() < size {
        s.push('x');
    }
    s
}

/// Finds `~t<us>~s<seq>~p<step>~` in a received frame.
pub fn parse_marker(text: &str) -> Option<(u64, u64, u32)> {
    let rest = &text[text.find("~t")? + 2..];
    let (t, rest) = rest.split_once("~s")?;
    let (s, rest) = rest.split_once("~p")?;
    let (p, _) = rest.split_once('~')?;
    Some((t.parse().ok()?, s.parse().ok()?, p.parse().ok()?))
}

async fn tcp_connect(target: &WsTarget, index: usize) -> Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    if !target.source_ips.is_empty() {
        let ip = target.source_ips[index % target.source_ips.len()];
        // Choose the local port at connect() time, per (src, dst) pair, instead of reserving
        // one at bind() time: otherwise each source IP is capped at the ephemeral range
        // minus ports in TIME_WAIT from earlier runs.
        set_bind_no_port(&sock);
        sock.bind(SocketAddr::V4(SocketAddrV4::new(ip, 0)))
            .with_context(|| format!("bind {ip}"))?;
    }
    let stream = sock.connect(target.addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn set_bind_no_port(sock: &TcpSocket) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: valid fd and option pointer/length. Failure only loses the optimisation.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Opens one connection and subscribes it: waits for `pusher:connection_established`, sends
/// `pusher:subscribe`, waits for `pusher_internal:subscription_succeeded`.
async fn open(target: &WsTarget, index: usize, channel: &str) -> Result<RawWs> {
    let stream = tcp_connect(target, index).await.context("TCP connect")?;
    let path = format!(
        "/app/{}?protocol=7&client=sockudo-bench&version=0.1.0&flash=false",
        target.key
    );
    let mut ws = RawWs::handshake(stream, &target.addr.to_string(), &path)
        .await
        .context("WebSocket handshake")?;
    wait_for(&mut ws, "pusher:connection_established").await?;
    let sub = serde_json::json!({"event": "pusher:subscribe", "data": {"channel": channel}});
    ws.send_text(&sub.to_string()).await?;
    wait_for(&mut ws, "pusher_internal:subscription_succeeded").await?;
    Ok(ws)
}

async fn wait_for(ws: &mut RawWs, event: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .with_context(|| format!("no {event} within 30 s"))??;
        match frame {
            Frame::Text(t) if t.contains(event) => return Ok(()),
            Frame::Text(t) if t.contains("pusher:error") => {
                bail!("server error while waiting for {event}: {t}")
            }
            Frame::Text(_) => {}
            Frame::Close(code) => bail!("closed ({code}) while waiting for {event}"),
        }
    }
}

/// Receives until `stop` flips, then sends a close frame.
async fn receive(mut ws: RawWs, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let ping_reply = r#"{"event":"pusher:pong","data":{}}"#;
    // One wait on the stop signal for the connection's life: re-creating it for every frame
    // re-registers with the signal each time, a measurable share of the generator's core.
    let stopped = stop.changed();
    tokio::pin!(stopped);
    loop {
        let mut pong = false;
        tokio::select! {
            biased;
            _ = &mut stopped => {
                // Best effort: the server may already be gone.
                let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(1000)).await;
                return;
            }
            frame = ws.next() => match frame {
                Ok(Frame::Text(t)) => {
                    if t.contains("pusher:ping") {
                        pong = true;
                    } else {
                        shared.on_text(t);
                    }
                }
                Ok(Frame::Close(code)) => {
                    dropped(&shared, code.to_string());
                    return;
                }
                Err(e) => {
                    dropped(&shared, format!("error: {e:#}"));
                    return;
                }
            }
        }
        if pong {
            // Keeps idle connections alive past the server's activity timeout.
            let _ = ws.send_text(ping_reply).await;
        }
    }
}

fn dropped(shared: &Shared, why: String) {
    if shared.stopping.load(Ordering::Relaxed) {
        return;
    }
    shared.dropped.fetch_add(1, Ordering::Relaxed);
    *lock(&shared.close_codes).entry(why).or_default() += 1;
}

/// A set of subscribed connections that can be grown and then stopped.
pub struct Pool {
    pub target: WsTarget,
    pub shared: Arc<Shared>,
    stop_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    gate: Arc<Semaphore>,
    channel_names: Arc<Vec<String>>,
}

impl Pool {
    /// `connect_concurrency` caps handshakes in flight, so a burst of thousands of SYNs does
    /// not overflow the server's accept backlog.
    pub fn new(target: WsTarget, channel_names: Vec<String>, connect_concurrency: usize) -> Pool {
        let (stop_tx, _) = watch::channel(false);
        Pool {
            target,
            shared: Shared::new(channel_names.len()),
            stop_tx,
            tasks: Vec::new(),
            gate: Arc::new(Semaphore::new(connect_concurrency.max(1))),
            channel_names: Arc::new(channel_names),
        }
    }

    /// Opens connections until there are `total`; connection i subscribes to channel
    /// i mod C. Returns when all have subscribed or failed, or after `timeout`.
    pub async fn grow_to(&mut self, total: usize, timeout: Duration) -> Result<()> {
        let start = self.tasks.len();
        for i in start..total {
            let target = self.target.clone();
            let shared = self.shared.clone();
            let stop = self.stop_tx.subscribe();
            let gate = self.gate.clone();
            let names = self.channel_names.clone();
            self.tasks.push(tokio::spawn(async move {
                let ch = i % names.len();
                let opened = {
                    let _permit = gate.acquire().await;
                    open(&target, i, &names[ch]).await
                };
                match opened {
                    Ok(ws) => {
                        lock(&shared.subscribers)[ch] += 1;
                        shared.ready.fetch_add(1, Ordering::SeqCst);
                        receive(ws, shared, stop).await;
                    }
                    Err(e) => {
                        shared.note_error(&e);
                        shared.failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let done = self.shared.ready.load(Ordering::SeqCst)
                + self.shared.failed.load(Ordering::SeqCst);
            if done >= total || tokio::time::Instant::now() >= deadline {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Closes every connection (close frame), waiting at most a few seconds.
    pub async fn stop(mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let _ = self.stop_tx.send(true);
        let all = futures_util::future::join_all(self.tasks.iter_mut());
        if tokio::time::timeout(Duration::from_secs(10), all)
            .await
            .is_err()
        {
            for t in &self.tasks {
                t.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_round_trip() {
        let p = payload(123456, 7, 3, 200);
        assert_eq!(p.len(), 200);
        let frame = format!(r#"{{"event":"bench","channel":"c","data":"{p}"}}"#);
        assert_eq!(parse_marker(&frame), Some((123456, 7, 3)));
    }

    #[test]
    fn silences_at_or_over_the_threshold_count_as_gaps() {
        let shared = Shared::new(1);
        shared.begin_step(1, 8, 3000);
        let frame = |sent: u64| format!(r#"{{"data":"{}"}}"#, payload(sent, 0, 1, 50));
        for at in [1_000, 2_000, 6_000, 7_000, 10_000, 10_500] {
            shared.received_at(&frame(at - 100), at);
        }
        // 2,000 -> 6,000 (4 ms) and 7,000 -> 10,000 (exactly 3 ms); 1 ms and 0.5 ms are not gaps.
        assert_eq!(shared.gaps.load(Ordering::SeqCst), 2);
        assert_eq!(shared.gap_us.load(Ordering::SeqCst), 7_000);
        assert_eq!(shared.delivered.load(Ordering::SeqCst), 6);
        // A new step starts from no gaps, and its first delivery is not measured against the
        // last one of the step before.
        shared.begin_step(2, 8, 3000);
        shared.received_at(
            &format!(r#"{{"data":"{}"}}"#, payload(50_000, 0, 2, 50)),
            60_000,
        );
        assert_eq!(shared.gaps.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn marker_absent() {
        assert_eq!(parse_marker(r#"{"event":"pusher:pong"}"#), None);
    }
}
