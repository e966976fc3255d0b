use std::sync::Arc;

use rand::Rng;

use super::{SelectOptions, Strategy};
use crate::registry::Node;

/// Picks a node uniformly at random (go-micro's default).
#[derive(Clone, Copy, Debug, Default)]
pub struct Random;

impl Strategy for Random {
    fn pick<'a>(&self, _service: &str, nodes: &'a [Arc<Node>], _options: &SelectOptions) -> &'a Arc<Node> {
        &nodes[rand::thread_rng().gen_range(0..nodes.len())]
    }
}
