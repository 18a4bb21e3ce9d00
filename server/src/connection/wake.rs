//! Polls a connection's event sources only when they were woken.
//!
//! A connection task wakes mostly to write queued frames. Re-polling every other source on each
//! wake-up is costly: reading the WebSocket zero-fills tungstenite's read buffer and re-registers
//! wakers even when no byte arrived. A [`Gate`] gives its source its own waker, which records the
//! wake-up and then wakes the task, so the task polls that source only when it may make progress.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

struct Flag {
    /// The source may make progress: it woke, or last returned Ready.
    ready: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.store(true, Ordering::Release);
        self.task.wake();
    }
}

pub(super) struct Gate {
    flag: Arc<Flag>,
    waker: Waker,
}

impl Gate {
    /// A gate that polls its source on the first poll.
    pub(super) fn new() -> Self {
        let flag = Arc::new(Flag {
            ready: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        Gate {
            waker: Waker::from(flag.clone()),
            flag,
        }
    }

    /// Makes the next [`Gate::poll`] poll the source (e.g. after re-arming it).
    pub(super) fn open(&self) {
        self.flag.ready.store(true, Ordering::Release);
    }

    /// Runs `poll` with the gate's waker if the source woke since it last returned Pending;
    /// otherwise returns Pending at once. The task's waker is woken by the source's wake-ups.
    pub(super) fn poll<T>(
        &self,
        cx: &mut Context<'_>,
        poll: impl FnOnce(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        self.flag.task.register(cx.waker());
        if !self.flag.ready.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let result = poll(&mut Context::from_waker(&self.waker));
        if result.is_ready() {
            // A source that produced an item may have more ready without waking again.
            self.flag.ready.store(true, Ordering::Release);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    #[tokio::test]
    async fn polls_only_after_a_wake_up() {
        let gate = Gate::new();
        let polls = std::cell::Cell::new(0);
        let saved: std::cell::RefCell<Option<Waker>> = Default::default();
        let poll_source = |cx: &mut Context<'_>| {
            polls.set(polls.get() + 1);
            *saved.borrow_mut() = Some(cx.waker().clone());
            Poll::<()>::Pending
        };
        poll_fn(|cx| {
            assert!(gate.poll(cx, poll_source).is_pending());
            assert!(gate.poll(cx, poll_source).is_pending());
            Poll::Ready(())
        })
        .await;
        assert_eq!(polls.get(), 1, "not polled again before a wake-up");
        saved.borrow().as_ref().unwrap().wake_by_ref();
        poll_fn(|cx| {
            assert!(gate.poll(cx, poll_source).is_pending());
            Poll::Ready(())
        })
        .await;
        assert_eq!(polls.get(), 2, "polled after the wake-up");
        // A Ready result keeps the gate open: the source may hold more items.
        poll_fn(|cx| {
            saved.borrow().as_ref().unwrap().wake_by_ref();
            assert!(gate.poll(cx, |_| Poll::Ready(1)).is_ready());
            assert!(gate.poll(cx, |_| Poll::Ready(2)).is_ready());
            Poll::Ready(())
        })
        .await;
    }
}
