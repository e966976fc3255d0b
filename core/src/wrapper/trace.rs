//! A layer that records each call as a tracing span and logs its outcome and duration.

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument;

use super::Describe;
use crate::error::{Error, Result};

/// Wraps a client or server stack in [`Trace`].
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceLayer {
    side: &'static str,
}

impl TraceLayer {
    /// Traces calls made by a client.
    pub fn client() -> TraceLayer {
        TraceLayer { side: "client" }
    }

    /// Traces calls served by a server.
    pub fn server() -> TraceLayer {
        TraceLayer { side: "server" }
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Trace<S> {
        Trace { inner, side: self.side }
    }
}

/// Opens an `rmicro.call` span per call and logs its result at `info` (errors at `warn`, with
/// their code).
#[derive(Clone, Debug)]
pub struct Trace<S> {
    inner: S,
    side: &'static str,
}

impl<S, Req> Service<Req> for Trace<S>
where
    S: Service<Req, Error = Error>,
    S::Future: Send + 'static,
    Req: Describe,
{
    type Response = S::Response;
    type Error = Error;
    type Future = BoxFuture<'static, Result<S::Response>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let span =
            tracing::info_span!("rmicro.call", side = self.side, service = req.service(), endpoint = req.endpoint());
        let started = Instant::now();
        let response = self.inner.call(req);
        Box::pin(
            async move {
                let result = response.await;
                let micros = started.elapsed().as_micros() as u64;
                match &result {
                    Ok(_) => tracing::info!(micros, "call ok"),
                    Err(e) => tracing::warn!(micros, code = e.code.http_status(), error = %e, "call failed"),
                }
                result
            }
            .instrument(span),
        )
    }
}
