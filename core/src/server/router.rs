//! The innermost server service: finds a unary endpoint, decodes, calls, encodes.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use tower_service::Service;

use super::handler::{Endpoint, Handler, UnaryFn};
use crate::codec::Codecs;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::transport::EncodedResponse;

/// A unary call as server layers see it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerRequest {
    /// The service called.
    pub service: String,
    /// The endpoint called.
    pub endpoint: String,
    /// The content type of `body`; the response is encoded in it too.
    pub content_type: String,
    /// The encoded request.
    pub body: Bytes,
    /// The caller's metadata, deadline and cancellation.
    pub context: Context,
}

pub(crate) type Endpoints = Arc<RwLock<BTreeMap<String, Arc<Endpoint>>>>;

pub(crate) fn find(endpoints: &Endpoints, service: &str, name: &str) -> Result<Arc<Endpoint>> {
    endpoints
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(name)
        .cloned()
        .ok_or_else(|| Error::not_found(format!("service {service} has no endpoint {name}")))
}

#[derive(Clone, Debug)]
pub(crate) struct Router {
    pub(crate) endpoints: Endpoints,
    pub(crate) codecs: Codecs,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("description", &self.description).finish_non_exhaustive()
    }
}

impl Service<ServerRequest> for Router {
    type Response = EncodedResponse;
    type Error = Error;
    type Future = BoxFuture<'static, Result<EncodedResponse>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: ServerRequest) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.route(req).await })
    }
}

impl Router {
    /// Decodes the request, runs the endpoint's handler and encodes its response.
    pub(crate) async fn route(&self, req: ServerRequest) -> Result<EncodedResponse> {
        let Handler::Unary(handler) = find(&self.endpoints, &req.service, &req.endpoint)?.handler.clone() else {
            return Err(Error::bad_request(format!(
                "{} is a streaming endpoint; open a stream to call it",
                req.endpoint
            )));
        };
        self.run(&handler, req).await
    }

    /// Runs `handler`, the unary handler of the endpoint `req` calls. Not an `async fn`: the
    /// request is taken apart before the future is made, which then holds only what it needs.
    pub(crate) fn run(
        &self,
        handler: &UnaryFn,
        req: ServerRequest,
    ) -> impl Future<Output = Result<EncodedResponse>> + use<> {
        let ctx = req.context.clone();
        let running = self.codecs.get(&req.content_type).map(|codec| handler(req.context, req.body, codec.clone()));
        async move {
            let body = running?.await?;
            Ok(EncodedResponse::new(ctx.take_reply_metadata(), body))
        }
    }
}
