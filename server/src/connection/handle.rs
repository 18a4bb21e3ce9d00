//! The shared face of a connection: what the hub and the HTTP API use to reach a socket.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

use super::outbox::{Outbox, Refused};
use crate::delta::SocketDelta;
use crate::protocol::ErrorCode;
use crate::socket_id::SocketId;

pub use super::frame::Frame;

/// How a frame reaches a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The sender writes it at once if the socket is idle (the cheapest path for one frame).
    Inline,
    /// The socket's own task writes it (see [`Delivery::for_fan_out`]).
    Queued,
}

/// Fan-outs to at most this many local sockets are written by the publisher itself. Larger ones
/// are handed to the sockets' tasks: a write costs the sender ~5-10 us of kernel time, so 5,000
/// inline writes would hold the publisher for tens of ms on one core, while the tasks write in
/// parallel on every core and, under load, combine several frames per `writev`.
pub const INLINE_FAN_OUT_MAX: usize = 64;

impl Delivery {
    pub fn for_fan_out(recipients: usize) -> Delivery {
        if recipients <= INLINE_FAN_OUT_MAX {
            Delivery::Inline
        } else {
            Delivery::Queued
        }
    }
}

/// Cheap handle to a live socket. Sends never block: a socket whose queue is full is a slow
/// consumer and is disconnected (4100) rather than slowing everyone else down.
pub struct ConnHandle {
    pub socket_id: SocketId,
    pub app_id: Arc<str>,
    /// Everything written to the socket goes through here (inline: it is what a delivery
    /// touches, so the handle and the outbox share cache lines).
    pub outbox: Outbox,
    /// Delta compression state (inactive until the client opts in).
    pub delta: SocketDelta,
    /// Close code requested by someone else (0: none).
    close_code: AtomicU16,
    /// The connection task, woken when a close is requested.
    task: AtomicWaker,
}

impl ConnHandle {
    /// A handle without a socket, whose queue holds at most `max_queued` frames (tests).
    pub fn new(socket_id: SocketId, app_id: Arc<str>, max_queued: usize) -> Self {
        Self::with_outbox(socket_id, app_id, Outbox::detached(max_queued))
    }

    pub fn with_outbox(socket_id: SocketId, app_id: Arc<str>, outbox: Outbox) -> Self {
        ConnHandle {
            socket_id,
            app_id,
            outbox,
            delta: SocketDelta::default(),
            close_code: AtomicU16::new(0),
            task: AtomicWaker::new(),
        }
    }

    /// Starts loading what [`ConnHandle::deliver`] reads. A fan-out calls it a few subscribers
    /// ahead: each subscriber's handle is cold in the cache (and often in the TLB), and issued
    /// early its misses overlap with the kernel's work on the previous sends instead of
    /// stalling each delivery in turn.
    pub fn prefetch(&self) {
        self.outbox.prefetch();
        self.delta.prefetch();
    }

    /// Sends one frame ([`Delivery::Inline`]); false when the socket is gone or was just
    /// disconnected as too slow.
    pub fn send(&self, frame: &Frame) -> bool {
        self.deliver(frame, Delivery::Inline)
    }

    pub fn deliver(&self, frame: &Frame, how: Delivery) -> bool {
        let accepted = match how {
            Delivery::Inline => self.outbox.send(frame),
            Delivery::Queued => self.outbox.enqueue(frame),
        };
        match accepted {
            Ok(()) => true,
            Err(Refused::Full) => {
                self.close(ErrorCode::OverCapacity);
                false
            }
            Err(Refused::Closed) => false,
        }
    }

    /// Asks the connection task to close the socket with `code` (the first request wins).
    pub fn close(&self, code: ErrorCode) {
        if self
            .close_code
            .compare_exchange(0, code.code(), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.task.wake();
        }
    }

    /// The close requested by [`ConnHandle::close`], once one is (registers the task's waker:
    /// cheap enough to poll on every wake-up of the connection task).
    pub fn poll_close(&self, cx: &mut Context<'_>) -> Poll<u16> {
        let code = self.close_code.load(Ordering::Acquire);
        if code != 0 {
            return Poll::Ready(code);
        }
        self.task.register(cx.waker());
        match self.close_code.load(Ordering::Acquire) {
            0 => Poll::Pending,
            code => Poll::Ready(code),
        }
    }
}
