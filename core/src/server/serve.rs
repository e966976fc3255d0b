//! Accepting calls and serving each one: deadline, cancellation, panics, and the reply.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Poll, Waker};

use bytes::Bytes;
use futures::future::Either;
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use futures::future::BoxFuture;

use super::Inner;
use super::bounded_call::BoundedCall;
use super::handler::{EncodedStream, Handler, SentReply, SharedReply, StreamFn, UnaryFn};
use super::router::{ServerRequest, find};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::transport::{CallHead, EncodedResponse, IncomingCall, Listener, MessageSource, Reply, Requests, ServeCalls};

/// Serves the calls a listener hands over: spawned, or on the listener's own task.
#[derive(Clone, Debug)]
struct CallServer {
    server: Arc<Inner>,
    calls: TaskTracker,
    /// Whether the server runs on a current-thread runtime, where a task of its own buys a call
    /// no parallelism.
    one_thread: bool,
}

impl ServeCalls for CallServer {
    /// Serves `call` on a task of its own. On a current-thread runtime the call first runs on the
    /// listener's task, up to where it would wait: a handler that answers at once then costs no
    /// task, and only a call that waits is moved to one. `if_running` runs before a call that
    /// may go on is spawned.
    fn spawn(&self, call: IncomingCall, if_running: &mut dyn FnMut()) {
        let served = self.calls.track_future(serve(self.server.clone(), call, None));
        if !self.one_thread {
            if_running();
            tokio::spawn(served);
            return;
        }
        let mut served = Box::pin(served);
        // A waker that does nothing is enough: a call still waiting is spawned, and a spawned
        // task is polled once straight away, with the waker that counts from then on. A panic
        // ends the call, as it would end a task of its own, and not the listener's task.
        let polled =
            catch_unwind(AssertUnwindSafe(|| served.as_mut().poll(&mut std::task::Context::from_waker(Waker::noop()))));
        match polled {
            Ok(Poll::Ready(())) => {}
            Ok(Poll::Pending) => {
                if_running();
                drop(tokio::spawn(served));
            }
            Err(_) => tracing::error!(server = %self.server.options.name, "serving a call panicked"),
        }
    }

    /// Serves a unary `call` on the task that awaits this, and a stream on a task of its own (the
    /// awaiting task must get back to its transport for the stream's messages to flow). A stop
    /// waits for both.
    fn serve(&self, call: IncomingCall) -> BoxFuture<'static, ()> {
        Box::pin(self.calls.track_future(serve(self.server.clone(), call, Some(self.calls.clone()))))
    }
}

/// Has the listener hand calls over straight, serves any it queued, and returns it at `stop`
/// for an orderly shutdown.
pub(crate) async fn accept(
    server: Arc<Inner>,
    mut listener: Box<dyn Listener>,
    stop: CancellationToken,
    calls: TaskTracker,
) -> Box<dyn Listener> {
    let one_thread = Handle::current().runtime_flavor() == RuntimeFlavor::CurrentThread;
    let call_server = CallServer { server, calls, one_thread };
    listener.deliver_to(Arc::new(call_server.clone()));
    loop {
        let call = tokio::select! {
            _ = stop.cancelled() => return listener,
            call = listener.accept() => call,
        };
        match call {
            Some(call) => call_server.spawn(call, &mut || {}),
            None => {
                tracing::warn!(server = %call_server.server.options.name, "listener closed; no more calls are accepted");
                return listener;
            }
        }
    }
}

/// Serves one call. The handler runs until it returns, the caller goes away, the deadline
/// passes or the server stops; whichever comes first decides the status the caller gets. With
/// `streams_apart`, a stream handler runs on a task of its own there.
#[expect(clippy::manual_async_fn, reason = "an async fn would hold its arguments twice")]
fn serve(
    server: Arc<Inner>,
    mut call: IncomingCall,
    streams_apart: Option<TaskTracker>,
) -> impl Future<Output = ()> + Send {
    // An async block rather than an `async fn`: such a function keeps each argument twice in its
    // state (as passed, and moved into the body), and this future is a call's whole task. The
    // call's parts are used in place for the same reason.
    async move {
        if !server.accepting.load(Ordering::SeqCst) {
            return call.reply.finish(Err(server.attributed(Error::unavailable("server is shutting down")))).await;
        }
        let endpoint = match find(&server.endpoints, &server.options.name, &call.head.endpoint) {
            Ok(endpoint) => endpoint,
            Err(e) => return call.reply.finish(Err(server.attributed(e))).await,
        };
        let deadline = call.head.timeout.map(|t| Instant::now() + t);
        // The context takes the call's metadata and cancellation token rather than copies: the
        // server watches the token through the context.
        let metadata = std::mem::take(&mut call.head.metadata);
        let ctx = Context::new(metadata, deadline.map(Instant::into_std), call.cancel);
        match &endpoint.handler {
            Handler::Unary(handler) => {
                let mut request = ServerRequest {
                    service: call.head.service,
                    endpoint: call.head.endpoint,
                    content_type: call.head.content_type,
                    body: Bytes::new(),
                    context: ctx.clone(),
                };
                // A request that came whole, with no layers to pass, goes straight to its
                // handler. Otherwise the work is boxed, so the call's task stays under 1 KiB:
                // glibc serves that from its caches, where a larger task made it consolidate its
                // free lists on every call.
                let work = match (&server.layers, call.requests) {
                    (None, Requests::Whole(body)) => {
                        request.body = body;
                        Either::Left(server.router.run(handler, request))
                    }
                    (_, requests) => Either::Right(Box::pin(unary(&server, handler, request, requests))),
                };
                let dropped = CancelIfDropped::new(ctx.cancellation_token());
                let status = BoundedCall::new(&server.options.name, deadline, &ctx, &server.force_stop, work).await;
                dropped.finished();
                match status {
                    Ok(response) => call.reply.answer(response.metadata, response.body).await,
                    Err(e) => call.reply.finish(Err(server.attributed(e))).await,
                }
            }
            // Boxed: a stream's state would otherwise enlarge every unary call's task.
            Handler::Stream(handler) => {
                let requests = call.requests.into_source();
                let stream = serve_stream(server, handler.clone(), call.head, requests, call.reply, ctx, deadline);
                match streams_apart {
                    Some(tasks) => drop(tasks.spawn(stream)),
                    None => Box::pin(stream).await,
                }
            }
        }
    }
}

/// Cancels a call's token when the call's future is dropped before its handler finished: a
/// transport that drops a call its caller left (as hyper does) rather than cancelling it still
/// cancels what the handler started with the token, and the calls it made.
struct CancelIfDropped<'a> {
    token: Option<&'a CancellationToken>,
}

impl<'a> CancelIfDropped<'a> {
    fn new(token: &'a CancellationToken) -> CancelIfDropped<'a> {
        CancelIfDropped { token: Some(token) }
    }

    /// The handler finished: nothing to cancel.
    fn finished(mut self) {
        self.token = None;
    }
}

impl Drop for CancelIfDropped<'_> {
    fn drop(&mut self) {
        if let Some(token) = self.token {
            token.cancel();
        }
    }
}

/// Runs a stream handler and finishes the reply with its status.
async fn serve_stream(
    server: Arc<Inner>,
    handler: StreamFn,
    head: CallHead,
    requests: Box<dyn MessageSource>,
    reply: Box<dyn Reply>,
    ctx: Context,
    deadline: Option<Instant>,
) {
    let reply = SentReply::shared(reply);
    let dropped = CancelIfDropped::new(ctx.cancellation_token());
    let work = stream(&server, &head, handler, requests, reply.clone(), ctx.clone());
    let status = BoundedCall::new(&server.options.name, deadline, &ctx, &server.force_stop, work).await;
    dropped.finished();
    let mut sent = reply.lock().await;
    if let Some(reply) = sent.reply.take() {
        reply.finish(status.map_err(|e| server.attributed(e))).await;
    }
}

/// Reads a unary call's request into `request` and runs it through the server's layers to its
/// handler (`handler`, found already, when there are no layers).
#[expect(clippy::manual_async_fn, reason = "an async fn would hold its arguments twice; see `serve`")]
fn unary<'a>(
    server: &'a Inner,
    handler: &'a UnaryFn,
    mut request: ServerRequest,
    requests: Requests,
) -> impl Future<Output = Result<EncodedResponse>> + Send + 'a {
    // An async block for the reason `serve` is one.
    async move {
        request.body = match requests {
            Requests::Whole(body) => body,
            Requests::Stream(mut requests) => {
                let body = requests.recv().await?;
                // Reading to the end, rather than dropping the rest, lets HTTP/2 close the
                // stream cleanly: an unread request body makes the server reset it, and hyper
                // closes a connection that resets too many streams.
                if requests.recv().await?.is_some() {
                    return Err(Error::bad_request("a unary call carries one request message"));
                }
                body.ok_or_else(|| Error::bad_request("the call carried no request message"))?
            }
        };
        match &server.layers {
            Some(layers) => layers.clone().oneshot(request).await,
            None => server.router.run(handler, request).await,
        }
    }
}

/// Runs a stream handler; its result is the call's status.
async fn stream(
    server: &Inner,
    head: &CallHead,
    handler: StreamFn,
    requests: Box<dyn MessageSource>,
    reply: SharedReply,
    ctx: Context,
) -> Result<()> {
    let codec = server.codecs.get(&head.content_type)?.clone();
    let raw = EncodedStream { ctx: ctx.clone(), requests, reply: reply.clone(), codec };
    handler(ctx.clone(), raw).await?;
    reply.lock().await.send_header(ctx.reply_metadata()).await
}
