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
mod builder;
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

use crate::broker::{self, Broker};
use crate::codec::{self, Codecs, Message};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::metadata::Metadata;
use crate::selector::Selector;

pub use crate::transport::EncodedResponse;
pub use backoff::Backoff;
pub use builder::ClientBuilder;
pub use call::{Call, ClientRequest, Response};
pub use fail_mode::FailMode;
pub use fanout::FanoutReply;
pub use stream::Streaming;

use dispatch::{Dispatch, PreparedCall};
use stream::bad_response;

/// The type-erased service client layers wrap.
pub type ClientService = BoxCloneSyncService<ClientRequest, EncodedResponse, Error>;

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
        self.send(self.encoded_request(call, body, Some(self.inner.timeout)))
    }

    /// Sends `request` through the client's layers, if any, and dispatch.
    fn send(&self, request: ClientRequest) -> impl Future<Output = Result<EncodedResponse>> + Send + use<'_> {
        match &self.inner.layers {
            Some(layers) => Either::Left(layers.clone().oneshot(request)),
            None => Either::Right(self.inner.dispatch.dispatch(request)),
        }
    }

    /// The encoded form of `call`, with the client's defaults filled in; inside a handler, with
    /// what the incoming call passes on (its deadline and metadata).
    fn encoded_request(&self, call: Call, body: Bytes, default_timeout: Option<Duration>) -> ClientRequest {
        let call = match Context::current() {
            Some(ctx) => call.inherit(&ctx),
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
        let outgoing = PreparedCall::from(self.encoded_request(call, Bytes::new(), None));
        let opened = self.inner.dispatch.open_stream(&outgoing).await?;
        Ok(Streaming::new(opened, codec, outgoing.deadline, outgoing.head.service, outgoing.head.endpoint))
    }

    /// Publishes `message` to `topic` through the broker, encoded in the client's content type.
    pub async fn publish<M: Message>(&self, topic: &str, message: &M) -> Result<()> {
        self.publish_with(topic, message, Metadata::new()).await
    }

    /// Publishes `message` with `metadata` as headers (plus `content-type` and `micro-topic`).
    /// Inside a handler, the incoming call's metadata travels too, but its `authorization`
    /// (`metadata` wins).
    pub async fn publish_with<M: Message>(&self, topic: &str, message: &M, metadata: Metadata) -> Result<()> {
        let codec = self.inner.codecs.get(&self.inner.content_type)?;
        let mut headers = match Context::current() {
            Some(ctx) => {
                let mut inherited = ctx.metadata().clone();
                inherited.remove(crate::wrapper::auth::AUTHORIZATION);
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
