//! The encoder used at fan-out. A publish's [`DeltaDecision`] was taken once, at the publishing
//! node; every node applies it the same way:
//!
//! * `full` (a scheduled or forced full message): every opted-in socket gets the full frame;
//! * otherwise each socket gets a delta against the base it holds, or the full frame when it
//!   holds none (joined, resynced, base expired) or the delta would not be smaller.
//!
//! One delta is computed per distinct base and reused by every socket that holds that base
//! (usually all of them). Sockets that did not opt in never reach this code.

use std::cell::OnceCell;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::connection::handle::{ConnHandle, Delivery, Frame};
use crate::delta::algorithm::Algorithm;
use crate::delta::metrics::DeltaMetrics;
use crate::delta::socket::Base;
use crate::delta::wire;

/// The delta decision for one publish on one channel, taken once at the publishing node and
/// carried with the message to every node. Receivers apply it; they never re-decide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaDecision {
    /// Cluster-wide sequence number of this message in its stream (channel + conflation key).
    pub seq: u64,
    /// Every opted-in socket gets this message in full (scheduled every Nth, or forced).
    pub full: bool,
    /// The stream's conflation value (None: the channel's default stream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflation_key: Option<Arc<str>>,
    /// The event name (the delta frame names it; spares receivers parsing the frame).
    pub event: Arc<str>,
}

/// One publish being delivered to one channel's sockets.
pub struct FanOut<'a> {
    channel: &'a str,
    plain: &'a Frame,
    decision: &'a DeltaDecision,
    full_frame: OnceCell<Frame>,
    /// (algorithm, base) -> the frame for sockets holding that base (None: send full).
    encoded: Vec<(Algorithm, Frame, Option<Frame>)>,
    original: u64,
    sent: u64,
    deltas: u64,
    fulls: u64,
    plains: u64,
    encodes: u64,
}

enum Out {
    Delta(Frame),
    Full,
    Plain,
}

impl<'a> FanOut<'a> {
    pub fn new(channel: &'a str, plain: &'a Frame, decision: &'a DeltaDecision) -> Self {
        FanOut {
            channel,
            plain,
            decision,
            full_frame: OnceCell::new(),
            encoded: Vec::new(),
            original: 0,
            sent: 0,
            deltas: 0,
            fulls: 0,
            plains: 0,
            encodes: 0,
        }
    }

    fn full(&self) -> Frame {
        self.full_frame
            .get_or_init(|| {
                Frame::from(wire::full(
                    self.plain.as_str(),
                    self.decision.seq,
                    self.decision.conflation_key.as_deref(),
                ))
            })
            .clone()
    }

    /// The frame for one opted-in socket; records what that socket now holds.
    pub fn frame_for(&mut self, conn: &ConnHandle) -> Frame {
        self.deliver(conn, Frame::clone)
    }

    /// Queues one opted-in socket's frame and records what that socket now holds. The frame is
    /// queued while the socket's delta state is still locked: concurrent publishes on one channel
    /// (two HTTP publishes on this node, or one local and one from another node) then reach the
    /// socket in the order in which they moved its base, so a delta is never queued ahead of the
    /// frame it is based on.
    pub fn send_to(&mut self, conn: &ConnHandle, how: Delivery) -> bool {
        self.deliver(conn, |f| conn.deliver(f, how))
    }

    fn deliver<R>(&mut self, conn: &ConnHandle, out_fn: impl FnOnce(&Frame) -> R) -> R {
        let mut state = conn.delta.lock();
        let max_age = state.max_age;
        let Some(channel) = state.channel(self.channel) else {
            // Deltas are off for this channel on this socket: it gets what everyone gets.
            return out_fn(self.plain);
        };
        let algorithm = channel
            .algorithm
            .expect("channel() only returns enabled channels");
        let key = self.decision.conflation_key.clone();
        let base = match channel.base(&key, max_age) {
            Some(b) if !self.decision.full => Some(b.clone()),
            _ => None,
        };
        let out = match base {
            None => Out::Full,
            Some(base) => match self.delta_for(algorithm, base) {
                Some(f) => Out::Delta(f),
                // Not worth it: the plain frame, outside the stream. Neither side moves its
                // base, so the next delta still applies (its base_index names the older base).
                None => Out::Plain,
            },
        };
        if !matches!(out, Out::Plain) {
            channel.remember(
                key,
                Base {
                    seq: self.decision.seq,
                    frame: self.plain.clone(),
                    at: Instant::now(),
                },
            );
        }
        let frame = match out {
            Out::Delta(f) => {
                self.deltas += 1;
                f
            }
            Out::Full => {
                self.fulls += 1;
                self.full()
            }
            Out::Plain => {
                self.plains += 1;
                self.plain.clone()
            }
        };
        self.original += self.plain.len() as u64;
        self.sent += frame.len() as u64;
        let r = out_fn(&frame);
        drop(state);
        r
    }

    /// The delta frame from `base`, computed once per distinct base; None when it would not be
    /// smaller than the plain frame or the encoding failed.
    fn delta_for(&mut self, algorithm: Algorithm, base: Base) -> Option<Frame> {
        // Same allocation = same base: every socket that got one publish holds a clone of it.
        let hit = self.encoded.iter().find(|(a, b, _)| {
            *a == algorithm
                && b.as_str().as_ptr() == base.frame.as_str().as_ptr()
                && b.len() == base.frame.len()
        });
        if let Some((_, _, f)) = hit {
            return f.clone();
        }
        self.encodes += 1;
        let out = match algorithm.encode(
            base.frame.as_str().as_bytes(),
            self.plain.as_str().as_bytes(),
        ) {
            Ok(d) => {
                let f = wire::delta(
                    self.channel,
                    &self.decision.event,
                    &d,
                    self.decision.seq,
                    algorithm,
                    self.decision.conflation_key.as_deref(),
                    base.seq,
                );
                (f.len() < self.plain.len()).then(|| Frame::from(f))
            }
            Err(e) => {
                tracing::warn!(error = %e, channel = self.channel, "delta encoding failed; sending in full");
                None
            }
        };
        self.encoded.push((algorithm, base.frame, out.clone()));
        out
    }

    /// Adds this publish's counts to the metrics.
    pub fn record(&self, m: &DeltaMetrics) {
        if self.deltas + self.fulls + self.plains == 0 {
            return;
        }
        m.bytes_original.inc_by(self.original);
        m.bytes_sent.inc_by(self.sent);
        m.messages.with_label_values(&["delta"]).inc_by(self.deltas);
        m.messages.with_label_values(&["full"]).inc_by(self.fulls);
        m.messages.with_label_values(&["plain"]).inc_by(self.plains);
        m.encodes.inc_by(self.encodes);
    }

    pub fn encodes(&self) -> u64 {
        self.encodes
    }
}
