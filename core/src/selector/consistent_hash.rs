//! Consistent hashing on a ring with virtual nodes: the same key reaches the same node, and a
//! node joining or leaving moves only the keys it takes or gives up.

use std::sync::{Arc, Mutex};

use foldhash::HashMap;
use rand::Rng;

use super::{SelectOptions, Strategy};
use crate::registry::Node;

/// Points per node on the ring; more points spread keys more evenly.
const VIRTUAL_NODES: usize = 160;

/// Routes each call by a key: the call's key ([`Call::hash_key`](crate::client::Call::hash_key)),
/// or the value of a metadata entry. Calls without a key go to a random node.
#[derive(Debug, Default)]
pub struct ConsistentHash {
    metadata_key: Option<String>,
    rings: Mutex<HashMap<String, Arc<Ring>>>,
}

/// The ring of one service, built for one set of nodes.
#[derive(Debug)]
struct Ring {
    node_ids: Vec<String>,
    points: Vec<(u64, usize)>,
}

impl Ring {
    fn new(nodes: &[Arc<Node>]) -> Ring {
        let mut points = Vec::with_capacity(nodes.len() * VIRTUAL_NODES);
        for (i, node) in nodes.iter().enumerate() {
            for v in 0..VIRTUAL_NODES {
                points.push((fnv1a(format!("{}#{v}", node.id).as_bytes()), i));
            }
        }
        points.sort_unstable();
        Ring { node_ids: nodes.iter().map(|n| n.id.clone()).collect(), points }
    }

    fn locate(&self, key: &str) -> usize {
        let hash = fnv1a(key.as_bytes());
        let at = self.points.partition_point(|(point, _)| *point < hash);
        self.points[at % self.points.len()].1
    }
}

/// 64-bit FNV-1a, followed by a finalizer that spreads nearby inputs across the ring.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^ (hash >> 33)
}

impl ConsistentHash {
    /// Hashes on the call's key.
    pub fn new() -> ConsistentHash {
        ConsistentHash::default()
    }

    /// Hashes on the value of the metadata entry `key` when the call sets no key of its own.
    pub fn on_metadata(key: impl Into<String>) -> ConsistentHash {
        ConsistentHash { metadata_key: Some(key.into()), rings: Mutex::default() }
    }

    fn ring(&self, service: &str, nodes: &[Arc<Node>]) -> Arc<Ring> {
        let mut rings = self.rings.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match rings.get(service) {
            Some(ring) if ring.node_ids.iter().eq(nodes.iter().map(|n| &n.id)) => ring.clone(),
            _ => {
                let ring = Arc::new(Ring::new(nodes));
                rings.insert(service.to_owned(), ring.clone());
                ring
            }
        }
    }
}

impl Strategy for ConsistentHash {
    fn pick<'a>(&self, service: &str, nodes: &'a [Arc<Node>], options: &SelectOptions) -> &'a Arc<Node> {
        let from_metadata = self.metadata_key.as_deref().and_then(|k| options.metadata.get(k));
        match options.key.as_deref().or(from_metadata) {
            Some(key) => &nodes[self.ring(service, nodes).locate(key)],
            None => &nodes[rand::thread_rng().gen_range(0..nodes.len())],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selector::test_nodes;

    fn route(hash: &ConsistentHash, nodes: &[Arc<Node>], key: &str) -> String {
        hash.pick("s", nodes, &SelectOptions::default().key(key)).id.clone()
    }

    #[test]
    fn the_same_key_reaches_the_same_node() {
        let (hash, nodes) = (ConsistentHash::new(), test_nodes(3));
        for k in 0..1000 {
            let key = format!("user-{k}");
            let first = route(&hash, &nodes, &key);
            let mut shuffled = nodes.clone();
            shuffled.reverse();
            assert_eq!(route(&hash, &shuffled, &key), first, "node order does not matter");
            assert_eq!(route(&hash, &nodes, &key), first);
        }
    }

    #[test]
    fn adding_a_fourth_node_moves_about_a_quarter_of_the_keys() {
        let hash = ConsistentHash::new();
        let (three, four) = (test_nodes(3), test_nodes(4));
        let keys: Vec<String> = (0..10_000).map(|k| format!("key-{k}")).collect();
        let before: Vec<String> = keys.iter().map(|k| route(&hash, &three, k)).collect();
        let after: Vec<String> = keys.iter().map(|k| route(&hash, &four, k)).collect();
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        eprintln!("consistent hash: adding a 4th node moved {moved} of 10000 keys");
        assert!(
            after.iter().zip(&before).filter(|(a, b)| a != b).all(|(a, _)| a == "n3"),
            "keys only move to the new node"
        );
        assert!((1_500..=3_200).contains(&moved), "{moved} of 10000 keys moved");
        let share = |n: &str| after.iter().filter(|a| *a == n).count();
        assert!((0..4).all(|i| (1_500..=3_500).contains(&share(&format!("n{i}")))), "keys spread evenly");
    }

    #[test]
    fn the_key_can_come_from_metadata() {
        let (hash, nodes) = (ConsistentHash::on_metadata("x-user"), test_nodes(5));
        let mut options = SelectOptions::default();
        options.metadata.insert("x-user", "ada");
        let first = &hash.pick("s", &nodes, &options).id;
        assert!((0..50).all(|_| &hash.pick("s", &nodes, &options).id == first));
    }
}
