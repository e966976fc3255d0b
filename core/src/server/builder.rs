//! Building a [`Server`]: its identity, registration, backends and layers.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tower::util::BoxCloneSyncService;
use tower_layer::Layer;
use tower_service::Service;

use super::router::{Endpoints, Router};
use super::{
    DEFAULT_REGISTER_INTERVAL, DEFAULT_REGISTER_TTL, DEFAULT_SHUTDOWN_TIMEOUT, EncodedResponse, Inner, Options, Server,
    ServerRequest, ServerService,
};
use crate::broker::{Broker, MemoryBroker};
use crate::codec::Codecs;
use crate::error::Error;
use crate::registry::{MemoryRegistry, Registry};
use crate::transport::{MemoryTransport, Transport};

type LayerFn = Box<dyn FnOnce(ServerService) -> ServerService + Send>;

/// Builds a [`Server`].
pub struct ServerBuilder {
    options: Options,
    transport: Option<Arc<dyn Transport>>,
    registry: Option<Arc<dyn Registry>>,
    broker: Option<Arc<dyn Broker>>,
    codecs: Option<Codecs>,
    layers: Vec<LayerFn>,
}

impl fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBuilder").field("options", &self.options).finish_non_exhaustive()
    }
}

impl ServerBuilder {
    pub(super) fn new(name: String) -> ServerBuilder {
        ServerBuilder {
            options: Options {
                id: format!("{name}-{}", uuid::Uuid::new_v4()),
                name,
                version: "latest".to_owned(),
                address: String::new(),
                metadata: BTreeMap::new(),
                register_ttl: DEFAULT_REGISTER_TTL,
                register_interval: DEFAULT_REGISTER_INTERVAL,
                shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
                content_type: crate::codec::DEFAULT_CONTENT_TYPE.to_owned(),
            },
            transport: None,
            registry: None,
            broker: None,
            codecs: None,
            layers: Vec::new(),
        }
    }

    /// The version advertised in the registry (default `latest`).
    pub fn version(mut self, version: impl Into<String>) -> ServerBuilder {
        self.options.version = version.into();
        self
    }

    /// The node id (default the name and a random UUID).
    pub fn id(mut self, id: impl Into<String>) -> ServerBuilder {
        self.options.id = id.into();
        self
    }

    /// The address to listen on (default: one the transport picks).
    pub fn address(mut self, address: impl Into<String>) -> ServerBuilder {
        self.options.address = address.into();
        self
    }

    /// Adds a label advertised with the service.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> ServerBuilder {
        self.options.metadata.insert(key.into(), value.into());
        self
    }

    /// How long the registration lives unless renewed (default 90 s).
    pub fn register_ttl(mut self, ttl: Duration) -> ServerBuilder {
        self.options.register_ttl = ttl;
        self
    }

    /// How often the registration is renewed (default 30 s); keep it below the TTL.
    pub fn register_interval(mut self, interval: Duration) -> ServerBuilder {
        self.options.register_interval = interval;
        self
    }

    /// How long in-flight calls may go on once a stop began (default 10 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> ServerBuilder {
        self.options.shutdown_timeout = timeout;
        self
    }

    /// The content type assumed for published messages that name none.
    pub fn content_type(mut self, content_type: impl Into<String>) -> ServerBuilder {
        self.options.content_type = content_type.into();
        self
    }

    /// The transport to serve on.
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> ServerBuilder {
        self.transport = Some(transport);
        self
    }

    /// The registry to register in.
    pub fn registry(mut self, registry: Arc<dyn Registry>) -> ServerBuilder {
        self.registry = Some(registry);
        self
    }

    /// The broker subscribers listen on.
    pub fn broker(mut self, broker: Arc<dyn Broker>) -> ServerBuilder {
        self.broker = Some(broker);
        self
    }

    /// The codecs the server speaks.
    pub fn codecs(mut self, codecs: Codecs) -> ServerBuilder {
        self.codecs = Some(codecs);
        self
    }

    /// Wraps every unary call; the first layer added is the outermost.
    pub fn layer<L>(mut self, layer: L) -> ServerBuilder
    where
        L: Layer<ServerService> + Send + 'static,
        L::Service: Service<ServerRequest, Response = EncodedResponse, Error = Error> + Clone + Send + Sync + 'static,
        <L::Service as Service<ServerRequest>>::Future: Send + 'static,
    {
        self.layers.push(Box::new(move |inner| BoxCloneSyncService::new(layer.layer(inner))));
        self
    }

    /// The server, not yet started.
    pub fn build(self) -> Server {
        let codecs = self.codecs.unwrap_or_default();
        let endpoints = Endpoints::default();
        let router = Router { endpoints: endpoints.clone(), codecs: codecs.clone() };
        let layers = (!self.layers.is_empty()).then(|| {
            self.layers
                .into_iter()
                .rev()
                .fold(BoxCloneSyncService::new(router.clone()), |service, layer| layer(service))
        });
        Server {
            inner: Arc::new(Inner {
                options: self.options,
                transport: self.transport.unwrap_or_else(|| Arc::new(MemoryTransport::new())),
                registry: self.registry.unwrap_or_else(|| Arc::new(MemoryRegistry::new())),
                broker: self.broker.unwrap_or_else(|| Arc::new(MemoryBroker::new())),
                codecs,
                endpoints,
                subscribers: Mutex::default(),
                router,
                layers,
                accepting: AtomicBool::new(false),
                force_stop: CancellationToken::new(),
                running: tokio::sync::Mutex::new(None),
            }),
        }
    }
}
