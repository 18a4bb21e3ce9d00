//! Sequence numbers per stream (app, channel, conflation key), counted node-locally or
//! cluster-wide. The publishing node asks once per publish; `seq % full_message_interval == 0`
//! makes the message a scheduled full message on every node.

pub mod local;
pub mod nats;
pub mod redis;

use async_trait::async_trait;

use crate::adapter::BackendHealth;

/// One delta stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamKey<'a> {
    pub app_id: &'a str,
    pub channel: &'a str,
    pub conflation_key: Option<&'a str>,
}

#[derive(Debug, thiserror::Error)]
pub enum CoordinationError {
    #[error("coordination backend unreachable: {0}")]
    Unavailable(String),
    #[error("coordination backend answered badly: {0}")]
    Protocol(String),
    #[error("too many concurrent updates of {key} ({attempts} attempts)")]
    Contention { key: String, attempts: u32 },
    #[error("coordination timed out after {0} ms")]
    Timeout(u64),
}

#[async_trait]
pub trait Coordinator: Send + Sync {
    /// Driver name for logs, readiness and metrics.
    fn driver(&self) -> &'static str;

    /// The next sequence number of the stream: strictly increasing, no number given twice while
    /// the stream is active (idle streams expire and start again at 1).
    async fn next_seq(&self, key: StreamKey<'_>) -> Result<u64, CoordinationError>;

    /// Called after a call timed out (and was cancelled): drop connections that may be stale.
    async fn reset(&self) {}

    /// The backend's state as this coordinator's own connection sees it, kept current in the
    /// background from start-up (like the adapter's and cache's), so readiness reports a bad CA
    /// or bad credentials before the first publish. Reads state only: never connects.
    fn health(&self) -> BackendHealth {
        BackendHealth::Ok
    }
}

/// A stream's key in a backend that allows any bytes but separates the parts unambiguously:
/// `app`, `channel` and the conflation value with `%`, `:`, `{` and `}` percent-encoded.
pub(crate) fn escaped(s: &str, keep: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if keep(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}
