//! Warnings from the seed's decision matrix: valid configurations that are probably not what the
//! user wants. Reported in status, never refused.

use sockudo_config::{AdapterDriver, CacheDriver, RateLimiterDriver};

use super::topology::{RedisRole, Topology};
use crate::crd::SockudoClusterSpec;

pub fn warnings(spec: &SockudoClusterSpec) -> Vec<String> {
    let mut w = Vec::new();
    let max_replicas = spec
        .autoscaling
        .as_ref()
        .map_or(spec.replicas, |a| a.max_replicas.max(spec.replicas));
    let limiter = spec.rate_limiter.clone().unwrap_or_default();
    let limiter_active = limiter.enabled.unwrap_or(true);
    let limiter_driver = limiter.driver.unwrap_or_default();
    if max_replicas > 1 && limiter_active && limiter_driver == RateLimiterDriver::Memory {
        w.push(format!(
            "rateLimiter.driver is memory with up to {max_replicas} replicas: each node counts on its own, so a client can get up to {max_replicas} times the limit; use redis for fleet-wide limits"
        ));
    }
    let adapter = spec.adapter.as_ref().map(|a| a.driver).unwrap_or_default();
    let delta = spec.delta_compression.clone().unwrap_or_default();
    if delta.cluster_coordination == Some(true) && delta.enabled == Some(false) {
        w.push("deltaCompression.clusterCoordination has no effect while deltaCompression.enabled is false".into());
    }
    if spec
        .cache
        .as_ref()
        .is_some_and(|c| c.driver == CacheDriver::None)
    {
        w.push("cache.driver is none: cache channels will not replay their last event".into());
    }
    let topology = Topology::of(spec);
    if spec.redis.is_some() && !topology.uses(RedisRole::Shared) {
        w.push("spec.redis is not used by the adapter, cache or rate limiter; no Redis is deployed for it".into());
    }
    if spec.cache.as_ref().is_some_and(|c| c.redis.is_some()) && !topology.uses(RedisRole::Cache) {
        w.push("spec.cache.redis is not used (cache.driver is not redis or redis-cluster)".into());
    }
    if spec
        .rate_limiter
        .as_ref()
        .is_some_and(|l| l.redis.is_some())
        && !topology.uses(RedisRole::RateLimiter)
    {
        w.push("spec.rateLimiter.redis is not used (the limiter is off or not on redis)".into());
    }
    if spec.nats.is_some() && adapter != AdapterDriver::Nats {
        w.push(
            "spec.nats is not used (adapter.driver is not nats); no NATS is deployed for it".into(),
        );
    }
    w
}
