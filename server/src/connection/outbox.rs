//! A socket's writer: the frames on their way to one client, in order.
//!
//! Delivering a frame is the hottest path of the server. When the socket is idle (nothing
//! queued), the sender writes the frame to the socket itself: one `send`, no task wake-up, no
//! copy. When the socket is busy (a partial write, a full kernel buffer, or frames handed over
//! with [`Outbox::enqueue`]), frames wait in a queue that the connection task writes as soon as
//! the socket is writable, many per `writev`. Both paths hold one short mutex, so the bytes of
//! two frames never interleave and frames leave in the order they were accepted.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use socket2::SockRef;
use tokio::net::TcpStream;

use super::frame::Frame;
use crate::prefetch::prefetch_value;

/// Why a frame was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The queue holds its maximum: the socket is too slow.
    Full,
    /// The connection is gone.
    Closed,
}

/// Queued frames beyond this capacity are released once the queue empties again, so a burst
/// does not pin memory on an idle connection.
const KEEP_CAPACITY: usize = 64;
/// Frames per `writev`: bounds the stack array of slices.
const MAX_BATCH: usize = 64;

pub struct Outbox {
    state: Mutex<State>,
    /// Inline rather than behind tokio's split halves: one cache line fewer per delivery. The
    /// connection task reads from it too (see `upgrade::SocketIo`).
    socket: Option<TcpStream>,
    max: usize,
    closed: AtomicBool,
    /// The connection task, woken when it has queued frames to write or a write failed.
    task: AtomicWaker,
}

struct State {
    /// Wire bytes waiting, oldest first.
    queue: VecDeque<Bytes>,
    /// Bytes of the front entry already written.
    written: usize,
    /// False once closed (and always for a detached outbox).
    open: bool,
    /// A write failed; the connection task ends the connection.
    failed: Option<io::Error>,
}

impl Outbox {
    /// An outbox that writes to `socket`, queueing at most `max` frames while it is busy.
    pub fn attached(socket: TcpStream, max: usize) -> Self {
        Self::with_socket(Some(socket), max)
    }

    /// An outbox without a socket: every frame waits in the queue (for tests of the callers).
    pub fn detached(max: usize) -> Self {
        Self::with_socket(None, max)
    }

    fn with_socket(socket: Option<TcpStream>, max: usize) -> Self {
        Outbox {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                written: 0,
                open: socket.is_some(),
                failed: None,
            }),
            socket,
            max: max.max(1),
            closed: AtomicBool::new(false),
            task: AtomicWaker::new(),
        }
    }

    /// Writes `frame` now if the socket is idle; otherwise queues it behind the others.
    pub fn send(&self, frame: &Frame) -> Result<(), Refused> {
        self.accept(frame.wire(), true)
    }

    /// Queues `frame` for the connection task, even if the socket is idle. Large fan-outs use
    /// this: the socket tasks then write in parallel on every core and batch under load.
    pub fn enqueue(&self, frame: &Frame) -> Result<(), Refused> {
        self.accept(frame.wire(), false)
    }

    /// Asks the CPU to load the lines a delivery reads (see [`super::handle::ConnHandle::prefetch`]).
    pub(super) fn prefetch(&self) {
        prefetch_value(&self.closed);
        prefetch_value(&self.state);
        prefetch_value(&self.socket);
    }

    /// The socket, for the connection task's reads (None when detached).
    pub(super) fn socket(&self) -> Option<&TcpStream> {
        self.socket.as_ref()
    }

    /// Bytes the WebSocket layer writes itself (pongs, close frames), in order with the frames.
    pub(super) fn send_raw(&self, bytes: Bytes) -> Result<(), Refused> {
        self.accept(&bytes, true)
    }

    fn accept(&self, wire: &Bytes, write_now: bool) -> Result<(), Refused> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Refused::Closed);
        }
        let mut state = self.state.lock().expect("outbox lock");
        if state.failed.is_some() {
            return Err(Refused::Closed);
        }
        if write_now && state.queue.is_empty() {
            let Some(socket) = self.socket.as_ref().filter(|_| state.open) else {
                return Self::push(&mut state, &self.task, wire, self.max);
            };
            // The socket's `send` without tokio's readiness check: that check reads another
            // cache line per socket, a measurable share of a delivery's user time. A WouldBlock
            // here leaves tokio believing the socket writable; the task's first write then
            // meets the WouldBlock itself and waits for readiness as usual.
            match SockRef::from(socket).send_with_flags(wire, libc::MSG_NOSIGNAL) {
                Ok(n) if n == wire.len() => return Ok(()),
                Ok(n) => {
                    // The rest leaves when the socket is writable again, before any later frame.
                    state.queue.push_back(wire.clone());
                    state.written = n;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    state.queue.push_back(wire.clone());
                }
                Err(e) => {
                    self.fail(&mut state, e);
                    return Err(Refused::Closed);
                }
            }
            drop(state);
            self.task.wake();
            return Ok(());
        }
        Self::push(&mut state, &self.task, wire, self.max)
    }

    /// Records a failed write: nothing more is accepted, and the task learns why.
    fn fail(&self, state: &mut State, e: io::Error) {
        self.closed.store(true, Ordering::Release);
        state.failed = Some(e);
        self.task.wake();
    }

    fn push(
        state: &mut State,
        task: &AtomicWaker,
        wire: &Bytes,
        max: usize,
    ) -> Result<(), Refused> {
        if state.queue.len() >= max {
            return Err(Refused::Full);
        }
        state.queue.push_back(wire.clone());
        // The task registers its waker before it looks at the queue, so waking only on the
        // empty -> not empty step loses no wake-up.
        if state.queue.len() == 1 {
            task.wake();
        }
        Ok(())
    }

    /// For the connection task: writes queued frames while the socket takes them. Pending when
    /// there is nothing (more) to write for now; Ready only with the error of a failed write.
    pub fn poll_write(&self, cx: &mut Context<'_>) -> Poll<io::Error> {
        match self.drive(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(e),
            _ => Poll::Pending,
        }
    }

    /// Waits until every accepted frame is written (or writing failed, or the outbox closed).
    pub async fn flushed(&self) {
        poll_fn(|cx| self.drive(cx).map(|_| ())).await
    }

    /// Ready(Ok) once the queue is empty; Pending while the socket is not writable.
    fn drive(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.task.register(cx.waker());
        let mut state = self.state.lock().expect("outbox lock");
        loop {
            if let Some(e) = state.failed.take() {
                // Later calls see the outbox as closed rather than failing twice.
                state.open = false;
                return Poll::Ready(Err(e));
            }
            if state.queue.is_empty() {
                if state.queue.capacity() > KEEP_CAPACITY {
                    state.queue.shrink_to(KEEP_CAPACITY);
                }
                return Poll::Ready(Ok(()));
            }
            let State {
                queue,
                written,
                open,
                failed,
            } = &mut *state;
            let Some(socket) = self.socket.as_ref().filter(|_| *open) else {
                // Detached (tests) or closed: nothing will write these.
                return Poll::Ready(Ok(()));
            };
            let mut slices = [IoSlice::new(&[]); MAX_BATCH];
            let mut count = 0;
            for (i, wire) in queue.iter().take(MAX_BATCH).enumerate() {
                slices[i] = IoSlice::new(if i == 0 { &wire[*written..] } else { wire });
                count += 1;
            }
            match socket.try_write_vectored(&slices[..count]) {
                Ok(0) => *failed = Some(io::ErrorKind::WriteZero.into()),
                Ok(n) => advance(queue, written, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match socket.poll_write_ready(cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(e)) => *failed = Some(e),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Err(e) => *failed = Some(e),
            }
            if failed.is_some() {
                self.closed.store(true, Ordering::Release);
            }
        }
    }

    /// Drops the queued frames that have not started to leave (a too-slow consumer is being
    /// closed); a partly written one is kept so the stream stays well framed.
    pub fn discard_queued(&self) {
        let mut state = self.state.lock().expect("outbox lock");
        let keep = usize::from(state.written > 0);
        state.queue.truncate(keep);
    }

    /// Refuses further frames, drops the queued ones and closes the socket's sending side.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let mut state = self.state.lock().expect("outbox lock");
        state.queue = VecDeque::new();
        state.written = 0;
        if std::mem::replace(&mut state.open, false)
            && let Some(socket) = &self.socket
        {
            // The FIN; the descriptor itself closes when the last handle is dropped.
            let _ = SockRef::from(socket).shutdown(std::net::Shutdown::Write);
        }
    }

    /// The next queued frame's wire bytes (tests of callers use detached outboxes).
    #[cfg(test)]
    pub fn pop_wire(&self) -> Option<Bytes> {
        self.state.lock().expect("outbox lock").queue.pop_front()
    }

    /// The next queued text frame's payload.
    #[cfg(test)]
    pub fn pop(&self) -> Option<String> {
        let wire = self.pop_wire()?;
        let start = match wire[1] & 0x7f {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        Some(String::from_utf8(wire[start..].to_vec()).expect("text frame"))
    }
}

/// Removes the `n` bytes just written from the front of the queue.
fn advance(queue: &mut VecDeque<Bytes>, written: &mut usize, mut n: usize) {
    while n > 0 {
        let front_left = queue[0].len() - *written;
        if n < front_left {
            *written += n;
            return;
        }
        n -= front_left;
        queue.pop_front();
        *written = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    fn wire(s: &str) -> Frame {
        Frame::from(s)
    }

    #[test]
    fn detached_is_a_bounded_fifo_that_refuses_once_closed() {
        let o = Outbox::detached(2);
        assert_eq!(o.send(&wire("a")), Ok(()));
        assert_eq!(o.enqueue(&wire("b")), Ok(()));
        assert_eq!(o.send(&wire("c")), Err(Refused::Full));
        assert_eq!(o.pop_wire(), Some(wire("a").wire().clone()));
        assert_eq!(o.send(&wire("c")), Ok(()));
        assert_eq!(o.pop_wire(), Some(wire("b").wire().clone()));
        assert_eq!(o.pop_wire(), Some(wire("c").wire().clone()));
        assert_eq!(o.pop_wire(), None);
        o.close();
        assert_eq!(o.send(&wire("d")), Err(Refused::Closed));
    }

    #[test]
    fn advance_pops_whole_entries_and_keeps_the_offset_of_a_partial_one() {
        let mut q: VecDeque<Bytes> = ["abc", "de", "fgh"].map(Bytes::from).into();
        let mut written = 1;
        advance(&mut q, &mut written, 2 + 2 + 1);
        assert_eq!(q, VecDeque::from([Bytes::from("fgh")]));
        assert_eq!(written, 1);
    }

    async fn socket_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (server, client)
    }

    /// A reader that stops reading makes the writes block; everything still arrives, in order
    /// and whole, once it reads again, whether written at once, queued or both.
    #[tokio::test]
    async fn frames_stay_whole_and_in_order_through_a_full_socket() {
        let (write, mut client) = socket_pair().await;
        let outbox = std::sync::Arc::new(Outbox::attached(write, 100_000));
        let frames: Vec<Frame> = (0..8000)
            .map(|i| Frame::text(format!("{i:05}-{}", "x".repeat(4000))))
            .collect();
        for (i, f) in frames.iter().enumerate() {
            let r = if i % 3 == 0 {
                outbox.enqueue(f)
            } else {
                outbox.send(f)
            };
            assert_eq!(r, Ok(()));
        }
        assert!(
            !outbox.state.lock().unwrap().queue.is_empty(),
            "32 MB cannot all fit in the socket buffers: some frames wait"
        );
        let writer = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.flushed().await })
        };
        let mut expected = Vec::new();
        for f in &frames {
            expected.extend_from_slice(f.wire());
        }
        let mut got = vec![0; expected.len()];
        client.read_exact(&mut got).await.unwrap();
        writer.await.unwrap();
        assert!(got == expected, "the byte stream is the frames in order");
    }

    #[tokio::test]
    async fn a_write_to_a_reset_socket_fails_the_outbox() {
        let (write, client) = socket_pair().await;
        // Closing with unread data makes the kernel reset the connection.
        client.set_zero_linger().unwrap();
        drop(client);
        let outbox = Outbox::attached(write, 8);
        let error = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                let _ = outbox.send(&wire("after the reset"));
                if let Poll::Ready(e) = poll_fn(|cx| Poll::Ready(outbox.poll_write(cx))).await {
                    break e;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the reset is noticed");
        assert!(
            matches!(
                error.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ),
            "{error}"
        );
        assert_eq!(outbox.send(&wire("more")), Err(Refused::Closed));
    }
}
