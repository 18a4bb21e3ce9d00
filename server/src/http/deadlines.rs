//! Time limits for plain HTTP connections on the main port, so a client that sends a request head
//! byte by byte (slow-loris), never finishes a body, or parks an idle keep-alive connection cannot
//! hold a connection (and a file descriptor) forever.
//!
//! hyper's own `header_read_timeout` arms a timer for every request head; at tens of thousands of
//! publishes per second that cost ~7% of the HTTP API's throughput. Here a connection records
//! what it is waiting for in a few atomics (no timer per request), and one timer per connection
//! is re-armed lazily: when it fires, it compares the recorded phase against its limit and either
//! ends the connection or sleeps until the phase's deadline. Upgraded (WebSocket) connections
//! leave this guard when hyper hands the stream over; their liveness is the protocol's pings.

use std::io;
use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use sockudo_config::HttpApiConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The limits; `None` is no limit for that phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// From a request's first byte (or from accept, for the first request) to its complete head.
    pub header_read: Option<Duration>,
    /// From the end of a response to the first byte of the next request.
    pub keep_alive: Option<Duration>,
    /// From a complete head to the response: reading the body and running the handler.
    pub request: Option<Duration>,
}

impl Deadlines {
    pub fn from_config(c: &HttpApiConfig) -> Self {
        let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        Deadlines {
            header_read: secs(c.header_read_timeout_secs),
            keep_alive: secs(c.keep_alive_timeout_secs),
            request: secs(c.request_timeout_secs),
        }
    }

    fn limit(&self, phase: Phase) -> Option<Duration> {
        match phase {
            Phase::Head | Phase::FirstRequest => self.header_read,
            Phase::Idle => self.keep_alive,
            Phase::Request => self.request,
        }
    }
}

/// What a connection waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Accepted, no byte yet.
    FirstRequest,
    /// Some bytes of a request head, not all.
    Head,
    /// A request handed to the router and not answered yet.
    Request,
    /// Between requests (keep-alive), or writing a response the client does not read.
    Idle,
}

impl Phase {
    /// The label of the timeout metric.
    pub fn name(self) -> &'static str {
        match self {
            Phase::FirstRequest | Phase::Head => "header_read",
            Phase::Request => "request",
            Phase::Idle => "keep_alive",
        }
    }
}

/// Milliseconds on a process-wide monotonic clock (fits an atomic, unlike `Instant`).
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// One connection's phase and when it began. Written by the connection's own task only (the IO
/// and the service run inside hyper's connection future), so relaxed atomics suffice.
#[derive(Debug)]
pub struct Progress {
    since_ms: AtomicU64,
    in_flight: AtomicU32,
    head_started: AtomicBool,
    served: AtomicBool,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            since_ms: AtomicU64::new(now_ms()),
            in_flight: AtomicU32::new(0),
            head_started: AtomicBool::new(false),
            served: AtomicBool::new(false),
        }
    }
}

impl Progress {
    /// Bytes arrived. Only the first byte of a head between requests starts a phase.
    fn bytes_read(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0 && !self.head_started.load(Ordering::Relaxed)
        {
            self.head_started.store(true, Ordering::Relaxed);
            self.since_ms.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// hyper parsed a head and calls the service.
    pub fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(false, Ordering::Relaxed);
        self.since_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// The service answered (hyper writes the response from here on).
    pub fn request_finished(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.served.store(true, Ordering::Relaxed);
        self.since_ms.store(now_ms(), Ordering::Relaxed);
    }

    pub fn phase(&self) -> Phase {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            Phase::Request
        } else if self.head_started.load(Ordering::Relaxed) {
            Phase::Head
        } else if self.served.load(Ordering::Relaxed) {
            Phase::Idle
        } else {
            Phase::FirstRequest
        }
    }

    /// What the connection's timer should do when it fires.
    pub fn check(&self, limits: &Deadlines) -> Verdict {
        let phase = self.phase();
        let Some(limit) = limits.limit(phase) else {
            return Verdict::Unlimited;
        };
        let deadline = self.since_ms.load(Ordering::Relaxed) + limit.as_millis() as u64;
        let now = now_ms();
        if now >= deadline {
            Verdict::Expired(phase)
        } else {
            Verdict::WaitMs(deadline - now)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Expired(Phase),
    /// Not yet: sleep this long and check again.
    WaitMs(u64),
    /// This phase has no limit: check again after a while (the phase may change).
    Unlimited,
}

/// How often a connection in a phase without a limit looks again.
const UNLIMITED_RECHECK: Duration = Duration::from_secs(1);

impl Verdict {
    /// How long the connection's timer sleeps before the next check.
    pub fn delay(self) -> Duration {
        match self {
            Verdict::Expired(_) => Duration::ZERO,
            Verdict::WaitMs(ms) => Duration::from_millis(ms),
            Verdict::Unlimited => UNLIMITED_RECHECK,
        }
    }
}

/// The TCP stream as hyper reads it: notes when a request head starts.
pub struct GuardedIo {
    tcp: TcpStream,
    progress: std::sync::Arc<Progress>,
}

impl GuardedIo {
    pub fn new(tcp: TcpStream, progress: std::sync::Arc<Progress>) -> Self {
        GuardedIo { tcp, progress }
    }

    /// The stream, for a connection that leaves HTTP (WebSocket upgrade).
    pub fn into_tcp(self) -> TcpStream {
        self.tcp
    }
}

impl AsyncRead for GuardedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.progress.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Deadlines = Deadlines {
        header_read: Some(Duration::from_secs(10)),
        keep_alive: Some(Duration::from_secs(75)),
        request: None,
    };

    #[test]
    fn phases_follow_a_request() {
        let p = Progress::default();
        assert_eq!(p.phase(), Phase::FirstRequest);
        p.bytes_read();
        assert_eq!(p.phase(), Phase::Head);
        p.request_started();
        assert_eq!(p.phase(), Phase::Request);
        // Body bytes of the request in flight do not start a head.
        p.bytes_read();
        assert_eq!(p.phase(), Phase::Request);
        p.request_finished();
        assert_eq!(p.phase(), Phase::Idle);
        p.bytes_read();
        assert_eq!(p.phase(), Phase::Head);
    }

    #[test]
    fn check_uses_the_phase_limit() {
        let p = Progress::default();
        match p.check(&LIMITS) {
            Verdict::WaitMs(ms) => assert!((9_000..=10_000).contains(&ms), "{ms}"),
            other => panic!("{other:?}"),
        }
        p.request_started();
        assert_eq!(p.check(&LIMITS), Verdict::Unlimited);
        p.request_finished();
        match p.check(&LIMITS) {
            Verdict::WaitMs(ms) => assert!(ms > 70_000, "{ms}"),
            other => panic!("{other:?}"),
        }
        // A phase that began long ago has expired.
        p.since_ms.store(0, Ordering::Relaxed);
        let _ = now_ms();
        let zero = Deadlines {
            keep_alive: Some(Duration::ZERO),
            ..LIMITS
        };
        assert_eq!(p.check(&zero), Verdict::Expired(Phase::Idle));
    }
}
