//! What a backend must offer the horizontal core: publish to a topic, and deliver every message
//! of the node's topics to the core, reconnecting on its own with backoff.

use async_trait::async_trait;
use bytes::Bytes;

/// A logical stream. Each driver maps it to its own names under the configured prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Channel events; a channel always maps to the same bucket, which keeps one publisher's
    /// events on one channel in order (and spreads channels over Redis Cluster shards).
    Events(u16),
    /// Membership, heartbeats, replicated state and requests: every node listens.
    Control,
    /// One node's inbox (request replies).
    Node(String),
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("backend not connected: {0}")]
    NotConnected(String),
    #[error("backend did not answer within {0} ms")]
    Timeout(u64),
    #[error("backend refused: {0}")]
    Backend(String),
}

#[async_trait]
pub trait Transport: Send + Sync + 'static {
    fn driver(&self) -> &'static str;

    /// How many event buckets channels are spread over.
    fn buckets(&self) -> u16;

    /// Publishes one message; Ok only once the backend accepted it.
    async fn publish(&self, topic: &Topic, payload: Bytes) -> Result<(), TransportError>;

    /// Connected right now, as far as the client library knows.
    fn connected(&self) -> bool;

    /// Why the connection is down, as the client library reported it (a refused certificate or
    /// password reads better in readiness than "unreachable"); None while connected.
    fn last_error(&self) -> Option<String> {
        None
    }

    /// The core saw no message come back for a while although publishing may work: the
    /// transport should re-establish its subscriptions (rate-limited by the transport).
    fn reset(&self) {}
}

/// Exponential backoff for reconnect loops: no busy loop while a backend is down.
pub struct Backoff {
    next_ms: u64,
}

impl Backoff {
    const START_MS: u64 = 100;
    const MAX_MS: u64 = 5_000;

    pub fn new() -> Self {
        Backoff {
            next_ms: Self::START_MS,
        }
    }

    pub fn reset(&mut self) {
        self.next_ms = Self::START_MS;
    }

    pub async fn wait(&mut self) {
        tokio::time::sleep(std::time::Duration::from_millis(self.next_ms)).await;
        self.next_ms = (self.next_ms * 2).min(Self::MAX_MS);
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// Keeps `[A-Za-z0-9_-]`, so a node id is valid in Redis channel names and NATS subjects.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// FNV-1a over app and channel: the channel's event bucket.
pub fn bucket_of(app_id: &str, channel: &str, buckets: u16) -> u16 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in app_id.bytes().chain([0]).chain(channel.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(buckets.max(1))) as u16
}
