//! Latency percentiles and the monotonic clock shared by publisher and subscribers.

use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use serde::Serialize;

static START: OnceLock<Instant> = OnceLock::new();

/// Microseconds since the first call. Publisher and subscribers live in this one process, so a
/// monotonic clock gives exact publish-to-receive latency with no clock sync.
pub fn now_us() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// A poisoned lock only means another task panicked; the data (counters, samples) is still usable.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An empty sample buffer with room for `n` samples, its pages already touched. Growing a
/// buffer of millions of samples mid-step copies it and faults in the new pages at once: the
/// generator stalled for several milliseconds doing that, and the deliveries it did not read
/// meanwhile showed up as server latency.
pub fn sample_buffer(buf: &mut Vec<u32>, n: usize) {
    buf.clear();
    buf.resize(n, 0);
    buf.clear();
}

/// Percentiles of a set of latencies, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// Nearest-rank percentiles over all samples (microseconds); sorts in place.
    pub fn from_us(samples: &mut [u32]) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_unstable();
        let n = samples.len();
        let rank = |q: f64| {
            let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
            samples[i] as f64 / 1000.0
        };
        let sum: u64 = samples.iter().map(|&v| v as u64).sum();
        Latency {
            count: n as u64,
            mean_ms: sum as f64 / n as f64 / 1000.0,
            p50_ms: rank(0.50),
            p90_ms: rank(0.90),
            p99_ms: rank(0.99),
            p999_ms: rank(0.999),
            max_ms: samples[n - 1] as f64 / 1000.0,
        }
    }

    pub fn line(&self) -> String {
        format!(
            "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms (mean {:.2} ms, n={})",
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.p999_ms,
            self.max_ms,
            self.mean_ms,
            self.count
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_buffer_is_empty_with_room_for_n() {
        let mut buf = vec![7u32; 3];
        sample_buffer(&mut buf, 100_000);
        assert!(buf.is_empty());
        assert!(buf.capacity() >= 100_000);
    }

    #[test]
    fn nearest_rank() {
        let mut v: Vec<u32> = (1..=100).map(|x| x * 1000).collect();
        let l = Latency::from_us(&mut v);
        assert_eq!(l.p50_ms, 50.0);
        assert_eq!(l.p90_ms, 90.0);
        assert_eq!(l.p99_ms, 99.0);
        assert_eq!(l.max_ms, 100.0);
        assert_eq!(l.count, 100);
    }

    #[test]
    fn empty_is_zero() {
        assert_eq!(Latency::from_us(&mut []).count, 0);
    }
}
