//! Per-node health fed by `Selector::mark`: a node that fails several calls in a row is left out
//! for a while, then given traffic again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{Code, Error};

/// When a node is left out of selection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthPolicy {
    /// Consecutive failed calls after which the node is ejected.
    pub max_failures: u32,
    /// How long an ejected node gets no traffic.
    pub ejection: Duration,
}

impl Default for HealthPolicy {
    fn default() -> HealthPolicy {
        HealthPolicy { max_failures: 3, ejection: Duration::from_secs(10) }
    }
}

impl HealthPolicy {
    /// A policy ejecting a node for `ejection` after `max_failures` consecutive failures.
    pub fn new(max_failures: u32, ejection: Duration) -> HealthPolicy {
        HealthPolicy { max_failures, ejection }
    }
}

/// Whether an error says the node, not the request, is at fault.
pub(crate) fn is_node_failure(error: &Error) -> bool {
    matches!(error.code, Code::Unavailable | Code::DeadlineExceeded)
}

#[derive(Debug, Default)]
struct NodeHealth {
    failures: u32,
    ejected_until: Option<Instant>,
}

#[derive(Debug, Default)]
pub(crate) struct Health {
    policy: HealthPolicy,
    nodes: Mutex<HashMap<(String, String), NodeHealth>>,
}

impl Health {
    pub(crate) fn new(policy: HealthPolicy) -> Health {
        Health { policy, nodes: Mutex::default() }
    }

    fn nodes(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), NodeHealth>> {
        self.nodes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn record(&self, service: &str, node: &str, failed: bool) {
        let mut nodes = self.nodes();
        let key = (service.to_owned(), node.to_owned());
        if !failed {
            nodes.remove(&key);
            return;
        }
        let health = nodes.entry(key).or_default();
        health.failures += 1;
        if health.failures >= self.policy.max_failures {
            health.failures = 0;
            health.ejected_until = Some(Instant::now() + self.policy.ejection);
            tracing::warn!(service, node, ejection = ?self.policy.ejection, "node ejected after consecutive failures");
        }
    }

    pub(crate) fn is_ejected(&self, service: &str, node: &str) -> bool {
        let nodes = self.nodes();
        let key = (service.to_owned(), node.to_owned());
        nodes.get(&key).and_then(|h| h.ejected_until).is_some_and(|until| until > Instant::now())
    }

    pub(crate) fn reset(&self, service: &str) {
        self.nodes().retain(|(s, _), _| s != service);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ejects_after_consecutive_failures_and_returns_later() {
        let health = Health::new(HealthPolicy::new(2, Duration::from_secs(5)));
        health.record("s", "n", true);
        assert!(!health.is_ejected("s", "n"));
        health.record("s", "n", true);
        assert!(health.is_ejected("s", "n"));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(!health.is_ejected("s", "n"));
    }

    #[test]
    fn a_success_clears_failures() {
        let health = Health::new(HealthPolicy::new(2, Duration::from_secs(5)));
        health.record("s", "n", true);
        health.record("s", "n", false);
        health.record("s", "n", true);
        assert!(!health.is_ejected("s", "n"));
    }
}
