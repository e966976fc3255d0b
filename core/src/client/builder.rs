//! Building a [`Client`]: its backends, defaults, governance and layers.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use foldhash::HashSet;
use tower::util::BoxCloneSyncService;
use tower_layer::Layer;
use tower_service::Service;

use super::attempt::Attempt;
use super::budget::RetryBudget;
use super::dispatch::Dispatch;
use super::pool::{self, Pool};
use super::{Backoff, Client, ClientRequest, ClientService, DEFAULT_TIMEOUT, EncodedResponse, FailMode, Inner};
use crate::broker::{Broker, MemoryBroker};
use crate::codec::{Codecs, DEFAULT_CONTENT_TYPE};
use crate::error::Error;
use crate::registry::{MemoryRegistry, Registry};
use crate::selector::{RegistrySelector, Selector};
use crate::transport::{MemoryTransport, Transport};

type LayerFn = Arc<dyn Fn(ClientService) -> ClientService + Send + Sync>;

/// Builds a [`Client`].
#[derive(Default)]
pub struct ClientBuilder {
    transport: Option<Arc<dyn Transport>>,
    registry: Option<Arc<dyn Registry>>,
    selector: Option<Arc<dyn Selector>>,
    broker: Option<Arc<dyn Broker>>,
    codecs: Option<Codecs>,
    content_type: Option<String>,
    timeout: Option<Duration>,
    fail_mode: Option<FailMode>,
    idempotent: HashSet<String>,
    backoff: Option<Backoff>,
    budget: Option<RetryBudget>,
    pool_size: Option<usize>,
    pool_idle_ttl: Option<Duration>,
    layers: Vec<LayerFn>,
    attempt_layers: Vec<LayerFn>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("layers", &self.layers.len())
            .field("attempt_layers", &self.attempt_layers.len())
            .finish_non_exhaustive()
    }
}

fn boxed_layer<L>(layer: L) -> LayerFn
where
    L: Layer<ClientService> + Send + Sync + 'static,
    L::Service: Service<ClientRequest, Response = EncodedResponse, Error = Error> + Clone + Send + Sync + 'static,
    <L::Service as Service<ClientRequest>>::Future: Send + 'static,
{
    Arc::new(move |inner| BoxCloneSyncService::new(layer.layer(inner)))
}

impl ClientBuilder {
    /// The transport calls travel on.
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> ClientBuilder {
        self.transport = Some(transport);
        self
    }

    /// The registry nodes are found in (through a [`RegistrySelector`] unless a selector is set).
    pub fn registry(mut self, registry: Arc<dyn Registry>) -> ClientBuilder {
        self.registry = Some(registry);
        self
    }

    /// The selector that chooses nodes.
    pub fn selector(mut self, selector: Arc<dyn Selector>) -> ClientBuilder {
        self.selector = Some(selector);
        self
    }

    /// The broker messages are published to.
    pub fn broker(mut self, broker: Arc<dyn Broker>) -> ClientBuilder {
        self.broker = Some(broker);
        self
    }

    /// The codecs the client speaks.
    pub fn codecs(mut self, codecs: Codecs) -> ClientBuilder {
        self.codecs = Some(codecs);
        self
    }

    /// The content type of requests and published messages (default `application/protobuf`).
    pub fn content_type(mut self, content_type: impl Into<String>) -> ClientBuilder {
        self.content_type = Some(content_type.into());
        self
    }

    /// How long a unary call may take in all, retries included (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.timeout = Some(timeout);
        self
    }

    /// How many other nodes a call may try after a failure that is safe to send again (default
    /// 1; shorthand for [`FailMode::Failover`]).
    pub fn retries(mut self, retries: u32) -> ClientBuilder {
        self.fail_mode = Some(FailMode::Failover(retries));
        self
    }

    /// How calls react to failed attempts (default `Failover(1)`).
    pub fn fail_mode(mut self, mode: FailMode) -> ClientBuilder {
        self.fail_mode = Some(mode);
        self
    }

    /// Declares the endpoint (e.g. `Users.Get`) idempotent: calls to it may be sent again after
    /// errors raised once the request was sent, and hedged.
    pub fn idempotent(mut self, endpoint: impl Into<String>) -> ClientBuilder {
        self.idempotent.insert(endpoint.into());
        self
    }

    /// Caps retries (and hedges) to `percent` of calls plus `min_per_sec`, over a sliding `window`
    /// (default: 10 s window, 10 per second, 10 %), so a struggling service is not hit by a
    /// storm of retries. The window is kept between 1 and 60 s and `percent` (a fraction: 0.1
    /// is 10 %) between 0 and 1000.
    pub fn retry_budget(mut self, window: Duration, min_per_sec: u32, percent: f32) -> ClientBuilder {
        self.budget = Some(RetryBudget::new(window, min_per_sec, percent));
        self
    }

    /// How many connections to keep per address (default 1: every transport multiplexes calls
    /// on a connection); calls use them in turn.
    pub fn pool_size(mut self, size: usize) -> ClientBuilder {
        self.pool_size = Some(size);
        self
    }

    /// How long an unused connection is kept (default 60 s).
    pub fn pool_idle_ttl(mut self, ttl: Duration) -> ClientBuilder {
        self.pool_idle_ttl = Some(ttl);
        self
    }

    /// The wait between retries.
    pub fn backoff(mut self, backoff: Backoff) -> ClientBuilder {
        self.backoff = Some(backoff);
        self
    }

    /// Wraps every call (once per call, outside node selection and retries).
    pub fn layer<L>(mut self, layer: L) -> ClientBuilder
    where
        L: Layer<ClientService> + Send + Sync + 'static,
        L::Service: Service<ClientRequest, Response = EncodedResponse, Error = Error> + Clone + Send + Sync + 'static,
        <L::Service as Service<ClientRequest>>::Future: Send + 'static,
    {
        self.layers.push(boxed_layer(layer));
        self
    }

    /// Wraps every attempt (inside retries, with the chosen node set on the request).
    pub fn attempt_layer<L>(mut self, layer: L) -> ClientBuilder
    where
        L: Layer<ClientService> + Send + Sync + 'static,
        L::Service: Service<ClientRequest, Response = EncodedResponse, Error = Error> + Clone + Send + Sync + 'static,
        <L::Service as Service<ClientRequest>>::Future: Send + 'static,
    {
        self.attempt_layers.push(boxed_layer(layer));
        self
    }

    /// The client.
    pub fn build(self) -> Client {
        let transport = self.transport.unwrap_or_else(|| Arc::new(MemoryTransport::new()));
        let selector = self.selector.unwrap_or_else(|| {
            let registry = self.registry.unwrap_or_else(|| Arc::new(MemoryRegistry::new()));
            Arc::new(RegistrySelector::new(registry))
        });
        let pool = Arc::new(Pool::new(
            transport,
            self.pool_size.unwrap_or(pool::DEFAULT_POOL_SIZE),
            self.pool_idle_ttl.unwrap_or(pool::DEFAULT_POOL_IDLE_TTL),
        ));
        let wrap =
            |layers: &[LayerFn], inner: ClientService| layers.iter().rev().fold(inner, |service, layer| layer(service));
        let attempt_layers = (!self.attempt_layers.is_empty())
            .then(|| wrap(&self.attempt_layers, BoxCloneSyncService::new(Attempt { pool: pool.clone() })));
        let dispatch = Dispatch {
            selector: selector.clone(),
            attempt_layers,
            pool,
            backoff: self.backoff.unwrap_or_default(),
            budget: Arc::new(self.budget.unwrap_or_else(|| RetryBudget::new(Duration::from_secs(10), 10, 0.1))),
        };
        let layers = (!self.layers.is_empty()).then(|| wrap(&self.layers, BoxCloneSyncService::new(dispatch.clone())));
        Client {
            inner: Arc::new(Inner {
                layers,
                dispatch,
                selector,
                broker: self.broker.unwrap_or_else(|| Arc::new(MemoryBroker::new())),
                codecs: self.codecs.unwrap_or_default(),
                content_type: self.content_type.unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned()),
                timeout: self.timeout.unwrap_or(DEFAULT_TIMEOUT),
                fail_mode: self.fail_mode.unwrap_or_default(),
                idempotent: self.idempotent,
            }),
        }
    }
}
