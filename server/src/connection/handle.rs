//! The shared face of a connection: what the hub and the HTTP API use to reach a socket.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use std::task::{Context, Poll};

use axum::extract::ws::Utf8Bytes;
use futures_util::task::AtomicWaker;

use super::outbox::{Outbox, Refused};
use crate::delta::SocketDelta;
use crate::protocol::ErrorCode;
use crate::socket_id::SocketId;

/// A frame ready for the wire: serialised once, shared by every recipient (a cheap `Bytes` clone).
pub type Frame = Utf8Bytes;

/// Cheap handle to a live socket. Sends never block: a socket whose queue is full is a slow
/// consumer and is disconnected (4100) rather than slowing everyone else down.
pub struct ConnHandle {
    pub socket_id: SocketId,
    pub app_id: Arc<str>,
    /// Frames waiting for the connection task to write them.
    pub outbox: Outbox,
    /// Delta compression state (inactive until the client opts in).
    pub delta: SocketDelta,
    /// Close code requested by someone else (0: none).
    close_code: AtomicU16,
    /// The connection task, woken when a close is requested.
    task: AtomicWaker,
}

impl ConnHandle {
    /// A handle whose queue holds at most `max_queued` frames.
    pub fn new(socket_id: SocketId, app_id: Arc<str>, max_queued: usize) -> Self {
        ConnHandle {
            socket_id,
            app_id,
            outbox: Outbox::new(max_queued),
            delta: SocketDelta::default(),
            close_code: AtomicU16::new(0),
            task: AtomicWaker::new(),
        }
    }

    /// Queues a frame; false when the socket is gone or was just disconnected as too slow.
    pub fn send(&self, frame: &Frame) -> bool {
        match self.outbox.push(frame.clone()) {
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
