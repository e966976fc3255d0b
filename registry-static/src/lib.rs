//! A registry whose nodes are given in configuration: peer-to-peer mode, as rpcx's and
//! go-micro's static/peer registries have it, for deployments that know their addresses and run
//! no registry server.
//!
//! The configured nodes are always there: they never expire, their metadata is empty, and each
//! node's id is made of its service, version and address, so every process names it alike.
//! `register`, `deregister`, TTLs and `watch` work for registrations made in this process (a
//! server in the same process, or the conformance kit), which are kept beside the configured
//! nodes as the in-memory registry keeps them. Registering or deregistering a node with a
//! configured node's id leaves it as configured.
//!
//! # Example
//!
//! ```
//! use rmicro_core::registry::Registry;
//! use rmicro_registry_static::{StaticConfig, StaticRegistry};
//!
//! # async fn demo() -> rmicro_core::Result<()> {
//! let config = StaticConfig::default().with_nodes([("greeter", "127.0.0.1:8080"), ("greeter", "127.0.0.1:8081")]);
//! let registry = StaticRegistry::connect(config).await?;
//! let greeter = registry.get_service("greeter").await?;
//! assert_eq!(greeter[0].nodes.len(), 2);
//! assert!(!registry.capabilities().shared);
//! # Ok(()) }
//! # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! # Configuration
//!
//! [`StaticConfig`], in code ([`StaticConfig::with_node`], [`StaticConfig::with_nodes`]) or from
//! settings ([`StaticConfig::from_env`], [`StaticConfig::from_settings`]); the `rmicro` facade
//! builds the registry through [`PLUGIN`] with `MICRO_REGISTRY=static`.
//!
//! | Field | Environment | Default | |
//! |---|---|---|---|
//! | [`nodes`](StaticConfig::nodes) | `MICRO_REGISTRY_ADDRESS` | none | `service=address` pairs, comma-separated; `service@version=address` gives a version |
//!
//! ```sh
//! MICRO_REGISTRY=static MICRO_REGISTRY_ADDRESS="greeter=127.0.0.1:8080,greeter=127.0.0.1:8081,users=10.0.0.5:9000"
//! ```
//!
//! An entry without `=`, or with an empty service or address, is a
//! [`Code::BadRequest`](rmicro_core::Code::BadRequest) error from
//! [`StaticConfig::from_settings`] and [`StaticRegistry::connect`].
//!
//! # Capabilities
//!
//! - [x] configured nodes, found by `get_service` and `list_services`, never expiring
//! - [x] register with TTL, deregister, watch (create/update/delete) for this process's registrations
//! - [ ] registrations seen by other processes: [`Capabilities::shared`] is `false`; every
//!   process reads the same configuration instead
//! - [ ] watch events for configured nodes (they are there from the start and never change)
//!
//! # Tests
//!
//! There is no service to start: `tests/conformance.rs` runs the core registry suite against a
//! registry with a configured node, and `tests/configured.rs` builds it from settings as the
//! facade does.

mod config;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rmicro_core::Result;
use rmicro_core::raw::plugin::{Build, Plugin};
use rmicro_core::registry::{Capabilities, MemoryRegistry, Node, Registry, ServiceRecord, Watcher};

pub use config::{StaticConfig, StaticNode};

/// The static registry as the `rmicro` facade builds it: `MICRO_REGISTRY=static`, configured by
/// [`StaticConfig::from_settings`].
pub static PLUGIN: Plugin = Plugin {
    names: &["static"],
    about: "nodes given as service=address pairs, peer to peer with no registry server; registrations stay in this process",
    default_address: "",
    settings: &[],
    build: Build::Registry(|settings| {
        Box::pin(async move {
            Ok(Arc::new(StaticRegistry::connect(StaticConfig::from_settings(&settings)?).await?) as Arc<dyn Registry>)
        })
    }),
};

/// The static registry: the configured nodes, and this process's registrations beside them.
#[derive(Clone, Debug)]
pub struct StaticRegistry {
    memory: MemoryRegistry,
    /// `(service, version, node id)` of each configured node, which `register` and
    /// `deregister` leave alone.
    configured: Arc<[(String, String, String)]>,
}

impl StaticRegistry {
    /// A registry holding the configured nodes; refuses a node without a service or address.
    pub async fn connect(config: StaticConfig) -> Result<StaticRegistry> {
        config.check()?;
        let memory = MemoryRegistry::new();
        for node in &config.nodes {
            let service = ServiceRecord {
                name: node.service.clone(),
                version: node.version.clone(),
                nodes: vec![Node { id: node.id(), address: node.address.clone(), ..Node::default() }],
                ..ServiceRecord::default()
            };
            memory.register(&service, None).await?;
        }
        let configured = config.nodes.iter().map(|n| (n.service.clone(), n.version.clone(), n.id())).collect();
        Ok(StaticRegistry { memory, configured })
    }

    /// `service` without the nodes that are configured, which stay as they are.
    fn unconfigured(&self, service: &ServiceRecord) -> ServiceRecord {
        let is_configured = |node: &Node| {
            self.configured
                .iter()
                .any(|(name, version, id)| *name == service.name && *version == service.version && *id == node.id)
        };
        let nodes = service.nodes.iter().filter(|node| !is_configured(node)).cloned().collect();
        ServiceRecord { nodes, ..service.clone() }
    }
}

#[async_trait]
impl Registry for StaticRegistry {
    fn name(&self) -> &'static str {
        "static"
    }

    /// Registrations stay in this process: other processes see only their own configuration.
    fn capabilities(&self) -> Capabilities {
        let mut capabilities = Capabilities::default();
        capabilities.shared = false;
        capabilities
    }

    async fn register(&self, service: &ServiceRecord, ttl: Option<Duration>) -> Result<()> {
        self.memory.register(&self.unconfigured(service), ttl).await
    }

    async fn deregister(&self, service: &ServiceRecord) -> Result<()> {
        self.memory.deregister(&self.unconfigured(service)).await
    }

    async fn get_service(&self, name: &str) -> Result<Vec<ServiceRecord>> {
        self.memory.get_service(name).await
    }

    async fn list_services(&self) -> Result<Vec<ServiceRecord>> {
        self.memory.list_services().await
    }

    async fn watch(&self, service: Option<&str>) -> Result<Watcher> {
        self.memory.watch(service).await
    }
}
