//! A socket's queue of frames waiting to be written.
//!
//! The fan-out pushes one frame per subscriber per publish, so this is the hottest structure of
//! the server. A short uncontended mutex around a `VecDeque` costs a fraction of a general
//! channel (semaphore, block list, waker lists) and holds no memory while empty.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

use super::handle::Frame;

/// Why a frame was not queued.
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

pub struct Outbox {
    queue: Mutex<VecDeque<Frame>>,
    max: usize,
    closed: AtomicBool,
    /// The connection task, woken when the queue goes from empty to not empty.
    task: AtomicWaker,
}

impl Outbox {
    pub fn new(max: usize) -> Self {
        Outbox {
            queue: Mutex::new(VecDeque::new()),
            max: max.max(1),
            closed: AtomicBool::new(false),
            task: AtomicWaker::new(),
        }
    }

    pub fn push(&self, frame: Frame) -> Result<(), Refused> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Refused::Closed);
        }
        let was_empty = {
            let mut queue = self.queue.lock().expect("outbox lock");
            if queue.len() >= self.max {
                return Err(Refused::Full);
            }
            queue.push_back(frame);
            queue.len() == 1
        };
        // The task registers its waker before it looks at the queue, so waking only on the
        // empty -> not empty step loses no wake-up.
        if was_empty {
            self.task.wake();
        }
        Ok(())
    }

    /// The next frame, if one is queued.
    pub fn pop(&self) -> Option<Frame> {
        let mut queue = self.queue.lock().expect("outbox lock");
        let frame = queue.pop_front();
        if queue.is_empty() && queue.capacity() > KEEP_CAPACITY {
            queue.shrink_to(KEEP_CAPACITY);
        }
        frame
    }

    /// The next frame; registers the task's waker when there is none.
    pub fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Frame> {
        if let Some(f) = self.pop() {
            return Poll::Ready(f);
        }
        self.task.register(cx.waker());
        match self.pop() {
            Some(f) => Poll::Ready(f),
            None => Poll::Pending,
        }
    }

    /// Refuses further frames (the connection task ended) and drops the queued ones.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        *self.queue.lock().expect("outbox lock") = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    #[test]
    fn bounded_fifo_that_refuses_once_closed() {
        let o = Outbox::new(2);
        assert_eq!(o.push(Frame::from("a")), Ok(()));
        assert_eq!(o.push(Frame::from("b")), Ok(()));
        assert_eq!(o.push(Frame::from("c")), Err(Refused::Full));
        assert_eq!(o.pop().as_ref().map(Frame::as_str), Some("a"));
        assert_eq!(o.push(Frame::from("c")), Ok(()));
        assert_eq!(o.pop().as_ref().map(Frame::as_str), Some("b"));
        assert_eq!(o.pop().as_ref().map(Frame::as_str), Some("c"));
        assert_eq!(o.pop(), None);
        o.close();
        assert_eq!(o.push(Frame::from("d")), Err(Refused::Closed));
    }

    #[tokio::test]
    async fn a_push_wakes_the_waiting_task() {
        let o = std::sync::Arc::new(Outbox::new(8));
        let pusher = o.clone();
        let waiter = tokio::spawn(async move { poll_fn(|cx| o.poll_pop(cx)).await });
        tokio::task::yield_now().await;
        pusher.push(Frame::from("x")).unwrap();
        assert_eq!(waiter.await.unwrap().as_str(), "x");
    }
}
