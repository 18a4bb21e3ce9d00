//! Batching and delivery: events of one app are collected for `batch_duration_ms` (or until
//! `batch_size`) and POSTed to each endpoint that wants them, with exponential backoff.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sockudo_config::WebhookConfig;
use sockudo_config::server::WebhooksConfig;
use tokio::sync::mpsc;

use crate::apps::{App, AppRegistry};
use crate::auth;
use crate::metrics::Metrics;
use crate::webhooks::{Event, Queued};

#[derive(Serialize)]
struct Body<'a> {
    time_ms: u128,
    events: Vec<&'a Event>,
}

pub(super) async fn run(
    mut rx: mpsc::Receiver<Queued>,
    config: WebhooksConfig,
    apps: Arc<AppRegistry>,
    metrics: Arc<Metrics>,
) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_millis(config.request_timeout_ms))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook HTTP client; webhooks are off");
            return;
        }
    };
    let window = Duration::from_millis(config.batch_duration_ms);
    while let Some(first) = rx.recv().await {
        let mut batches: HashMap<String, Vec<Event>> = HashMap::new();
        batches.entry(first.app_id).or_default().push(first.event);
        let deadline = tokio::time::Instant::now() + window;
        let mut total = 1;
        while total < config.batch_size.max(1) {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(q)) => {
                    batches.entry(q.app_id).or_default().push(q.event);
                    total += 1;
                }
                Ok(None) | Err(_) => break,
            }
        }
        for (app_id, events) in batches {
            let Some(app) = apps.by_id(&app_id) else {
                continue;
            };
            for hook in app.webhooks.clone() {
                let selected: Vec<&Event> = events
                    .iter()
                    .filter(|e| {
                        (hook.event_types.is_empty() || hook.event_types.contains(&e.kind()))
                            && hook
                                .channel_prefix
                                .as_deref()
                                .is_none_or(|p| e.channel.starts_with(p))
                    })
                    .collect();
                if selected.is_empty() {
                    continue;
                }
                let body = serde_json::to_string(&Body {
                    time_ms: SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis()),
                    events: selected,
                })
                .expect("webhook body serialises");
                tokio::spawn(deliver(
                    client.clone(),
                    app.clone(),
                    hook,
                    body,
                    config.clone(),
                    metrics.clone(),
                ));
            }
        }
    }
}

/// Retryable: network errors, 5xx, 408, 425, 429. Other 4xx are the receiver refusing for good.
fn retryable(status: reqwest::StatusCode) -> bool {
    status.is_server_error() || matches!(status.as_u16(), 408 | 425 | 429)
}

async fn deliver(
    client: reqwest::Client,
    app: Arc<App>,
    hook: WebhookConfig,
    body: String,
    config: WebhooksConfig,
    metrics: Arc<Metrics>,
) {
    let signature = auth::sign(&app.secret, &body);
    let mut backoff = Duration::from_millis(config.initial_backoff_ms);
    for attempt in 1..=config.max_attempts.max(1) {
        let mut req = client
            .post(&hook.url)
            .header("content-type", "application/json")
            .header("x-pusher-key", &app.key)
            .header("x-pusher-signature", &signature);
        for (k, v) in &hook.headers {
            req = req.header(k, v);
        }
        let outcome = req.body(body.clone()).send().await;
        match outcome {
            Ok(r) if r.status().is_success() => {
                metrics.webhooks.with_label_values(&["sent"]).inc();
                return;
            }
            Ok(r) if !retryable(r.status()) => {
                tracing::warn!(url = %hook.url, status = %r.status(), app_id = %app.id, "webhook refused");
                metrics.webhooks.with_label_values(&["refused"]).inc();
                return;
            }
            Ok(r) => {
                tracing::warn!(url = %hook.url, status = %r.status(), attempt, "webhook failed; will retry");
            }
            Err(e) => {
                tracing::warn!(url = %hook.url, error = %e, attempt, "webhook failed; will retry");
            }
        }
        metrics.webhooks.with_label_values(&["retried"]).inc();
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(config.max_backoff_ms));
    }
    metrics.webhooks.with_label_values(&["dropped"]).inc();
    tracing::error!(url = %hook.url, app_id = %app.id, "webhook dropped after all attempts");
}
