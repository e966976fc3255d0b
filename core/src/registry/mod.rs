//! Service discovery: where the nodes of each service are, and how that changes.

mod memory;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::error::Result;

pub use memory::MemoryRegistry;

/// A service at one version, with the nodes that run it.
///
/// The JSON form is go-micro's, so registries shared with go-micro services read the same records.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// The service name, e.g. `greeter`.
    pub name: String,
    /// The version the nodes run, e.g. `1.0.0`.
    #[serde(default)]
    pub version: String,
    /// Free-form labels of the service.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// The endpoints the service serves.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// The running instances.
    #[serde(default)]
    pub nodes: Vec<Node>,
}

/// One running instance of a service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Node {
    /// Unique among the service's nodes, e.g. `greeter-6f1c...`.
    pub id: String,
    /// Where the node's transport listens.
    pub address: String,
    /// Labels of the node (transport, weight, zone, ...).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// One endpoint of a service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The endpoint name, e.g. `Greeter.Hello`.
    pub name: String,
    /// The request message type.
    #[serde(default)]
    pub request: String,
    /// The response message type.
    #[serde(default)]
    pub response: String,
    /// Labels of the endpoint (`stream`, ...).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// What changed in the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// Nodes appeared.
    Create,
    /// Known nodes changed.
    Update,
    /// Nodes left, deregistered or expired.
    Delete,
}

/// A change to one service: the nodes in `service.nodes` were created, updated or deleted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The service, carrying only the nodes the event is about.
    pub service: ServiceRecord,
}

/// A stream of registry changes. An `Err` item means changes may have been missed (the watch
/// lagged or the connection to the registry broke); re-read the services.
pub type Watcher = BoxStream<'static, Result<Event>>;

/// What a registry backend can do, declared rather than assumed: a backend that cannot do
/// something says so here, never silently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Registrations made through this registry are seen by other processes that use the same
    /// registry; `false` for a backend that keeps them in its own process.
    pub shared: bool,
}

impl Default for Capabilities {
    /// Everything: what a registry server shared by every process gives.
    fn default() -> Capabilities {
        Capabilities { shared: true }
    }
}

/// A service registry.
#[async_trait]
pub trait Registry: Send + Sync + fmt::Debug + 'static {
    /// The registry's name, e.g. `memory`, `mdns`, `etcd`.
    fn name(&self) -> &'static str;
    /// What this backend can do; everything unless it says otherwise.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
    /// Adds (or refreshes) the nodes of `service`. With a TTL, a node not registered again within
    /// it is removed as if deregistered. A service without a name, or a node without an id or an
    /// address, is a [`Code::BadRequest`](crate::Code::BadRequest) and registers nothing.
    async fn register(&self, service: &ServiceRecord, ttl: Option<Duration>) -> Result<()>;
    /// Removes the nodes of `service`. Removing nodes that are not there is not an error.
    async fn deregister(&self, service: &ServiceRecord) -> Result<()>;
    /// Every version of the service named `name`, with its nodes;
    /// [`Code::NotFound`](crate::Code::NotFound) when no node runs it.
    async fn get_service(&self, name: &str) -> Result<Vec<ServiceRecord>>;
    /// Every service, at every version, with its nodes.
    async fn list_services(&self) -> Result<Vec<ServiceRecord>>;
    /// Changes from now on, to the service named `service` or, with `None`, to every service.
    async fn watch(&self, service: Option<&str>) -> Result<Watcher>;
}
