//! Prometheus metrics of the reconciles, in the text exposition format (a handful of counters
//! and a histogram do not need a metrics library).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the duration histogram, in seconds.
const BUCKETS: [f64; 8] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 15.0];

#[derive(Debug, Default)]
pub struct Metrics {
    reconciles: AtomicU64,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    buckets: [AtomicU64; BUCKETS.len()],
    duration_count: AtomicU64,
    /// Sum of durations in microseconds.
    duration_sum_us: AtomicU64,
}

impl Metrics {
    pub fn reconciled(&self, took: Duration) {
        self.reconciles.fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        for (bucket, bound) in self.buckets.iter().zip(BUCKETS) {
            if secs <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.duration_count.fetch_add(1, Ordering::Relaxed);
        self.duration_sum_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn failed(&self, label: &'static str) {
        *self
            .errors
            .lock()
            .expect("metrics lock")
            .entry(label)
            .or_insert(0) += 1;
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP sockudo_operator_reconciles_total Reconciles run."
        );
        let _ = writeln!(out, "# TYPE sockudo_operator_reconciles_total counter");
        let _ = writeln!(
            out,
            "sockudo_operator_reconciles_total {}",
            self.reconciles.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP sockudo_operator_reconcile_errors_total Reconciles that failed, by error."
        );
        let _ = writeln!(
            out,
            "# TYPE sockudo_operator_reconcile_errors_total counter"
        );
        for (label, n) in self.errors.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "sockudo_operator_reconcile_errors_total{{error=\"{label}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP sockudo_operator_reconcile_duration_seconds Time per reconcile."
        );
        let _ = writeln!(
            out,
            "# TYPE sockudo_operator_reconcile_duration_seconds histogram"
        );
        for (bucket, bound) in self.buckets.iter().zip(BUCKETS) {
            let _ = writeln!(
                out,
                "sockudo_operator_reconcile_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.duration_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "sockudo_operator_reconcile_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "sockudo_operator_reconcile_duration_seconds_sum {}",
            self.duration_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "sockudo_operator_reconcile_duration_seconds_count {count}"
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::default();
        m.reconciled(Duration::from_millis(30));
        m.failed("kube");
        let text = m.render();
        assert!(text.contains("sockudo_operator_reconciles_total 1"));
        assert!(text.contains("sockudo_operator_reconcile_errors_total{error=\"kube\"} 1"));
        assert!(text.contains("_bucket{le=\"0.05\"} 1"));
        assert!(text.contains("_bucket{le=\"0.01\"} 0"));
    }
}
