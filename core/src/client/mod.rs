//! The client: unary calls, streams and publishing, with node selection, deadlines and retries.
//!
//! # Layer order
//!
//! A unary call passes, outermost first, through:
//! 1. the layers added with [`ClientBuilder::layer`] (once per call, in the order added);
//! 2. dispatch: node selection, the call's overall deadline, and the [`FailMode`] (failover,
//!    failtry, hedging), sending a call again only when that is safe: the error is retryable and
//!    the endpoint idempotent or the request provably never sent; within a retry budget;
//! 3. the layers added with [`ClientBuilder::attempt_layer`] (once per attempt; the request's
//!    `node` and `attempt` are set);
//! 4. the transport.
//!
//! ```
//! # use rmicro_core::prelude::*;
//! # async fn demo(client: Client) -> Result<(), Error> {
//! # #[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
//! # struct Hello { #[prost(string, tag = "1")] name: String }
//! let reply: Response<Hello> = client
//!     .call(Call::new("greeter", "Greeter.Hello"), &Hello { name: "ada".into() })
//!     .await?;
//! # Ok(()) }
//! ```

mod attempt;
mod backoff;
mod budget;
mod call;
mod dispatch;
mod fail_mode;
mod fanout;
mod pool;
mod stream;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use foldhash::HashSet;
use futures::FutureExt;
use futures::future::Either;
use tokio::time::Instant;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use tower_layer::Layer;
use tower_service::Service;

use crate::broker::{self, Broker, MemoryBroker};
use crate::codec::{self, Codecs, Message};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::metadata::Metadata;
use crate::registry::{MemoryRegistry, Registry};
use crate::selector::{RegistrySelector, Selector};
use crate::transport::{MemoryTransport, Transport};

pub use crate::transport::EncodedResponse;
pub use backoff::Backoff;
pub use call::{Call, ClientRequest, Response};
pub use fail_mode::FailMode;
pub use fanout::FanoutReply;
pub use stream::Streaming;

use attempt::Attempt;
use budget::RetryBudget;
use dispatch::{Dispatch, PreparedCall};
use pool::Pool;
use stream::bad_response;

/// The type-erased service client layers wrap.
pub type ClientService = BoxCloneSyncService<ClientRequest, EncodedResponse, Error>;

type LayerFn = Arc<dyn Fn(ClientService) -> ClientService + Send + Sync>;

/// The default time a unary call may take, as in go-micro.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The default number of retries of a retryable failure, as in go-micro.
pub const DEFAULT_RETRIES: u32 = 1;

/// Calls services and publishes messages. Cheap to clone; clones share connections and caches.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    /// The layers added with [`ClientBuilder::layer`] over dispatch; `None` when none were.
    layers: Option<ClientService>,
    dispatch: Dispatch,
    selector: Arc<dyn Selector>,
    broker: Arc<dyn Broker>,
    codecs: Codecs,
    content_type: String,
    timeout: Duration,
    fail_mode: FailMode,
    idempotent: HashSet<String>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("selector", &self.inner.selector)
            .field("broker", &self.inner.broker.name())
            .field("content_type", &self.inner.content_type)
            .field("timeout", &self.inner.timeout)
            .field("fail_mode", &self.inner.fail_mode)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A builder; every backend not set is the in-memory one.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Calls the endpoint named by `call` with `request`, decoding the response as `Resp`.
    ///
    /// The request is encoded when this is called, not when the future is first polled, so the
    /// future borrows only the client. Nor is this an `async fn` (nor are the steps below it):
    /// such a function keeps its arguments beside the futures they are moved into, and a call's
    /// future is copied as it is built and spawned.
    pub fn call<Req, Resp>(
        &self,
        call: Call,
        request: &Req,
    ) -> impl Future<Output = Result<Response<Resp>>> + Send + use<'_, Req, Resp>
    where
        Req: Message,
        Resp: Message + Default,
    {
        let prepared = self.inner.codecs.get(self.content_type_of(&call)).cloned().and_then(|codec| {
            let body = codec.encode(request)?;
            Ok((codec, body))
        });
        match prepared {
            Err(e) => Either::Left(std::future::ready(Err(e))),
            Ok((codec, body)) => Either::Right(self.call_bytes(call, body).map(move |raw| {
                let raw = raw?;
                let message = codec::decode(&*codec, raw.body).map_err(bad_response)?;
                Ok(Response::new(raw.metadata, message))
            })),
        }
    }

    /// Calls with an already encoded body (in the call's content type), as proxies and gateways do.
    pub fn call_bytes(
        &self,
        call: Call,
        body: Bytes,
    ) -> impl Future<Output = Result<EncodedResponse>> + Send + use<'_> {
        self.send(self.raw_request(call, body, Some(self.inner.timeout)))
    }

    /// Sends `raw` through the client's layers, if any, and dispatch.
    fn send(&self, raw: ClientRequest) -> impl Future<Output = Result<EncodedResponse>> + Send + use<'_> {
        match &self.inner.layers {
            Some(layers) => Either::Left(layers.clone().oneshot(raw)),
            None => Either::Right(self.inner.dispatch.dispatch(raw)),
        }
    }

    /// The encoded form of `call`, with the client's defaults filled in; inside a handler, with
    /// what the incoming call passes on (its deadline and metadata).
    fn raw_request(&self, call: Call, body: Bytes, default_timeout: Option<Duration>) -> ClientRequest {
        let call = match Context::current() {
            Some(ctx) => call.context(&ctx),
            None => call,
        };
        let inner = &self.inner;
        ClientRequest {
            content_type: self.content_type_of(&call).to_owned(),
            deadline: self.deadline_of(&call, default_timeout),
            idempotent: call.idempotent.unwrap_or_else(|| inner.idempotent.contains(&call.endpoint)),
            fail_mode: call.fail_mode.unwrap_or(inner.fail_mode),
            service: call.service,
            endpoint: call.endpoint,
            metadata: call.metadata,
            body,
            node: None,
            attempt: 0,
            address: call.address,
            key: call.key,
            filters: call.filters,
        }
    }

    /// Opens a bidirectional stream to the endpoint named by `call`. Streams have no default
    /// timeout: set one on the call to bound them. Opening goes to another node when the first
    /// cannot be reached, as the call's fail mode allows.
    pub async fn stream<Req, Resp>(&self, call: Call) -> Result<Streaming<Req, Resp>>
    where
        Req: Message,
        Resp: Message + Default,
    {
        let codec = self.inner.codecs.get(self.content_type_of(&call))?.clone();
        let outgoing = PreparedCall::from(self.raw_request(call, Bytes::new(), None));
        let opened = self.inner.dispatch.open_stream(&outgoing).await?;
        Ok(Streaming::new(opened, codec, outgoing.deadline, outgoing.head.service, outgoing.head.endpoint))
    }

    /// Publishes `message` to `topic` through the broker, encoded in the client's content type.
    pub async fn publish<M: Message>(&self, topic: &str, message: &M) -> Result<()> {
        self.publish_with(topic, message, Metadata::new()).await
    }

    /// Publishes `message` with `metadata` as headers (plus `content-type` and `micro-topic`).
    /// Inside a handler, the incoming call's metadata travels too (`metadata` wins).
    pub async fn publish_with<M: Message>(&self, topic: &str, message: &M, metadata: Metadata) -> Result<()> {
        let codec = self.inner.codecs.get(&self.inner.content_type)?;
        let mut headers = match Context::current() {
            Some(ctx) => {
                let mut inherited = ctx.metadata().clone();
                inherited.merge(&metadata);
                inherited
            }
            None => metadata,
        };
        headers.insert("content-type", codec.content_type());
        headers.insert("micro-topic", topic);
        let body = codec.encode(message)?;
        self.inner.broker.publish(topic, broker::Envelope { headers, body }).await
    }

    /// The selector this client chooses nodes with.
    pub fn selector(&self) -> &Arc<dyn Selector> {
        &self.inner.selector
    }

    /// The broker this client publishes to.
    pub fn broker(&self) -> &Arc<dyn Broker> {
        &self.inner.broker
    }

    fn content_type_of<'a>(&'a self, call: &'a Call) -> &'a str {
        call.content_type.as_deref().unwrap_or(&self.inner.content_type)
    }

    fn deadline_of(&self, call: &Call, default_timeout: Option<Duration>) -> Option<Instant> {
        let timeout = call.timeout.or(default_timeout).map(|t| Instant::now() + t);
        match (call.deadline, timeout) {
            (Some(d), Some(t)) => Some(d.min(t)),
            (d, t) => d.or(t),
        }
    }
}

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
                content_type: self.content_type.unwrap_or_else(|| codec::DEFAULT_CONTENT_TYPE.to_owned()),
                timeout: self.timeout.unwrap_or(DEFAULT_TIMEOUT),
                fail_mode: self.fail_mode.unwrap_or_default(),
                idempotent: self.idempotent,
            }),
        }
    }
}
