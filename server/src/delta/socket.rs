//! Per-connection delta state: which channels use which algorithm, and per stream (channel +
//! conflation key) the last message the client holds. Bases are clones of the shared frame that
//! every subscriber got, so N sockets holding the same base cost one allocation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::connection::handle::Frame;
use crate::delta::algorithm::Algorithm;
use crate::delta::wire::SubscriptionDelta;

/// Streams (conflation keys) remembered per channel and socket; the least recently used goes.
pub const MAX_STREAMS_PER_CHANNEL: usize = 100;

/// What a client holds for one stream: the plain frame of sequence `seq`.
#[derive(Clone)]
pub struct Base {
    pub seq: u64,
    pub frame: Frame,
    pub at: Instant,
}

#[derive(Default)]
pub(crate) struct ChannelDelta {
    /// None: deltas are off for this channel on this socket.
    pub(crate) algorithm: Option<Algorithm>,
    pub(crate) streams: HashMap<Option<Arc<str>>, Base>,
}

impl ChannelDelta {
    /// The base for `key`, unless it is older than `max_age`.
    pub(crate) fn base(&self, key: &Option<Arc<str>>, max_age: Duration) -> Option<&Base> {
        self.streams.get(key).filter(|b| b.at.elapsed() <= max_age)
    }

    /// Remembers what the client now holds, evicting the stalest stream past the bound.
    pub(crate) fn remember(&mut self, key: Option<Arc<str>>, base: Base) {
        if self.streams.len() >= MAX_STREAMS_PER_CHANNEL
            && !self.streams.contains_key(&key)
            && let Some(oldest) = self
                .streams
                .iter()
                .min_by_key(|(_, b)| b.at)
                .map(|(k, _)| k.clone())
        {
            self.streams.remove(&oldest);
        }
        self.streams.insert(key, base);
    }
}

pub(crate) struct State {
    /// Set by `pusher:enable_delta_compression`: applies to channels without their own setting.
    pub(crate) connection: Option<Algorithm>,
    pub(crate) max_age: Duration,
    pub(crate) channels: HashMap<Arc<str>, ChannelDelta>,
}

impl State {
    /// This channel's state when deltas are on for it, created from the connection's setting.
    pub(crate) fn channel(&mut self, channel: &str) -> Option<&mut ChannelDelta> {
        if !self.channels.contains_key(channel) {
            let algorithm = self.connection?;
            self.channels.insert(
                Arc::from(channel),
                ChannelDelta {
                    algorithm: Some(algorithm),
                    streams: HashMap::new(),
                },
            );
        }
        self.channels
            .get_mut(channel)
            .filter(|c| c.algorithm.is_some())
    }
}

/// A connection's delta state, on its [`ConnHandle`](crate::connection::handle::ConnHandle).
pub struct SocketDelta {
    /// False until the client opts in: the fan-out skips the lock for every other socket.
    active: AtomicBool,
    state: Mutex<State>,
}

impl Default for SocketDelta {
    fn default() -> Self {
        SocketDelta {
            active: AtomicBool::new(false),
            state: Mutex::new(State {
                connection: None,
                max_age: Duration::from_secs(300),
                channels: HashMap::new(),
            }),
        }
    }
}

impl SocketDelta {
    /// Loads the line [`SocketDelta::is_active`] reads (see `ConnHandle::prefetch`).
    pub(crate) fn prefetch(&self) {
        crate::prefetch::prefetch_value(&self.active);
    }

    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connection-wide opt-in.
    pub fn enable(&self, algorithm: Algorithm, max_age: Duration) {
        let mut s = self.lock();
        s.connection = Some(algorithm);
        s.max_age = max_age;
        self.active.store(true, Ordering::Relaxed);
    }

    /// A (re)subscription: forget the channel's bases (it starts from a full message) and apply
    /// its own setting. Returns the algorithm now in force for the channel.
    pub fn subscribe(
        &self,
        channel: &str,
        setting: SubscriptionDelta,
        default: Algorithm,
        max_age: Duration,
    ) -> Option<Algorithm> {
        let mut s = self.lock();
        s.channels.remove(channel);
        let algorithm = match setting {
            SubscriptionDelta::Inherit => return s.connection,
            SubscriptionDelta::Disabled => None,
            SubscriptionDelta::Enabled(a) => Some(a.or(s.connection).unwrap_or(default)),
        };
        if algorithm.is_some() {
            s.max_age = max_age;
            self.active.store(true, Ordering::Relaxed);
        }
        s.channels.insert(
            Arc::from(channel),
            ChannelDelta {
                algorithm,
                streams: HashMap::new(),
            },
        );
        algorithm
    }

    pub fn unsubscribe(&self, channel: &str) {
        if self.is_active() {
            self.lock().channels.remove(channel);
        }
    }

    /// `pusher:delta_sync_error`: the next message of every stream of the channel goes in full.
    pub fn resync(&self, channel: &str) {
        if let Some(c) = self.lock().channels.get_mut(channel) {
            c.streams.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_and_resubscribe() {
        let d = SocketDelta::default();
        let age = Duration::from_secs(60);
        assert!(!d.is_active());
        assert_eq!(
            d.subscribe("a", SubscriptionDelta::Inherit, Algorithm::Fossil, age),
            None
        );
        assert!(!d.is_active());
        d.enable(Algorithm::Fossil, age);
        assert!(d.lock().channel("a").is_some(), "inherits the opt-in");
        assert_eq!(
            d.subscribe("b", SubscriptionDelta::Disabled, Algorithm::Fossil, age),
            None
        );
        assert!(d.lock().channel("b").is_none(), "explicitly off");
        assert_eq!(
            d.subscribe(
                "c",
                SubscriptionDelta::Enabled(Some(Algorithm::Xdelta3)),
                Algorithm::Fossil,
                age
            ),
            Some(Algorithm::Xdelta3)
        );
        let base = Base {
            seq: 1,
            frame: Frame::from("{}"),
            at: Instant::now(),
        };
        d.lock().channel("c").unwrap().remember(None, base.clone());
        d.resync("c");
        assert!(d.lock().channel("c").unwrap().streams.is_empty());
        d.lock().channel("c").unwrap().remember(None, base);
        d.subscribe("c", SubscriptionDelta::Inherit, Algorithm::Fossil, age);
        assert!(d.lock().channel("c").unwrap().streams.is_empty());
    }

    #[test]
    fn streams_are_bounded() {
        let mut c = ChannelDelta {
            algorithm: Some(Algorithm::Fossil),
            streams: HashMap::new(),
        };
        for i in 0..(MAX_STREAMS_PER_CHANNEL + 20) {
            c.remember(
                Some(Arc::from(i.to_string())),
                Base {
                    seq: i as u64,
                    frame: Frame::from("{}"),
                    at: Instant::now(),
                },
            );
        }
        assert_eq!(c.streams.len(), MAX_STREAMS_PER_CHANNEL);
        assert!(c.streams.contains_key(&Some(Arc::from("119"))));
    }
}
