//! Point-to-point transfer of calls between client and server.
//!
//! A server [`listen`](Transport::listen)s and takes [`IncomingCall`]s, which the listener's
//! tasks hand it straight (through [`ServeCalls`]) or queue for [`Listener::accept`]; a client
//! [`dial`](Transport::dial)s an address once and opens many concurrent calls on the
//! [`Connection`]. Every call is a stream: the client sends request messages and closes its side,
//! the server sends an optional header, response messages and a final status. A unary call is a
//! stream of one message each way. Dropping the client's side before the status arrives cancels
//! the call on the server ([`IncomingCall::cancel`] fires).

mod memory;
mod tls;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::metadata::Metadata;

pub use memory::MemoryTransport;
pub use tls::TlsConfig;

/// Default largest message a transport accepts, as in gRPC: 4 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

/// An encoded answer: the metadata sent back and the encoded response. The one response type
/// of client layers, server layers and transports alike.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EncodedResponse {
    /// Metadata the server sent back.
    pub metadata: Metadata,
    /// The encoded response.
    pub body: Bytes,
}

impl EncodedResponse {
    /// A response of `body` with `metadata`.
    pub fn new(metadata: Metadata, body: Bytes) -> EncodedResponse {
        EncodedResponse { metadata, body }
    }
}

/// What serves the calls a listener receives. A server plugs itself into its listeners through
/// this (see [`Listener::deliver_to`]), as tonic's transport server takes any tower `Service`;
/// the listener's tasks then hand each call over with no queue in between.
pub trait ServeCalls: Send + Sync + fmt::Debug + 'static {
    /// Serves `call` on a task of its own. On a current-thread runtime the call may first run on
    /// the caller's task, up to where it would wait. `if_running` runs before a call that may go
    /// on after this returns is spawned, and not for a call served to its end here.
    fn spawn(&self, call: IncomingCall, if_running: &mut dyn FnMut());
    /// Serves a unary `call` on the task that awaits the future, and a stream on a task of its
    /// own (the awaiting task must get back to its transport for the stream's messages to flow).
    fn serve(&self, call: IncomingCall) -> BoxFuture<'static, ()>;
}

/// What a call is about, sent before its first message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallHead {
    /// The service called, e.g. `greeter`.
    pub service: String,
    /// The endpoint called, e.g. `Greeter.Hello`.
    pub endpoint: String,
    /// The content type of request messages; the server answers in the same one.
    pub content_type: String,
    /// The caller's metadata.
    pub metadata: Metadata,
    /// How long the caller will still wait, measured when the call was sent.
    pub timeout: Option<Duration>,
    /// Whether the caller streams (more than one message either way) rather than calls once.
    pub stream: bool,
}

/// A way to carry calls between processes (or within one).
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug + 'static {
    /// The transport's name, e.g. `memory`, `http`, advertised in node metadata.
    fn name(&self) -> &'static str;
    /// Accepts calls on `address`; an empty address (or a port of 0) picks a free one.
    async fn listen(&self, address: &str) -> Result<Box<dyn Listener>>;
    /// Connects to a listener; the connection carries many concurrent calls. A refused connection
    /// is [`Code::Unavailable`](crate::Code::Unavailable) and [unsent](crate::Error::unsent).
    async fn dial(&self, address: &str) -> Result<Arc<dyn Connection>>;
}

/// The server side of a transport: a stream of incoming calls.
#[async_trait]
pub trait Listener: Send + Sync + fmt::Debug {
    /// The address clients dial to reach this listener.
    fn address(&self) -> String;
    /// The next call; `None` once the listener can accept no more.
    async fn accept(&mut self) -> Option<IncomingCall>;
    /// Hands calls to `server` from now on instead of queueing them for `accept` (see
    /// [`raw::Arrivals`](crate::raw::Arrivals)); a listener that only queues ignores it.
    fn deliver_to(&mut self, _server: Arc<dyn ServeCalls>) {}
    /// Stops listening and closes connections once what they carry has been delivered (the
    /// server calls it after its in-flight calls finished). Dropping the listener instead stops
    /// accepting only.
    async fn shutdown(self: Box<Self>) {}
}

/// The client side of a transport: opens calls to one listener.
#[async_trait]
pub trait Connection: Send + Sync + fmt::Debug {
    /// Starts a call; fails with [`Code::Unavailable`](crate::Code::Unavailable) when the peer
    /// cannot be reached. Mark such errors [`Error::unsent`](crate::Error::unsent) when the call
    /// provably was not delivered, so that even non-idempotent calls may be retried.
    async fn open(&self, head: CallHead) -> Result<ClientCall>;
    /// Sends a unary call (`head.stream` is false) with its one request and waits for its one
    /// response. This goes through [`open`](Connection::open); a transport that carries a unary
    /// call in one message each way overrides it, sparing every call the per-message plumbing.
    async fn unary(&self, head: &CallHead, request: Bytes) -> Result<EncodedResponse> {
        let mut call = self.open(head.clone()).await?;
        let sent = async {
            call.requests.send(request).await?;
            call.requests.close().await
        }
        .await;
        // A request the other side stopped taking was answered already: its status says why.
        // Any other failure to send is the caller's answer, with nothing awaited.
        if let Some(e) =
            sent.as_ref().err().filter(|e| !matches!(e.code, crate::Code::Canceled | crate::Code::Unavailable))
        {
            return Err(e.clone());
        }
        let body = match call.responses.recv().await? {
            Some(body) => body,
            None => return Err(sent.err().unwrap_or_else(|| crate::Error::internal("the server sent no response"))),
        };
        call.responses.recv().await?;
        let metadata = call.responses.header().cloned().unwrap_or_default();
        Ok(EncodedResponse::new(metadata, body))
    }
    /// Whether the connection can carry no more calls and should be dialled again.
    fn is_closed(&self) -> bool;
}

/// Sends messages one way on a call.
#[async_trait]
pub trait MessageSink: Send + fmt::Debug {
    /// Sends one message.
    async fn send(&mut self, message: Bytes) -> Result<()>;
    /// Says no more messages follow (half-close).
    async fn close(&mut self) -> Result<()>;
}

/// Receives messages one way on a call.
#[async_trait]
pub trait MessageSource: Send + fmt::Debug {
    /// The next message; `Ok(None)` when the peer is done. On the client, the server's error
    /// status arrives as `Err`; on the server, a caller that went away arrives as
    /// [`Code::Canceled`](crate::Code::Canceled).
    async fn recv(&mut self) -> Result<Option<Bytes>>;
    /// The response header (client side): set once the first message or the status arrived.
    fn header(&self) -> Option<&Metadata> {
        None
    }
}

/// The request messages of an incoming call.
#[derive(Debug)]
pub enum Requests {
    /// A unary call's one request, arrived whole: the server reads it without waiting, and
    /// nothing is boxed for it.
    Whole(Bytes),
    /// Messages as they arrive: a stream's, or a request the transport receives in parts.
    Stream(Box<dyn MessageSource>),
}

impl Requests {
    /// The messages as a source to receive from, however they came.
    pub fn into_source(self) -> Box<dyn MessageSource> {
        match self {
            Requests::Whole(request) => Box::new(OneMessage(Some(request))),
            Requests::Stream(source) => source,
        }
    }
}

/// A source of exactly one message.
#[derive(Debug)]
struct OneMessage(Option<Bytes>);

#[async_trait]
impl MessageSource for OneMessage {
    async fn recv(&mut self) -> Result<Option<Bytes>> {
        Ok(self.0.take())
    }
}

/// The server's answer on a call.
#[async_trait]
pub trait Reply: Send + fmt::Debug {
    /// Sends response metadata; at most once, before the first message.
    async fn send_header(&mut self, metadata: Metadata) -> Result<()>;
    /// Sends one response message.
    async fn send(&mut self, message: Bytes) -> Result<()>;
    /// Ends the call with `status`.
    async fn finish(self: Box<Self>, status: Result<()>);
    /// Answers a unary call: its metadata, its one response and an OK status, or the error
    /// sending them met. A transport that sends all of it as one message overrides this.
    async fn answer(mut self: Box<Self>, metadata: Metadata, response: Bytes) {
        let sent = async {
            self.send_header(metadata).await?;
            self.send(response).await
        }
        .await;
        self.finish(sent).await
    }
}

/// A call as the client sees it.
#[derive(Debug)]
pub struct ClientCall {
    /// Request messages to the server.
    pub requests: Box<dyn MessageSink>,
    /// Response messages and the final status from the server. Dropping it before the status
    /// arrives cancels the call.
    pub responses: Box<dyn MessageSource>,
}

/// A call as the server sees it.
#[derive(Debug)]
pub struct IncomingCall {
    /// What is called, with the caller's metadata and remaining time.
    pub head: CallHead,
    /// Request messages from the client.
    pub requests: Requests,
    /// The answer.
    pub reply: Box<dyn Reply>,
    /// Fires when the caller goes away before the call finished.
    pub cancel: CancellationToken,
}
