//! Node selection: turns the registry into a choice of node for each call.
//!
//! [`RegistrySelector`] keeps a cache of the registry fed by its watch, applies [`Filter`]s,
//! leaves out nodes whose circuit [`mark`](Selector::mark) has opened (see [`BreakerPolicy`]),
//! and lets a [`Strategy`] pick among the rest:
//!
//! | Strategy | Picks |
//! |---|---|
//! | [`Random`] | uniformly at random (go-micro's default) |
//! | [`RoundRobin`] | in turn |
//! | [`WeightedRoundRobin`] | smooth weighted round robin on the `weight` node label, as nginx and rpcx, with slow start |
//! | [`ConsistentHash`] | the same node for the same key, moving few keys when nodes come and go |
//! | [`PowerOfTwoChoices`] | the less loaded of two random nodes (latency EWMA × calls in flight) |
//! | [`Closest`] | the node nearest the client (`latitude`/`longitude` node labels), as rpcx's geo selector |

mod breaker;
mod cache;
mod closest;
mod consistent_hash;
pub mod filter;
mod p2c;
mod random;
mod round_robin;
mod weighted;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;
use crate::metadata::Metadata;
use crate::registry::{Node, ServiceRecord};

pub use breaker::{BreakerPolicy, CircuitState};
pub use cache::{RegistrySelector, RegistrySelectorBuilder};
pub use closest::{Closest, LATITUDE_LABEL, LONGITUDE_LABEL};
pub use consistent_hash::ConsistentHash;
pub use filter::Filter;
pub use p2c::PowerOfTwoChoices;
pub use random::Random;
pub use round_robin::RoundRobin;
pub use weighted::{WEIGHT_LABEL, WeightedRoundRobin};

/// What to take into account when choosing a node for one call.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct SelectOptions {
    /// Filters applied to the service's versions and nodes, in order.
    pub filters: Vec<Filter>,
    /// Ids of nodes already tried by this call; avoided while others remain.
    pub tried: Vec<String>,
    /// The call's routing key, for strategies that route by key.
    pub key: Option<String>,
    /// The call's metadata, for strategies that route by it.
    pub metadata: Metadata,
}

impl SelectOptions {
    /// Adds a filter.
    pub fn filter(mut self, filter: Filter) -> SelectOptions {
        self.filters.push(filter);
        self
    }

    /// Sets the routing key.
    pub fn key(mut self, key: impl Into<String>) -> SelectOptions {
        self.key = Some(key.into());
        self
    }
}

/// How a call to a node ended, as reported to [`Selector::mark`].
#[derive(Clone, Debug)]
pub struct Outcome {
    /// How long the call took.
    pub latency: Duration,
    /// `None` when the call was abandoned (cancelled) before an answer; otherwise its result.
    pub result: Option<Result<()>>,
}

/// Chooses nodes and learns from the outcome of calls to them.
#[async_trait]
pub trait Selector: Send + Sync + fmt::Debug + 'static {
    /// A node of `service` for the next call; every chosen node must later be
    /// [`mark`](Selector::mark)ed. [`Code::Unavailable`](crate::Code::Unavailable) when no node
    /// is left after filtering. The node is shared with the selector's cache: a node carries its
    /// labels, and copying them for every call would cost a dozen allocations.
    async fn select(&self, service: &str, options: &SelectOptions) -> Result<Arc<Node>>;
    /// Every node of `service` that may take a call now (for broadcast and fork).
    async fn select_all(&self, service: &str, options: &SelectOptions) -> Result<Vec<Arc<Node>>>;
    /// Reports how a call to `node` went, so failing nodes get less or no traffic.
    fn mark(&self, service: &str, node: &Node, outcome: &Outcome);
    /// Forgets what is known about `service` (its cached nodes and their health).
    fn reset(&self, service: &str);
}

/// Picks one of a service's candidate nodes.
///
/// A strategy returns one of the candidates it is given rather than a node of its own: the
/// selector hands that node, shared, to the call.
///
/// ```
/// # use std::sync::Arc;
/// # use rmicro_core::registry::{MemoryRegistry, Node};
/// # use rmicro_core::selector::{RegistrySelector, SelectOptions, Strategy};
/// /// Sends every call to the node with the lowest id, as a primary/standby pair would.
/// #[derive(Debug)]
/// struct Primary;
///
/// impl Strategy for Primary {
///     fn pick<'a>(&self, _service: &str, nodes: &'a [Arc<Node>], _options: &SelectOptions) -> &'a Arc<Node> {
///         nodes.iter().min_by(|a, b| a.id.cmp(&b.id)).expect("the selector never passes an empty list")
///     }
/// }
///
/// let _primary_first = RegistrySelector::builder(Arc::new(MemoryRegistry::new())).strategy(Primary).build();
/// ```
pub trait Strategy: Send + Sync + fmt::Debug + 'static {
    /// The node to call among `nodes` (never empty), for `service`.
    fn pick<'a>(&self, service: &str, nodes: &'a [Arc<Node>], options: &SelectOptions) -> &'a Arc<Node>;
    /// Learns how a call to `node` went (strategies that weigh load use it).
    fn observe(&self, _service: &str, _node: &Node, _outcome: &Outcome) {}
}

/// The nodes of every version of a service, flattened.
pub(crate) fn nodes_of(services: &[ServiceRecord]) -> Vec<Arc<Node>> {
    services.iter().flat_map(|s| s.nodes.iter().cloned().map(Arc::new)).collect()
}

#[cfg(test)]
fn _object_safe(_: Arc<dyn Selector>, _: Arc<dyn Strategy>) {}

#[cfg(test)]
pub(crate) fn test_nodes(n: usize) -> Vec<Arc<Node>> {
    (0..n).map(|i| Arc::new(Node { id: format!("n{i}"), address: format!("memory:{i}"), ..Node::default() })).collect()
}
