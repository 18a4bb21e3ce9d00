//! Delta metrics: bandwidth (what opted-in sockets would have received vs what they got),
//! deltas vs full messages, and the coordination backend's latency and failures.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct DeltaMetrics {
    /// Bytes the delta-enabled sockets would have received as plain frames.
    pub bytes_original: IntCounter,
    /// Bytes they were actually sent (deltas and full frames with their metadata).
    pub bytes_sent: IntCounter,
    /// Frames to delta-enabled sockets, by `kind` = delta | full.
    pub messages: IntCounterVec,
    /// Deltas computed (one per distinct base per publish, shared by the sockets holding it).
    pub encodes: IntCounter,
    pub coordination_latency: Histogram,
    pub coordination_failures: IntCounter,
}

impl Default for DeltaMetrics {
    fn default() -> Self {
        DeltaMetrics {
            bytes_original: IntCounter::new(
                "delta_bytes_original_total",
                "Bytes delta-enabled sockets would have received without deltas",
            )
            .expect("metric"),
            bytes_sent: IntCounter::new(
                "delta_bytes_sent_total",
                "Bytes sent to delta-enabled sockets",
            )
            .expect("metric"),
            messages: IntCounterVec::new(
                Opts::new(
                    "delta_messages_total",
                    "Frames sent to delta-enabled sockets by kind (delta, full, plain: delta not worth it)",
                ),
                &["kind"],
            )
            .expect("metric"),
            encodes: IntCounter::new(
                "delta_encodes_total",
                "Deltas computed (one per distinct base and publish)",
            )
            .expect("metric"),
            coordination_latency: Histogram::with_opts(
                HistogramOpts::new(
                    "delta_coordination_seconds",
                    "Time to take one publish's delta decision (sequence number)",
                )
                .buckets(vec![
                    0.000_01, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01,
                    0.025, 0.1, 0.5,
                ]),
            )
            .expect("metric"),
            coordination_failures: IntCounter::new(
                "delta_coordination_failures_total",
                "Publishes sent in full because the coordination backend failed",
            )
            .expect("metric"),
        }
    }
}

impl DeltaMetrics {
    pub fn register(&self, r: &Registry) {
        r.register(Box::new(self.bytes_original.clone()))
            .expect("register");
        r.register(Box::new(self.bytes_sent.clone()))
            .expect("register");
        r.register(Box::new(self.messages.clone()))
            .expect("register");
        r.register(Box::new(self.encodes.clone()))
            .expect("register");
        r.register(Box::new(self.coordination_latency.clone()))
            .expect("register");
        r.register(Box::new(self.coordination_failures.clone()))
            .expect("register");
    }
}
