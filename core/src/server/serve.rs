//! Accepting calls and serving each one: deadline, cancellation, panics, and the reply.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::FutureExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::Inner;
use super::handler::{Handler, RawStream, SentReply, SharedReply, StreamFn, UnaryFn};
use super::router::{ServerRequest, ServerResponse, find};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::transport::{CallHead, IncomingCall, Listener, MessageSource};

/// Accepts calls until `stop`, then hands the listener back for an orderly shutdown.
pub(crate) async fn accept(
    server: Arc<Inner>,
    mut listener: Box<dyn Listener>,
    stop: CancellationToken,
    calls: TaskTracker,
) -> Box<dyn Listener> {
    loop {
        let call = tokio::select! {
            _ = stop.cancelled() => return listener,
            call = listener.accept() => call,
        };
        match call {
            Some(call) => {
                calls.spawn(serve(server.clone(), call));
            }
            None => {
                tracing::warn!(server = %server.options.name, "listener closed; no more calls are accepted");
                return listener;
            }
        }
    }
}

/// Serves one call. The handler runs until it returns, the caller goes away, the deadline
/// passes or the server stops; whichever comes first decides the status the caller gets.
async fn serve(server: Arc<Inner>, call: IncomingCall) {
    let IncomingCall { head, requests, reply, cancel } = call;
    if !server.accepting.load(Ordering::SeqCst) {
        return reply.finish(Err(server.stamp(Error::unavailable("server is shutting down")))).await;
    }
    let handler = match find(&server.endpoints, &server.options.name, &head.endpoint) {
        Ok(endpoint) => endpoint.handler.clone(),
        Err(e) => return reply.finish(Err(server.stamp(e))).await,
    };
    let deadline = head.timeout.map(|t| Instant::now() + t);
    let ctx = Context::new(head.metadata.clone(), deadline.map(Instant::into_std), cancel.clone());
    let running = Running { server: &server, deadline, cancel: &cancel };
    match handler {
        Handler::Unary(handler) => match running.until_done(unary(&server, &handler, head, requests, ctx)).await {
            Ok(response) => reply.answer(response.metadata, response.body).await,
            Err(e) => reply.finish(Err(server.stamp(e))).await,
        },
        Handler::Stream(handler) => {
            let reply = SentReply::shared(reply);
            let status = running.until_done(stream(&server, &head, handler, requests, reply.clone(), ctx)).await;
            let mut sent = reply.lock().await;
            if let Some(reply) = sent.reply.take() {
                reply.finish(status.map_err(|e| server.stamp(e))).await;
            }
        }
    }
}

/// What can end a call before its handler does.
struct Running<'a> {
    server: &'a Inner,
    deadline: Option<Instant>,
    cancel: &'a CancellationToken,
}

impl Running<'_> {
    /// Runs `work` until it finishes, panics, the caller cancels, the deadline passes or the
    /// server stops.
    async fn until_done<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        let expired = async {
            match self.deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            done = AssertUnwindSafe(work).catch_unwind() => done.unwrap_or_else(|_| {
                tracing::error!(server = %self.server.options.name, "a handler panicked");
                Err(Error::internal("the handler panicked"))
            }),
            _ = self.cancel.cancelled() => Err(Error::canceled("the caller cancelled the call")),
            _ = expired => {
                self.cancel.cancel();
                Err(Error::deadline_exceeded("the call's deadline passed while it was handled"))
            }
            _ = self.server.force_stop.cancelled() => Err(Error::unavailable("the server stopped before the call finished")),
        }
    }
}

/// Reads a unary call's request and runs it through the server's layers to its handler
/// (`handler`, found already, when there are no layers).
async fn unary(
    server: &Inner,
    handler: &UnaryFn,
    head: CallHead,
    mut requests: Box<dyn MessageSource>,
    ctx: Context,
) -> Result<ServerResponse> {
    let body = requests.recv().await?.ok_or_else(|| Error::bad_request("the call carried no request message"))?;
    // Reading to the end, rather than dropping the rest, lets HTTP/2 close the stream
    // cleanly: an unread request body makes the server reset it, and hyper closes a
    // connection that resets too many streams.
    if requests.recv().await?.is_some() {
        return Err(Error::bad_request("a unary call carries one request message"));
    }
    let request = ServerRequest {
        service: head.service,
        endpoint: head.endpoint,
        content_type: head.content_type,
        body,
        context: ctx,
    };
    match &server.layers {
        Some(layers) => layers.clone().oneshot(request).await,
        None => server.router.run(handler, request).await,
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
    let raw = RawStream { ctx: ctx.clone(), requests, reply: reply.clone(), codec };
    handler(ctx.clone(), raw).await?;
    reply.lock().await.send_header(ctx.reply_metadata()).await
}
