//! Cluster-wide webhook de-duplication in a shared cache.
//!
//! Channel and member webhooks are decided by one leader node (`adapter::horizontal::leader`),
//! but two nodes can both believe they lead for a while: a leader declared dead while it still
//! runs (a stall, a one-sided network cut), or the overlap while leadership moves. With a shared
//! cache (`cache.driver: redis | redis-cluster`) each transition is claimed before it is sent:
//! the cache holds the last announced state of each subject (`occupied` / `vacated`, a member
//! `added` / `removed`, the subscription count) and an atomic replace tells whether this node is
//! the first to announce the new state. A node that finds the state already announced drops the
//! event. Without a shared cache the leader rule alone applies.
//!
//! A cache error sends the event anyway: a webhook may then be duplicated, never lost.

use std::sync::Arc;
use std::time::Duration;

use crate::cache::Cache;
use crate::webhooks::ClusterEvent;

/// How long an "announced" state is remembered (a channel occupied for longer than this is
/// not protected from a duplicate `channel_occupied` by a second leader).
const PRESENT_TTL: Duration = Duration::from_secs(24 * 3600);
/// Removals only need to outlive a race between two leaders.
const ABSENT_TTL: Duration = Duration::from_secs(600);

/// The cache key, state and lifetime a transition is claimed with.
fn claim_of(app: &str, channel: &str, event: &ClusterEvent) -> (String, String, Duration) {
    let (subject, state, ttl) = match event {
        ClusterEvent::Occupied => ("occupancy".to_string(), "occupied".to_string(), PRESENT_TTL),
        ClusterEvent::Vacated => ("occupancy".to_string(), "vacated".to_string(), ABSENT_TTL),
        ClusterEvent::MemberAdded(u) => (format!("member:{u}"), "added".to_string(), PRESENT_TTL),
        ClusterEvent::MemberRemoved(u) => {
            (format!("member:{u}"), "removed".to_string(), ABSENT_TTL)
        }
        ClusterEvent::SubscriptionCount(n) => (
            "count".to_string(),
            n.to_string(),
            if *n == 0 { ABSENT_TTL } else { PRESENT_TTL },
        ),
    };
    (format!("webhook:{app}:{channel}:{subject}"), state, ttl)
}

/// Claims transitions in a shared cache.
pub struct Claims {
    cache: Arc<dyn Cache>,
}

impl Claims {
    /// None when the cache is not shared between nodes (it could not settle anything).
    pub fn new(cache: Arc<dyn Cache>) -> Option<Self> {
        cache.shared().then_some(Claims { cache })
    }

    /// Whether this node is the first to announce `event` (and so sends it).
    pub async fn claim(&self, app: &str, channel: &str, event: &ClusterEvent) -> bool {
        let (key, state, ttl) = claim_of(app, channel, event);
        match self.cache.replace(&key, state.clone(), ttl).await {
            Ok(previous) => previous.as_deref() != Some(state.as_str()),
            Err(e) => {
                tracing::warn!(error = %e, app, channel, ?event, "webhook de-duplication unavailable; sending");
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::memory::MemoryCache;

    #[tokio::test]
    async fn a_state_is_announced_once_until_it_changes() {
        // The memory cache is not shared, but its replace behaves like Redis's within a node.
        let claims = Claims {
            cache: Arc::new(MemoryCache::new(100)),
        };
        let c = |e: ClusterEvent| {
            let claims = &claims;
            async move { claims.claim("a", "ch", &e).await }
        };
        assert!(c(ClusterEvent::Occupied).await);
        assert!(!c(ClusterEvent::Occupied).await);
        assert!(c(ClusterEvent::Vacated).await);
        assert!(!c(ClusterEvent::Vacated).await);
        assert!(c(ClusterEvent::Occupied).await);
        assert!(c(ClusterEvent::MemberAdded("u".into())).await);
        assert!(!c(ClusterEvent::MemberAdded("u".into())).await);
        assert!(c(ClusterEvent::MemberAdded("v".into())).await);
        assert!(c(ClusterEvent::SubscriptionCount(2)).await);
        assert!(!c(ClusterEvent::SubscriptionCount(2)).await);
        assert!(c(ClusterEvent::SubscriptionCount(3)).await);
    }
}
