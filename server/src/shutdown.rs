//! Lifecycle: starting -> ready -> draining. Draining flips readiness to 503 and refuses new
//! upgrades at once; sockets are closed with 4200 only after the grace period, so load
//! balancers stop routing here before clients reconnect elsewhere.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Starting = 0,
    Ready = 1,
    Draining = 2,
}

pub struct Lifecycle {
    phase: AtomicU8,
    /// Fires when sockets must close (end of the grace period).
    close_sockets: watch::Sender<bool>,
    /// Fires when background tasks and listeners must stop.
    stop: watch::Sender<bool>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            phase: AtomicU8::new(Phase::Starting as u8),
            close_sockets: watch::channel(false).0,
            stop: watch::channel(false).0,
        }
    }
}

impl Lifecycle {
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Starting,
            1 => Phase::Ready,
            _ => Phase::Draining,
        }
    }

    pub fn set_ready(&self) {
        let _ = self.phase.compare_exchange(
            Phase::Starting as u8,
            Phase::Ready as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    pub fn is_draining(&self) -> bool {
        self.phase() == Phase::Draining
    }

    pub fn close_sockets_signal(&self) -> watch::Receiver<bool> {
        self.close_sockets.subscribe()
    }

    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Drains: readiness 503 now, sockets closed (4200) after `grace`, then everything stops.
    pub async fn drain(&self, grace: Duration) {
        if self.phase.swap(Phase::Draining as u8, Ordering::AcqRel) == Phase::Draining as u8 {
            return;
        }
        tracing::info!(
            grace_secs = grace.as_secs_f64(),
            "draining: readiness is 503, new connections refused"
        );
        tokio::time::sleep(grace).await;
        tracing::info!("closing sockets with 4200");
        self.close_sockets.send_replace(true);
        // Let connection tasks send their close frames before listeners stop.
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.stop.send_replace(true);
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn termination_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
