//! Power of two choices: of two random nodes, the one with less expected wait.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use foldhash::HashMap;
use rand::seq::index::sample;

use super::{Outcome, SelectOptions, Strategy};
use crate::registry::Node;

/// How much a new latency sample counts in the moving average.
const EWMA_WEIGHT: f64 = 0.3;

/// Picks two nodes at random and sends the call to the one whose latency average (EWMA) times
/// (calls in flight + 1) is lower: load spreads by how fast nodes answer, with little
/// coordination and no herding on one "best" node.
#[derive(Debug, Default)]
pub struct PowerOfTwoChoices {
    load: Mutex<HashMap<(String, String), Load>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Load {
    ewma_micros: f64,
    in_flight: u32,
}

impl Load {
    fn cost(&self) -> f64 {
        (self.ewma_micros + 1.0) * f64::from(self.in_flight + 1)
    }
}

impl PowerOfTwoChoices {
    /// A strategy with no history.
    pub fn new() -> PowerOfTwoChoices {
        PowerOfTwoChoices::default()
    }
}

impl Strategy for PowerOfTwoChoices {
    fn pick<'a>(&self, service: &str, nodes: &'a [Arc<Node>], _options: &SelectOptions) -> &'a Arc<Node> {
        let mut load = self.load.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let chosen = if nodes.len() == 1 {
            0
        } else {
            let two = sample(&mut rand::thread_rng(), nodes.len(), 2);
            let cost =
                |i: usize| load.get(&(service.to_owned(), nodes[i].id.clone())).copied().unwrap_or_default().cost();
            let (a, b) = (two.index(0), two.index(1));
            if cost(b) < cost(a) { b } else { a }
        };
        load.entry((service.to_owned(), nodes[chosen].id.clone())).or_default().in_flight += 1;
        &nodes[chosen]
    }

    fn observe(&self, service: &str, node: &Node, outcome: &Outcome) {
        let mut load = self.load.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = load.entry((service.to_owned(), node.id.clone())).or_default();
        entry.in_flight = entry.in_flight.saturating_sub(1);
        let sample = micros(outcome.latency);
        entry.ewma_micros = if entry.ewma_micros == 0.0 {
            sample
        } else {
            entry.ewma_micros * (1.0 - EWMA_WEIGHT) + sample * EWMA_WEIGHT
        };
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selector::test_nodes;

    #[test]
    fn prefers_the_faster_node() {
        let (p2c, nodes) = (PowerOfTwoChoices::new(), test_nodes(2));
        let mut fast = 0;
        for _ in 0..1000 {
            let node = p2c.pick("s", &nodes, &SelectOptions::default());
            let latency = if node.id == "n0" { Duration::from_millis(1) } else { Duration::from_millis(50) };
            fast += usize::from(node.id == "n0");
            p2c.observe("s", node, &Outcome { latency, result: Some(Ok(())) });
        }
        assert!(fast > 950, "the fast node took {fast} of 1000 calls");
    }
}
