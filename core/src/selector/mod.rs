//! Node selection: turns the registry into a choice of node for each call.
//!
//! [`RegistrySelector`] keeps a cache of the registry fed by its watch, applies [`Filter`]s, leaves
//! out nodes that [`mark`](Selector::mark) reported failing, and lets a [`Strategy`] pick among
//! the rest.

mod cache;
pub mod filter;
mod health;
mod random;
mod round_robin;

use std::fmt;

use async_trait::async_trait;

use crate::error::Result;
use crate::registry::{Node, Service};

pub use cache::RegistrySelector;
pub use filter::Filter;
pub use health::HealthPolicy;
pub use random::Random;
pub use round_robin::RoundRobin;

/// What to take into account when choosing a node for one call.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct SelectOptions {
    /// Filters applied to the service's versions and nodes, in order.
    pub filters: Vec<Filter>,
    /// Ids of nodes already tried by this call; avoided while others remain.
    pub tried: Vec<String>,
}

impl SelectOptions {
    /// Adds a filter.
    pub fn filter(mut self, filter: Filter) -> SelectOptions {
        self.filters.push(filter);
        self
    }
}

/// Chooses nodes and learns from the outcome of calls to them.
#[async_trait]
pub trait Selector: Send + Sync + fmt::Debug + 'static {
    /// A node of `service` for the next call.
    /// [`Code::Unavailable`](crate::Code::Unavailable) when none is left after filtering.
    async fn select(&self, service: &str, options: &SelectOptions) -> Result<Node>;
    /// Reports how a call to `node` went, so failing nodes get less traffic.
    fn mark(&self, service: &str, node: &Node, outcome: &Result<()>);
    /// Forgets what is known about `service` (its cached nodes and their health).
    fn reset(&self, service: &str);
}

/// Picks one of a service's candidate nodes.
pub trait Strategy: Send + Sync + fmt::Debug + 'static {
    /// The node to call among `nodes` (never empty), for `service`.
    fn pick(&self, service: &str, nodes: &[Node]) -> Node;
}

/// The nodes of every version of a service, flattened.
pub(crate) fn nodes_of(services: &[Service]) -> Vec<Node> {
    services.iter().flat_map(|s| s.nodes.iter().cloned()).collect()
}

#[cfg(test)]
fn _object_safe(_: std::sync::Arc<dyn Selector>, _: std::sync::Arc<dyn Strategy>) {}
