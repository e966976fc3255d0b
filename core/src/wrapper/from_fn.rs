//! An async function as a layer: `from_fn(|req, next| async move { next.run(req).await })`.

use std::fmt;
use std::future::Future;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::{Error, Result};

/// Makes a layer of `f`, which gets each request and the rest of the stack as [`Next`].
///
/// ```
/// # use rmicro_core::prelude::*;
/// # use rmicro_core::client::ClientRequest;
/// let client = Client::builder()
///     .layer(rmicro_core::wrapper::from_fn(|mut req: ClientRequest, next: Next<_, _>| async move {
///         req.metadata.insert("x-tenant", "acme");
///         next.run(req).await
///     }))
///     .build();
/// ```
pub fn from_fn<F>(f: F) -> FromFnLayer<F> {
    FromFnLayer { f }
}

/// The layer made by [`from_fn`].
#[derive(Clone)]
pub struct FromFnLayer<F> {
    f: F,
}

impl<F> fmt::Debug for FromFnLayer<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FromFnLayer")
    }
}

impl<F: Clone, S> Layer<S> for FromFnLayer<F> {
    type Service = FromFn<F, S>;

    fn layer(&self, inner: S) -> FromFn<F, S> {
        FromFn { f: self.f.clone(), inner }
    }
}

/// The service made by [`FromFnLayer`].
#[derive(Clone)]
pub struct FromFn<F, S> {
    f: F,
    inner: S,
}

impl<F, S> fmt::Debug for FromFn<F, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FromFn")
    }
}

/// The rest of the stack, handed to a [`from_fn`] function.
pub struct Next<Req, Resp> {
    inner: BoxCloneSyncService<Req, Resp, Error>,
}

impl<Req, Resp> fmt::Debug for Next<Req, Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Next")
    }
}

impl<Req: 'static, Resp: 'static> Next<Req, Resp> {
    /// Passes `req` on and returns what the rest of the stack answers.
    pub async fn run(self, req: Req) -> Result<Resp> {
        self.inner.oneshot(req).await
    }
}

impl<F, S, Req, Fut> Service<Req> for FromFn<F, S>
where
    F: Fn(Req, Next<Req, S::Response>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<S::Response>> + Send + 'static,
    S: Service<Req, Error = Error> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    Req: 'static,
{
    type Response = S::Response;
    type Error = Error;
    type Future = BoxFuture<'static, Result<S::Response>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let next = Next { inner: BoxCloneSyncService::new(self.inner.clone()) };
        Box::pin((self.f)(req, next))
    }
}
