//! Typed handlers, erased so the server can store them by endpoint name.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::codec::{self, Codec, Message};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::metadata::Metadata;
use crate::registry;
use crate::transport::{MessageSource, Reply};

pub(crate) type UnaryFn =
    Arc<dyn Fn(Context, Bytes, Arc<dyn Codec>) -> BoxFuture<'static, Result<Bytes>> + Send + Sync>;
pub(crate) type StreamFn = Arc<dyn Fn(Context, EncodedStream) -> BoxFuture<'static, Result<()>> + Send + Sync>;

/// How an endpoint is served.
#[derive(Clone)]
pub(crate) enum Handler {
    Unary(UnaryFn),
    Stream(StreamFn),
}

/// A served endpoint: its handler and how it is described in the registry.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub(crate) handler: Handler,
    pub(crate) description: registry::Endpoint,
}

/// The short name of a type, without its module path, for endpoint descriptions.
fn short_type_name<T>() -> String {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base).to_owned()
}

fn describe<Req, Resp>(name: &str, stream: bool) -> registry::Endpoint {
    let mut metadata = std::collections::BTreeMap::new();
    if stream {
        metadata.insert("stream".to_owned(), "true".to_owned());
    }
    registry::Endpoint {
        name: name.to_owned(),
        request: short_type_name::<Req>(),
        response: short_type_name::<Resp>(),
        metadata,
    }
}

pub(crate) fn unary<Req, Resp, F, Fut>(name: &str, handler: F) -> Endpoint
where
    Req: Message + Default,
    Resp: Message,
    F: Fn(Context, Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp>> + Send + 'static,
{
    let handler = Arc::new(handler);
    let erased: UnaryFn = Arc::new(move |ctx, body, codec| {
        let handler = handler.clone();
        Box::pin(async move {
            let request: Req = codec::decode(&*codec, body)?;
            let response = handler(ctx, request).await?;
            codec.encode(&response)
        })
    });
    Endpoint { handler: Handler::Unary(erased), description: describe::<Req, Resp>(name, false) }
}

pub(crate) fn stream<Req, Resp, F, Fut>(name: &str, handler: F) -> Endpoint
where
    Req: Message + Default,
    Resp: Message,
    F: Fn(Context, ServerStream<Req, Resp>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let handler = Arc::new(handler);
    let erased: StreamFn = Arc::new(move |ctx, raw| {
        let handler = handler.clone();
        Box::pin(async move { handler(ctx, ServerStream { raw, _types: PhantomData }).await })
    });
    Endpoint { handler: Handler::Stream(erased), description: describe::<Req, Resp>(name, true) }
}

/// The reply half of a call, shared by a stream handler and the server that finishes the call
/// with the handler's result.
pub(crate) type SharedReply = Arc<tokio::sync::Mutex<SentReply>>;

/// A reply and whether its header has gone out.
#[derive(Debug)]
pub(crate) struct SentReply {
    pub(crate) reply: Option<Box<dyn Reply>>,
    pub(crate) header_sent: bool,
}

impl SentReply {
    pub(crate) fn shared(reply: Box<dyn Reply>) -> SharedReply {
        Arc::new(tokio::sync::Mutex::new(SentReply { reply: Some(reply), header_sent: false }))
    }

    /// Sends the handler's reply metadata unless already sent.
    pub(crate) async fn send_header(&mut self, metadata: Metadata) -> Result<()> {
        match self.reply.as_mut() {
            Some(reply) if !self.header_sent => {
                self.header_sent = true;
                reply.send_header(metadata).await
            }
            _ => Ok(()),
        }
    }

    pub(crate) async fn send(&mut self, body: Bytes) -> Result<()> {
        match self.reply.as_mut() {
            Some(reply) => reply.send(body).await,
            None => Err(Error::canceled("the call has ended")),
        }
    }
}

/// The transport's halves of a streaming call, with the codec it was called in.
#[derive(Debug)]
pub(crate) struct EncodedStream {
    pub(crate) ctx: Context,
    pub(crate) requests: Box<dyn MessageSource>,
    pub(crate) reply: SharedReply,
    pub(crate) codec: Arc<dyn Codec>,
}

/// The server's side of a stream: receive `Req`s, send `Resp`s. The stream ends when the
/// handler returns; its result is the status the client receives.
#[derive(Debug)]
pub struct ServerStream<Req, Resp> {
    raw: EncodedStream,
    _types: PhantomData<fn(Req) -> Resp>,
}

impl<Req: Message + Default, Resp: Message> ServerStream<Req, Resp> {
    /// The next request; `Ok(None)` once the client closed its side.
    pub async fn recv(&mut self) -> Result<Option<Req>> {
        match self.raw.requests.recv().await? {
            Some(body) => codec::decode(&*self.raw.codec, body).map(Some),
            None => Ok(None),
        }
    }

    /// Sends one response (after the reply metadata set on the context so far).
    pub async fn send(&mut self, message: &Resp) -> Result<()> {
        let body = self.raw.codec.encode(message)?;
        let mut reply = self.raw.reply.lock().await;
        reply.send_header(self.raw.ctx.reply_metadata()).await?;
        reply.send(body).await
    }
}
