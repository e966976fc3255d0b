//! Smooth weighted round robin (nginx's algorithm, as in rpcx), with slow start for new nodes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use foldhash::HashMap;
use tokio::time::Instant;

use super::{SelectOptions, Strategy};
use crate::registry::Node;

/// The node label holding a node's weight (a positive integer; 1 when absent or invalid).
pub const WEIGHT_LABEL: &str = "weight";

/// Spreads calls in proportion to the `weight` label, interleaved rather than in bursts:
/// weights 5, 1, 1 give `a a b a c a a`. A node seen for the first time ramps from a small
/// share to its full weight over the slow-start period, so a cold node is not flooded.
#[derive(Debug)]
pub struct WeightedRoundRobin {
    slow_start: Duration,
    state: Mutex<HashMap<String, HashMap<String, Entry>>>,
}

#[derive(Debug)]
struct Entry {
    current: i64,
    first_seen: Instant,
}

impl Default for WeightedRoundRobin {
    fn default() -> WeightedRoundRobin {
        WeightedRoundRobin::new()
    }
}

impl WeightedRoundRobin {
    /// Weighted round robin without slow start.
    pub fn new() -> WeightedRoundRobin {
        WeightedRoundRobin { slow_start: Duration::ZERO, state: Mutex::default() }
    }

    /// Ramps a new node's weight up linearly over `period`.
    pub fn slow_start(mut self, period: Duration) -> WeightedRoundRobin {
        self.slow_start = period;
        self
    }

    fn effective_weight(&self, node: &Node, first_seen: Instant, now: Instant) -> i64 {
        let weight =
            node.metadata.get(WEIGHT_LABEL).and_then(|w| w.parse::<i64>().ok()).filter(|w| *w > 0).unwrap_or(1);
        if self.slow_start.is_zero() {
            return weight;
        }
        let ramp = (now - first_seen).as_secs_f64() / self.slow_start.as_secs_f64();
        ((weight as f64 * ramp.min(1.0)).ceil() as i64).max(1)
    }
}

impl Strategy for WeightedRoundRobin {
    fn pick<'a>(&self, service: &str, nodes: &'a [Arc<Node>], _options: &SelectOptions) -> &'a Arc<Node> {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entries = state.entry(service.to_owned()).or_default();
        entries.retain(|id, _| nodes.iter().any(|n| &n.id == id));
        let mut total = 0;
        let mut best: Option<(usize, i64)> = None;
        for (i, node) in nodes.iter().enumerate() {
            let entry = entries.entry(node.id.clone()).or_insert(Entry { current: 0, first_seen: now });
            let weight = self.effective_weight(node, entry.first_seen, now);
            entry.current += weight;
            total += weight;
            if best.is_none_or(|(_, current)| entry.current > current) {
                best = Some((i, entry.current));
            }
        }
        let chosen = best.map_or(0, |(i, _)| i);
        if let Some(entry) = entries.get_mut(&nodes[chosen].id) {
            entry.current -= total;
        }
        &nodes[chosen]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weighted(weights: &[(&str, &str)]) -> Vec<Arc<Node>> {
        weights
            .iter()
            .map(|(id, w)| {
                Arc::new(Node {
                    id: (*id).into(),
                    metadata: [(WEIGHT_LABEL.to_owned(), (*w).to_owned())].into(),
                    ..Node::default()
                })
            })
            .collect()
    }

    #[test]
    fn weights_5_1_1_give_the_nginx_sequence() {
        let nodes = weighted(&[("a", "5"), ("b", "1"), ("c", "1")]);
        let wrr = WeightedRoundRobin::new();
        let picks: String = (0..14).map(|_| wrr.pick("s", &nodes, &SelectOptions::default()).id.as_str()).collect();
        assert_eq!(picks, "aabacaaaabacaa");
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_node_ramps_up_over_slow_start() {
        let wrr = WeightedRoundRobin::new().slow_start(Duration::from_secs(10));
        let old = weighted(&[("old", "10")]);
        for _ in 0..3 {
            wrr.pick("s", &old, &SelectOptions::default());
        }
        tokio::time::advance(Duration::from_secs(20)).await;
        let both = weighted(&[("old", "10"), ("new", "10")]);
        let count_new = |wrr: &WeightedRoundRobin| {
            (0..100).filter(|_| wrr.pick("s", &both, &SelectOptions::default()).id == "new").count()
        };
        let cold = count_new(&wrr);
        tokio::time::advance(Duration::from_secs(10)).await;
        let warm = count_new(&wrr);
        assert!(cold <= 10, "a new node gets a small share at first: {cold}/100");
        assert!((45..=55).contains(&warm), "after slow start it gets its full share: {warm}/100");
    }
}
