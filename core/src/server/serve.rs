//! Accepting calls and serving each one: deadline, cancellation, panics, and the reply.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::FutureExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::Inner;
use super::handler::{Handler, RawStream, SentReply, SharedReply};
use super::router::{ServerRequest, find};
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
    let reply = SentReply::shared(reply);
    if !server.accepting.load(Ordering::SeqCst) {
        return finish(&server, &reply, Err(Error::unavailable("server is shutting down"))).await;
    }
    let deadline = head.timeout.map(|t| Instant::now() + t);
    let ctx = Context::new(head.metadata.clone(), deadline.map(Instant::into_std), cancel.clone());
    let expired = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    let work = AssertUnwindSafe(handle(&server, head, requests, reply.clone(), ctx)).catch_unwind();
    let status = tokio::select! {
        done = work => match done {
            Ok(status) => status,
            Err(_) => {
                tracing::error!(server = %server.options.name, "a handler panicked");
                Err(Error::internal("the handler panicked"))
            }
        },
        _ = cancel.cancelled() => Err(Error::canceled("the caller cancelled the call")),
        _ = expired => {
            cancel.cancel();
            Err(Error::deadline_exceeded("the call's deadline passed while it was handled"))
        }
        _ = server.force_stop.cancelled() => Err(Error::unavailable("the server stopped before the call finished")),
    };
    finish(&server, &reply, status).await;
}

async fn finish(server: &Inner, reply: &SharedReply, status: Result<()>) {
    let mut sent = reply.lock().await;
    if let Some(reply) = sent.reply.take() {
        reply.finish(status.map_err(|e| server.stamp(e))).await;
    }
}

/// Runs the endpoint's handler and sends its responses; the result is the call's status.
async fn handle(
    server: &Inner,
    head: CallHead,
    mut requests: Box<dyn MessageSource>,
    reply: SharedReply,
    ctx: Context,
) -> Result<()> {
    let Handler::Stream(handler) = find(&server.endpoints, &server.options.name, &head.endpoint)?.handler.clone()
    else {
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
        let response = server.service.clone().oneshot(request).await?;
        let mut sent = reply.lock().await;
        sent.send_header(response.metadata).await?;
        return sent.send(response.body).await;
    };
    let codec = server.codecs.get(&head.content_type)?.clone();
    let raw = RawStream { ctx: ctx.clone(), requests, reply: reply.clone(), codec };
    handler(ctx.clone(), raw).await?;
    reply.lock().await.send_header(ctx.reply_metadata()).await
}
