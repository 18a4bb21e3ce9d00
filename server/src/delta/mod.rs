//! Delta compression (`docs/delta-compression.md`).
//!
//! * [`DeltaService::decide`] runs once per publish and channel at the publishing node: it takes
//!   the stream's next sequence number from the [`Coordinator`] and decides full vs delta.
//! * The [`DeltaDecision`] travels with the frame (`Adapter::broadcast`); every node's hub
//!   applies it with a [`FanOut`] to its opted-in sockets ([`SocketDelta`]).

pub mod algorithm;
pub mod conflation;
pub mod coordinator;
pub mod fanout;
pub mod metrics;
pub mod socket;
pub mod wire;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sockudo_config::{AdapterDriver, ConfigError, DeltaCompressionConfig, ServerConfig};

use crate::adapter::BackendHealth;
pub use algorithm::Algorithm;
pub use coordinator::{CoordinationError, Coordinator, StreamKey};
pub use fanout::{DeltaDecision, FanOut};
pub use metrics::DeltaMetrics;
pub use socket::SocketDelta;

/// Longest wait for a sequence number before the publish goes out without deltas.
const COORDINATION_TIMEOUT: Duration = Duration::from_millis(500);
/// After a failure, publishes skip the backend this long (so an outage does not add the timeout
/// to every publish); the first publish after it probes the backend again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The channel type that is never delta-encoded: its payloads are ciphertext.
pub fn is_encrypted(channel: &str) -> bool {
    channel.starts_with("private-encrypted-")
}

/// The stream the recovery probe counts on: never a real one (channel names are never empty).
const PROBE_KEY: StreamKey<'static> = StreamKey {
    app_id: "",
    channel: "",
    conflation_key: None,
};

#[derive(Default)]
struct Breaker {
    retry_at: Option<Instant>,
    last_error: Option<String>,
    /// A background probe is asking the backend until it answers (see [`probe`]).
    probing: bool,
}

impl Breaker {
    fn record_ok(&mut self, driver: &str) {
        if self.last_error.take().is_some() {
            tracing::info!(driver, "delta coordination recovered");
        }
        self.retry_at = None;
    }

    fn record_err(&mut self, driver: &str, e: &CoordinationError) {
        if self.last_error.is_none() {
            tracing::warn!(driver, error = %e, "delta coordination failed; sending full messages until it recovers");
        }
        self.last_error = Some(e.to_string());
        self.retry_at = Some(Instant::now() + RETRY_AFTER);
    }
}

fn lock(breaker: &Mutex<Breaker>) -> std::sync::MutexGuard<'_, Breaker> {
    breaker.lock().unwrap_or_else(|p| p.into_inner())
}

/// One sequence number, within [`COORDINATION_TIMEOUT`] (a timeout resets the connection).
async fn ask(coordinator: &dyn Coordinator, key: StreamKey<'_>) -> Result<u64, CoordinationError> {
    match tokio::time::timeout(COORDINATION_TIMEOUT, coordinator.next_seq(key)).await {
        Ok(r) => r,
        Err(_) => {
            coordinator.reset().await;
            Err(CoordinationError::Timeout(
                COORDINATION_TIMEOUT.as_millis() as u64
            ))
        }
    }
}

/// After a failure, asks the backend every [`RETRY_AFTER`] until it answers, so readiness
/// recovers even when no publish comes to find out. Ends with the service.
async fn probe(
    coordinator: std::sync::Weak<dyn Coordinator>,
    breaker: std::sync::Weak<Mutex<Breaker>>,
) {
    loop {
        tokio::time::sleep(RETRY_AFTER).await;
        let (Some(coordinator), Some(breaker)) = (coordinator.upgrade(), breaker.upgrade()) else {
            return;
        };
        let driver = coordinator.driver();
        {
            let mut b = lock(&breaker);
            if b.last_error.is_none() {
                // A publish got through first.
                b.probing = false;
                return;
            }
        }
        let result = ask(&*coordinator, PROBE_KEY).await;
        let mut b = lock(&breaker);
        match result {
            Ok(_) => {
                b.record_ok(driver);
                b.probing = false;
                return;
            }
            Err(e) => b.record_err(driver, &e),
        }
    }
}

pub struct DeltaService {
    config: DeltaCompressionConfig,
    coordinator: Arc<dyn Coordinator>,
    metrics: DeltaMetrics,
    breaker: Arc<Mutex<Breaker>>,
}

impl DeltaService {
    pub fn new(
        config: DeltaCompressionConfig,
        coordinator: Arc<dyn Coordinator>,
        metrics: DeltaMetrics,
    ) -> Self {
        DeltaService {
            config,
            coordinator,
            metrics,
            breaker: Arc::default(),
        }
    }

    /// The service for a server config: cluster coordination on the adapter's backend (its
    /// `database.redis*` or `nats` section, credentials and TLS included) when
    /// `delta_compression.cluster_coordination` is set, else node-local counting.
    pub async fn from_config(
        config: &ServerConfig,
        metrics: DeltaMetrics,
    ) -> Result<Self, ConfigError> {
        let d = &config.delta_compression;
        // Backend keys outlive socket bases, so a restarted count never meets an old base.
        let ttl = Duration::from_secs(d.max_state_age_secs.max(1) * 2);
        let coordinator: Arc<dyn Coordinator> = match (
            d.cluster_coordination,
            config.adapter.driver,
        ) {
            (true, AdapterDriver::Redis | AdapterDriver::RedisCluster) => {
                let Some(target) = config.adapter_redis() else {
                    return Err(ConfigError::Invalid(vec![
                        "`delta_compression.cluster_coordination` needs the adapter's Redis in `database`".into(),
                    ]));
                };
                Arc::new(
                    coordinator::redis::RedisCoordinator::connect(
                        &target,
                        &config.adapter.prefix,
                        ttl,
                    )
                    .await
                    .map_err(|e| ConfigError::Invalid(vec![e.to_string()]))?,
                )
            }
            (true, AdapterDriver::Nats) => coordinator::nats::NatsCoordinator::start(
                config.nats.clone(),
                &config.nats.prefix,
                ttl,
            ),
            _ => Arc::new(coordinator::local::LocalCoordinator::new(ttl, 100_000)),
        };
        Ok(Self::new(d.clone(), coordinator, metrics))
    }

    pub fn config(&self) -> &DeltaCompressionConfig {
        &self.config
    }

    pub fn driver(&self) -> &'static str {
        self.coordinator.driver()
    }

    pub fn default_algorithm(&self) -> Algorithm {
        self.config.algorithm.into()
    }

    pub fn max_state_age(&self) -> Duration {
        Duration::from_secs(self.config.max_state_age_secs)
    }

    /// The decision for publishing `plain` (the event frame) on `channel`, or None when the
    /// message bypasses delta streams (deltas off, encrypted channel, small message, or the
    /// coordination backend failing): then every socket gets the plain frame and no socket's
    /// base changes, so client and server stay in step.
    pub async fn decide(
        &self,
        app_id: &str,
        channel: &str,
        event: &str,
        data: &str,
        plain_len: usize,
        force_full: bool,
    ) -> Option<DeltaDecision> {
        if !self.config.enabled || is_encrypted(channel) || plain_len < self.config.min_message_size
        {
            return None;
        }
        let conflation_key = self
            .config
            .conflation_key
            .as_deref()
            .and_then(|path| conflation::extract(path, data));
        let key = StreamKey {
            app_id,
            channel,
            conflation_key: conflation_key.as_deref(),
        };
        let seq = self.next_seq(key).await?;
        let interval = self.config.full_message_interval.max(1);
        Some(DeltaDecision {
            seq,
            full: force_full || seq % interval == 0,
            conflation_key: conflation_key.map(Arc::from),
            event: Arc::from(event),
        })
    }

    async fn next_seq(&self, key: StreamKey<'_>) -> Option<u64> {
        if self
            .breaker()
            .retry_at
            .is_some_and(|at| Instant::now() < at)
        {
            self.metrics.coordination_failures.inc();
            return None;
        }
        let started = Instant::now();
        let result = ask(&*self.coordinator, key).await;
        self.metrics
            .coordination_latency
            .observe(started.elapsed().as_secs_f64());
        let mut breaker = self.breaker();
        match result {
            Ok(seq) => {
                breaker.record_ok(self.driver());
                Some(seq)
            }
            Err(e) => {
                self.metrics.coordination_failures.inc();
                breaker.record_err(self.driver(), &e);
                if !breaker.probing {
                    breaker.probing = true;
                    tokio::spawn(probe(
                        Arc::downgrade(&self.coordinator),
                        Arc::downgrade(&self.breaker),
                    ));
                }
                None
            }
        }
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        lock(&self.breaker)
    }

    /// Degraded while the coordinator's backend is (from start-up, before any publish asks for
    /// a number), or while the last coordination attempt failed.
    pub fn health(&self) -> BackendHealth {
        if let BackendHealth::Degraded(e) = self.coordinator.health() {
            return BackendHealth::Degraded(e);
        }
        match &self.breaker().last_error {
            None => BackendHealth::Ok,
            Some(e) => BackendHealth::Degraded(e.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    struct Flaky {
        down: AtomicBool,
        n: AtomicU64,
    }

    #[async_trait]
    impl Coordinator for Flaky {
        fn driver(&self) -> &'static str {
            "flaky"
        }
        async fn next_seq(&self, _: StreamKey<'_>) -> Result<u64, CoordinationError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(CoordinationError::Unavailable("down".into()));
            }
            Ok(self.n.fetch_add(1, Ordering::SeqCst) + 1)
        }
    }

    fn config() -> DeltaCompressionConfig {
        DeltaCompressionConfig {
            full_message_interval: 3,
            min_message_size: 10,
            conflation_key: Some("asset".into()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn schedule_bypass_and_fallback() {
        let flaky = Arc::new(Flaky {
            down: AtomicBool::new(false),
            n: AtomicU64::new(0),
        });
        let s = DeltaService::new(config(), flaky.clone(), DeltaMetrics::default());
        let data = r#"{"asset":"BTC","price":1}"#;
        let mut fulls = Vec::new();
        for _ in 0..6 {
            let d = s.decide("a", "c", "e", data, 100, false).await.unwrap();
            assert_eq!(d.conflation_key.as_deref(), Some("BTC"));
            fulls.push((d.seq, d.full));
        }
        assert_eq!(
            fulls,
            vec![
                (1, false),
                (2, false),
                (3, true),
                (4, false),
                (5, false),
                (6, true)
            ]
        );
        let forced = s.decide("a", "c", "e", data, 100, true).await.unwrap();
        assert!(forced.full);
        assert!(
            s.decide("a", "c", "e", data, 5, false).await.is_none(),
            "small"
        );
        assert!(
            s.decide("a", "private-encrypted-x", "e", data, 100, false)
                .await
                .is_none()
        );
        flaky.down.store(true, Ordering::SeqCst);
        assert!(s.decide("a", "c", "e", data, 100, false).await.is_none());
        assert!(matches!(s.health(), BackendHealth::Degraded(_)));
        flaky.down.store(false, Ordering::SeqCst);
        // Within RETRY_AFTER the backend is not asked again.
        assert!(s.decide("a", "c", "e", data, 100, false).await.is_none());
        s.breaker().retry_at = Some(Instant::now());
        assert!(s.decide("a", "c", "e", data, 100, false).await.is_some());
        assert_eq!(s.health(), BackendHealth::Ok);
    }

    #[tokio::test]
    async fn readiness_recovers_without_a_publish() {
        let flaky = Arc::new(Flaky {
            down: AtomicBool::new(true),
            n: AtomicU64::new(0),
        });
        let s = DeltaService::new(config(), flaky.clone(), DeltaMetrics::default());
        let data = r#"{"asset":"BTC","price":1}"#;
        assert!(s.decide("a", "c", "e", data, 100, false).await.is_none());
        assert!(matches!(s.health(), BackendHealth::Degraded(_)));
        flaky.down.store(false, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(10);
        while s.health() != BackendHealth::Ok {
            assert!(Instant::now() < deadline, "still {:?}", s.health());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            !s.breaker().probing,
            "the probe ends once the backend answers"
        );
        // The probe counted on its own stream only; the next publish is served at once.
        assert!(s.decide("a", "c", "e", data, 100, false).await.is_some());
    }

    /// A coordinator whose backend health is watched in the background (as Redis and NATS are).
    struct Watched(Mutex<BackendHealth>);

    #[async_trait]
    impl Coordinator for Watched {
        fn driver(&self) -> &'static str {
            "watched"
        }
        async fn next_seq(&self, _: StreamKey<'_>) -> Result<u64, CoordinationError> {
            Ok(1)
        }
        fn health(&self) -> BackendHealth {
            self.0.lock().unwrap().clone()
        }
    }

    #[test]
    fn backend_health_shows_before_any_publish() {
        let watched = Arc::new(Watched(Mutex::new(BackendHealth::Degraded(
            "invalid peer certificate: UnknownIssuer".into(),
        ))));
        let s = DeltaService::new(config(), watched.clone(), DeltaMetrics::default());
        assert_eq!(
            s.health(),
            BackendHealth::Degraded("invalid peer certificate: UnknownIssuer".into())
        );
        *watched.0.lock().unwrap() = BackendHealth::Ok;
        assert_eq!(s.health(), BackendHealth::Ok);
    }
}
