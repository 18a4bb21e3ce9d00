//! Prometheus metrics, served on their own port. Hot-path counters are plain atomics without
//! labels; a publish adds its delivery count once, never per socket.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// One app's message counters, resolved once (a session keeps them for its lifetime).
#[derive(Clone)]
pub struct AppCounters {
    pub messages_sent: IntCounter,
    pub bytes_sent: IntCounter,
    pub messages_received: IntCounter,
    pub bytes_received: IntCounter,
}

pub struct Metrics {
    registry: Registry,
    pub connections: IntGauge,
    pub connections_total: IntCounter,
    pub messages_received: IntCounter,
    pub messages_sent: IntCounter,
    pub bytes_received: IntCounter,
    pub bytes_sent: IntCounter,
    pub subscriptions: IntGauge,
    pub http_requests: IntCounterVec,
    /// HTTP connections closed by a time limit, by listener and phase (`http::deadlines`).
    pub http_connections_timed_out: IntCounterVec,
    /// Per app (configured apps only): frames by direction (`sent` / `received`).
    pub app_messages: IntCounterVec,
    /// Per app: bytes by direction.
    pub app_bytes: IntCounterVec,
    pub broadcast_latency: Histogram,
    pub rate_limit_hits: IntCounterVec,
    pub backend_up: IntGaugeVec,
    pub webhooks: IntCounterVec,
    pub cache_operations: IntCounterVec,
    pub rate_limit_decisions: IntCounterVec,
    pub rate_limiter_backend_failures: IntCounterVec,
    pub delta: crate::delta::DeltaMetrics,
    /// Horizontal adapter: messages by driver and direction (published / received).
    pub adapter_messages: IntCounterVec,
    /// Horizontal adapter: cluster-wide request round trips.
    pub adapter_request_seconds: HistogramVec,
    pub adapter_timeouts: IntCounterVec,
    pub adapter_reconnects: IntCounterVec,
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("metric");
    r.register(Box::new(c.clone())).expect("register");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("metric");
    r.register(Box::new(g.clone())).expect("register");
    g
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("metric");
    r.register(Box::new(c.clone())).expect("register");
    c
}

impl Metrics {
    pub fn new(prefix: &str) -> Self {
        let namespace = prefix.trim_end_matches('_');
        let registry =
            Registry::new_custom((!namespace.is_empty()).then(|| namespace.to_string()), None)
                .expect("registry");
        let r = &registry;
        let broadcast_latency = Histogram::with_opts(
            HistogramOpts::new(
                "broadcast_latency_seconds",
                "Time to queue one publish to every local subscriber",
            )
            .buckets(vec![
                0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5,
            ]),
        )
        .expect("metric");
        r.register(Box::new(broadcast_latency.clone()))
            .expect("register");
        let backend_up = IntGaugeVec::new(
            Opts::new("backend_up", "1 when a backend is reachable"),
            &["backend", "driver"],
        )
        .expect("metric");
        r.register(Box::new(backend_up.clone())).expect("register");
        let delta = crate::delta::DeltaMetrics::default();
        delta.register(r);
        let adapter_request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "adapter_request_seconds",
                "Round trip of a cluster-wide adapter request",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["driver"],
        )
        .expect("metric");
        r.register(Box::new(adapter_request_seconds.clone()))
            .expect("register");
        Metrics {
            adapter_messages: counter_vec(
                r,
                "adapter_messages_total",
                "Adapter backend messages",
                &["driver", "direction"],
            ),
            adapter_request_seconds,
            adapter_timeouts: counter_vec(
                r,
                "adapter_request_timeouts_total",
                "Adapter requests that some peer did not answer in time",
                &["driver"],
            ),
            adapter_reconnects: counter_vec(
                r,
                "adapter_reconnects_total",
                "Adapter backend recoveries after an outage",
                &["driver"],
            ),
            connections: gauge(r, "connections", "Open WebSocket connections"),
            connections_total: counter(r, "connections_total", "WebSocket connections accepted"),
            messages_received: counter(r, "ws_messages_received_total", "Frames received"),
            messages_sent: counter(
                r,
                "ws_messages_sent_total",
                "Frames sent or queued to sockets",
            ),
            bytes_received: counter(r, "ws_bytes_received_total", "Bytes received on sockets"),
            bytes_sent: counter(r, "ws_bytes_sent_total", "Bytes queued to sockets"),
            subscriptions: gauge(r, "subscriptions", "Channel subscriptions on this node"),
            http_connections_timed_out: counter_vec(
                r,
                "http_connections_timed_out_total",
                "HTTP connections closed by a time limit, by listener (main, metrics) and phase",
                &["listener", "phase"],
            ),
            http_requests: counter_vec(
                r,
                "http_requests_total",
                "Signed HTTP API calls by endpoint, status and app (configured apps only)",
                &["endpoint", "status", "app"],
            ),
            app_messages: counter_vec(
                r,
                "app_ws_messages_total",
                "WebSocket frames per app, by direction (sent: queued to sockets; received)",
                &["app", "direction"],
            ),
            app_bytes: counter_vec(
                r,
                "app_ws_bytes_total",
                "WebSocket bytes per app, by direction",
                &["app", "direction"],
            ),
            broadcast_latency,
            rate_limit_hits: counter_vec(
                r,
                "rate_limit_hits_total",
                "Requests refused by a rate limit",
                &["limiter"],
            ),
            backend_up,
            webhooks: counter_vec(
                r,
                "webhooks_total",
                "Webhook requests by outcome",
                &["outcome"],
            ),
            cache_operations: counter_vec(
                r,
                "cache_operations_total",
                "Cache operations by driver, operation (get/set/delete) and result (hit/miss/ok/error)",
                &["driver", "op", "result"],
            ),
            rate_limit_decisions: counter_vec(
                r,
                "rate_limit_decisions_total",
                "Rate-limit checks by driver, limit and decision (allowed/refused/backend_error)",
                &["driver", "limiter", "decision"],
            ),
            rate_limiter_backend_failures: counter_vec(
                r,
                "rate_limiter_backend_failures_total",
                "Checks the limiter's backend could not answer, by driver and the configured on_backend_failure",
                &["driver", "on_failure"],
            ),
            delta,
            registry,
        }
    }

    /// Counts one publish of `app` that reached `recipients` sockets with a frame of `len`
    /// bytes. `app` must be a configured app (it is a label value).
    pub fn delivered(&self, app: &str, recipients: usize, len: usize) {
        self.messages_sent.inc_by(recipients as u64);
        self.bytes_sent.inc_by((recipients * len) as u64);
        if recipients > 0 {
            self.app_messages
                .with_label_values(&[app, "sent"])
                .inc_by(recipients as u64);
            self.app_bytes
                .with_label_values(&[app, "sent"])
                .inc_by((recipients * len) as u64);
        }
    }

    /// The counters of one (configured) app.
    pub fn app(&self, app: &str) -> AppCounters {
        AppCounters {
            messages_sent: self.app_messages.with_label_values(&[app, "sent"]),
            bytes_sent: self.app_bytes.with_label_values(&[app, "sent"]),
            messages_received: self.app_messages.with_label_values(&[app, "received"]),
            bytes_received: self.app_bytes.with_label_values(&[app, "received"]),
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}
