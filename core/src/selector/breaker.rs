//! A circuit breaker per node, fed by `Selector::mark`.
//!
//! A node's circuit opens after `consecutive_failures` failed calls in a row, or once at least
//! `min_samples` calls were seen and the share of failures among the last `min_samples` reaches
//! `error_rate` (rpcx's `NewRateBreaker(0.95, 100)`). An open circuit gets no traffic for
//! `cool_down`; then it is half-open and lets one probe call through: success closes it,
//! failure opens it again.
//!
//! Only nodes that failed lately have a circuit: the calls are counted from a node's first
//! failure, and a circuit whose last `min_samples` calls all succeeded is dropped. So while no
//! node fails, as is usual, recording a call takes no lock.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use foldhash::HashMap;
use tokio::time::Instant;

use crate::error::{Code, Error};

/// When a node's circuit opens and how long it stays open.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct BreakerPolicy {
    /// Failed calls in a row that open the circuit.
    pub consecutive_failures: u32,
    /// Share of failed calls (0..=1) over the last `min_samples` that opens the circuit.
    pub error_rate: f64,
    /// How many recent calls the error rate is taken over (and needs before it applies),
    /// counted from the node's first failure.
    pub min_samples: usize,
    /// How long an open circuit gets no traffic before a probe.
    pub cool_down: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> BreakerPolicy {
        BreakerPolicy {
            consecutive_failures: 5,
            error_rate: 0.95,
            min_samples: 100,
            cool_down: Duration::from_secs(10),
        }
    }
}

impl BreakerPolicy {
    /// A policy with the given thresholds and cool-down.
    pub fn new(consecutive_failures: u32, error_rate: f64, min_samples: usize, cool_down: Duration) -> BreakerPolicy {
        BreakerPolicy { consecutive_failures, error_rate, min_samples, cool_down }
    }
}

/// The state of one node's circuit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls flow.
    Closed,
    /// No calls until the cool-down ends.
    Open,
    /// One probe call may go (or is under way).
    HalfOpen,
}

/// Whether an error says the node, not the request, is at fault.
pub(crate) fn is_node_failure(error: &Error) -> bool {
    matches!(error.code, Code::Unavailable | Code::DeadlineExceeded | Code::Internal | Code::Unknown)
}

#[derive(Debug, Default)]
struct Circuit {
    consecutive: u32,
    recent: VecDeque<bool>,
    /// How many of `recent` failed.
    failures: usize,
    open_until: Option<Instant>,
    half_open: bool,
    probing: bool,
}

impl Circuit {
    /// The state now; the clock is only read for an open circuit, the rare case.
    fn state(&self) -> CircuitState {
        match self.open_until {
            Some(until) if until > Instant::now() => CircuitState::Open,
            Some(_) => CircuitState::HalfOpen,
            None if self.half_open => CircuitState::HalfOpen,
            None => CircuitState::Closed,
        }
    }

    /// Open or half-open: the node gets no calls, or only a probe.
    fn tripped(&self) -> bool {
        self.open_until.is_some() || self.half_open
    }

    /// Closed, with no failure among the calls it remembers: nothing to keep.
    fn is_clean(&self) -> bool {
        self.failures == 0 && self.consecutive == 0 && !self.tripped() && !self.probing
    }

    /// Counts a finished call and opens or closes the circuit accordingly.
    fn record(&mut self, policy: &BreakerPolicy, failed: bool, service: &str, node: &str) {
        if self.half_open {
            self.probing = false;
            if failed {
                self.open_until = Some(Instant::now() + policy.cool_down);
                tracing::warn!(service, node, "probe failed; circuit open again");
            } else {
                *self = Circuit::default();
                tracing::info!(service, node, "probe succeeded; circuit closed");
            }
            return;
        }
        self.consecutive = if failed { self.consecutive + 1 } else { 0 };
        self.recent.push_back(failed);
        self.failures += usize::from(failed);
        if self.recent.len() > policy.min_samples && self.recent.pop_front() == Some(true) {
            self.failures -= 1;
        }
        let failures = self.failures;
        let rate_tripped =
            self.recent.len() >= policy.min_samples && failures as f64 >= policy.error_rate * self.recent.len() as f64;
        if failed && (self.consecutive >= policy.consecutive_failures || rate_tripped) {
            tracing::warn!(service, node, consecutive = self.consecutive, failures, "circuit opened");
            *self = Circuit { open_until: Some(Instant::now() + policy.cool_down), ..Circuit::default() };
        }
    }
}

/// The circuits of every node by service, then node id (looked up by `&str`, allocating
/// nothing on a call's path).
type Circuits = HashMap<String, HashMap<String, Circuit>>;

#[derive(Debug, Default)]
pub(crate) struct Breakers {
    policy: BreakerPolicy,
    circuits: Mutex<Circuits>,
    /// How many circuits are tripped. While none is, as is usual, picking a node takes no lock.
    tripped: AtomicUsize,
    /// How many circuits there are. While there is none, a success takes no lock.
    listed: AtomicUsize,
}

fn circuit<'a>(circuits: &'a Circuits, service: &str, node: &str) -> Option<&'a Circuit> {
    circuits.get(service)?.get(node)
}

/// Drops `node`'s circuit, and `service`'s map once it has none left.
fn forget(circuits: &mut Circuits, service: &str, node: &str) {
    if let Some(nodes) = circuits.get_mut(service) {
        nodes.remove(node);
        if nodes.is_empty() {
            circuits.remove(service);
        }
    }
}

fn circuit_mut<'a>(circuits: &'a mut Circuits, service: &str, node: &str) -> Option<&'a mut Circuit> {
    circuits.get_mut(service)?.get_mut(node)
}

impl Breakers {
    pub(crate) fn new(policy: BreakerPolicy) -> Breakers {
        Breakers { policy, ..Breakers::default() }
    }

    fn circuits(&self) -> std::sync::MutexGuard<'_, Circuits> {
        self.circuits.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether any circuit is tripped. A stale answer is as good as reading just before the
    /// change, so no ordering beyond the count's own is needed.
    fn any_tripped(&self) -> bool {
        self.tripped.load(Ordering::Relaxed) > 0
    }

    /// Whether a call may be sent to the node now (does not change the circuit).
    pub(crate) fn admits(&self, service: &str, node: &str) -> bool {
        if !self.any_tripped() {
            return true;
        }
        let circuits = self.circuits();
        match circuit(&circuits, service, node) {
            None => true,
            Some(c) => match c.state() {
                CircuitState::Closed => true,
                CircuitState::Open => false,
                CircuitState::HalfOpen => !c.probing,
            },
        }
    }

    /// A call is being sent to the node: if its circuit is half-open, this call is the probe.
    pub(crate) fn on_pick(&self, service: &str, node: &str) {
        if !self.any_tripped() {
            return;
        }
        let mut circuits = self.circuits();
        if let Some(c) = circuit_mut(&mut circuits, service, node) {
            if c.state() == CircuitState::HalfOpen {
                c.open_until = None;
                c.half_open = true;
                c.probing = true;
            }
        }
    }

    /// Records a finished call: `Some(true)` failed, `Some(false)` succeeded, `None` gave no
    /// verdict (cancelled).
    pub(crate) fn record(&self, service: &str, node: &str, failed: Option<bool>) {
        if failed != Some(true) && self.listed.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut circuits = self.circuits();
        let c = match (circuit_mut(&mut circuits, service, node), failed) {
            (Some(c), _) => c,
            (None, Some(true)) => {
                self.listed.fetch_add(1, Ordering::Relaxed);
                circuits.entry(service.to_owned()).or_default().entry(node.to_owned()).or_default()
            }
            (None, _) => return,
        };
        let was_tripped = c.tripped();
        match failed {
            Some(failed) => c.record(&self.policy, failed, service, node),
            None => c.probing = false,
        }
        match (was_tripped, c.tripped()) {
            (false, true) => self.tripped.fetch_add(1, Ordering::Relaxed),
            (true, false) => self.tripped.fetch_sub(1, Ordering::Relaxed),
            _ => 0,
        };
        if c.is_clean() {
            forget(&mut circuits, service, node);
            self.listed.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn state(&self, service: &str, node: &str) -> CircuitState {
        circuit(&self.circuits(), service, node).map_or(CircuitState::Closed, |c| c.state())
    }

    pub(crate) fn reset(&self, service: &str) {
        if let Some(nodes) = self.circuits().remove(service) {
            self.tripped.fetch_sub(nodes.values().filter(|c| c.tripped()).count(), Ordering::Relaxed);
            self.listed.fetch_sub(nodes.len(), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_on_consecutive_failures_then_probes_and_closes() {
        let b = Breakers::new(BreakerPolicy::new(3, 1.0, 1000, Duration::from_secs(5)));
        for _ in 0..3 {
            assert!(b.admits("s", "n"));
            b.record("s", "n", Some(true));
        }
        assert_eq!(b.state("s", "n"), CircuitState::Open);
        assert!(!b.admits("s", "n"));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(b.state("s", "n"), CircuitState::HalfOpen);
        assert!(b.admits("s", "n"));
        b.on_pick("s", "n");
        assert!(!b.admits("s", "n"), "one probe at a time");
        b.record("s", "n", Some(false));
        assert_eq!(b.state("s", "n"), CircuitState::Closed);
        assert!(!b.any_tripped(), "picks take no lock again");
    }

    #[tokio::test(start_paused = true)]
    async fn opens_on_error_rate_over_the_window() {
        let b = Breakers::new(BreakerPolicy::new(1000, 0.5, 10, Duration::from_secs(5)));
        for i in 0..10 {
            b.record("s", "n", Some(i % 2 == 0));
        }
        assert_eq!(b.state("s", "n"), CircuitState::Closed, "a success never opens a circuit");
        b.record("s", "n", Some(true));
        assert_eq!(b.state("s", "n"), CircuitState::Open, "5 of the last 10 failed");
    }

    #[test]
    fn only_nodes_that_failed_lately_have_a_circuit() {
        let b = Breakers::new(BreakerPolicy::new(5, 0.95, 4, Duration::from_secs(5)));
        for _ in 0..100 {
            b.record("s", "n", Some(false));
        }
        assert!(b.circuits().is_empty(), "successes of a healthy node are not kept");
        b.record("s", "n", Some(true));
        b.record("s", "n", None);
        for _ in 0..3 {
            b.record("s", "n", Some(false));
        }
        assert_eq!(b.listed.load(Ordering::Relaxed), 1, "the failure is among the last 4 calls");
        b.record("s", "n", Some(false));
        assert!(b.circuits().is_empty(), "the failure left the window");
        assert_eq!(b.listed.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_opens_again() {
        let b = Breakers::new(BreakerPolicy::new(1, 1.0, 1000, Duration::from_secs(5)));
        b.record("s", "n", Some(true));
        tokio::time::advance(Duration::from_secs(6)).await;
        b.on_pick("s", "n");
        b.record("s", "n", Some(true));
        assert_eq!(b.state("s", "n"), CircuitState::Open);
        assert!(!b.admits("s", "n"));
        b.reset("s");
        assert!(!b.any_tripped());
        assert!(b.admits("s", "n"));
    }
}
