use std::sync::{Arc, Mutex};

use foldhash::HashMap;

use super::{SelectOptions, Strategy};
use crate::registry::Node;

/// Takes the nodes in turn, per service.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: Mutex<HashMap<String, usize>>,
}

impl RoundRobin {
    /// A round robin starting at the first node of each service.
    pub fn new() -> RoundRobin {
        RoundRobin::default()
    }
}

impl Strategy for RoundRobin {
    fn pick<'a>(&self, service: &str, nodes: &'a [Arc<Node>], _options: &SelectOptions) -> &'a Arc<Node> {
        let mut next = self.next.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let turn = next.entry(service.to_owned()).or_default();
        let node = &nodes[*turn % nodes.len()];
        *turn = turn.wrapping_add(1);
        node
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_nodes_in_turn() {
        let nodes = crate::selector::test_nodes(3);
        let rr = RoundRobin::new();
        let ids: Vec<String> = (0..6).map(|_| rr.pick("svc", &nodes, &SelectOptions::default()).id.clone()).collect();
        assert_eq!(ids, ["n0", "n1", "n2", "n0", "n1", "n2"]);
    }
}
