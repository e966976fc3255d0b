//! The client's middle service: chooses a node for each attempt, bounds the call by its deadline,
//! and applies the fail mode, sending again only what is safe to send again.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;
use tower::ServiceExt;
use tower::retry::budget::{Budget, TpsBudget};
use tower_service::Service;

use super::ClientService;
use super::attempt;
use super::backoff::Backoff;
use super::call::{RawRequest, RawResponse};
use super::fail_mode::FailMode;
use super::pool::Pool;
use crate::error::{Error, Result};
use crate::registry::Node;
use crate::selector::{Outcome, SelectOptions, Selector};
use crate::transport::ClientCall;

/// Selects nodes, runs attempts through the per-attempt stack and applies the fail mode.
#[derive(Clone, Debug)]
pub(crate) struct Dispatch {
    pub(crate) selector: Arc<dyn Selector>,
    pub(crate) attempt: ClientService,
    pub(crate) pool: Arc<Pool>,
    pub(crate) backoff: Backoff,
    pub(crate) budget: Arc<TpsBudget>,
}

pub(crate) fn deadline_exceeded(service: &str, endpoint: &str) -> Error {
    Error::deadline_exceeded(format!("call to {service} {endpoint} exceeded its deadline")).with_id("rmicro.client")
}

/// Whether sending a failed call again cannot run a handler twice, or does not matter.
fn safe_to_resend(error: &Error, idempotent: bool) -> bool {
    error.is_retryable() && (idempotent || error.is_unsent())
}

/// The select options of a request, excluding nodes already tried.
pub(crate) fn select_options(req: &RawRequest, tried: &[String]) -> SelectOptions {
    SelectOptions {
        filters: req.filters.clone(),
        tried: tried.to_vec(),
        key: req.key.clone(),
        metadata: req.metadata.clone(),
    }
}

/// Tells the selector how a call to a node went, even when the call is dropped half-way
/// (a hedge that lost, a caller that gave up): then the outcome is "abandoned".
struct Marker<'a> {
    selector: &'a dyn Selector,
    service: &'a str,
    node: Option<Node>,
    started: Instant,
}

impl Marker<'_> {
    fn finish(mut self, result: &Result<RawResponse>) {
        if let Some(node) = self.node.take() {
            let outcome = Outcome {
                latency: self.started.elapsed(),
                result: Some(result.as_ref().map(|_| ()).map_err(Clone::clone)),
            };
            self.selector.mark(self.service, &node, &outcome);
        }
    }
}

impl Drop for Marker<'_> {
    fn drop(&mut self) {
        if let Some(node) = self.node.take() {
            let outcome = Outcome { latency: self.started.elapsed(), result: None };
            self.selector.mark(self.service, &node, &outcome);
        }
    }
}

impl Service<RawRequest> for Dispatch {
    type Response = RawResponse;
    type Error = Error;
    type Future = BoxFuture<'static, Result<RawResponse>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: RawRequest) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            this.budget.deposit();
            let work = async {
                match req.fail_mode {
                    FailMode::Failbackup(delay) if req.idempotent => this.hedge(&req, delay).await,
                    mode => this.retry(&req, mode).await,
                }
            };
            match req.deadline {
                Some(d) => tokio::time::timeout_at(d, work)
                    .await
                    .unwrap_or_else(|_| Err(deadline_exceeded(&req.service, &req.endpoint))),
                None => work.await,
            }
        })
    }
}

impl Dispatch {
    /// Chooses the node for the next attempt: the pinned node, the call's address, or the
    /// selector's choice (`true` when the selector must hear how it went).
    pub(crate) async fn choose(&self, req: &RawRequest, tried: &[String]) -> Result<(Node, bool)> {
        if let Some(node) = &req.node {
            return Ok((node.clone(), req.address.is_none()));
        }
        if let Some(address) = &req.address {
            return Ok((Node { id: address.clone(), address: address.clone(), ..Node::default() }, false));
        }
        Ok((self.selector.select(&req.service, &select_options(req, tried)).await?, true))
    }

    /// Sends one attempt to `node`.
    async fn send(&self, req: &RawRequest, node: Node, marked: bool, attempt: u32) -> Result<RawResponse> {
        let marker = Marker {
            selector: &*self.selector,
            service: &req.service,
            node: marked.then(|| node.clone()),
            started: Instant::now(),
        };
        let mut one = req.clone();
        one.node = Some(node);
        one.attempt = attempt;
        let result = self.attempt.clone().oneshot(one).await;
        marker.finish(&result);
        result
    }

    /// Failfast, failover and failtry: attempts one after another, with backoff between them.
    async fn retry(&self, req: &RawRequest, mode: FailMode) -> Result<RawResponse> {
        let mut tried = Vec::new();
        let mut sticky: Option<(Node, bool)> = None;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = match sticky.clone() {
                Some(chosen) => Ok(chosen),
                None => self.choose(req, &tried).await,
            };
            let result = match result {
                Ok((node, marked)) => {
                    if let FailMode::Failtry(_) = mode {
                        sticky = Some((node.clone(), marked));
                    }
                    tried.push(node.id.clone());
                    self.send(req, node, marked, attempt).await
                }
                Err(e) => Err(e),
            };
            let error = match result {
                Ok(response) => return Ok(response),
                Err(e) => e,
            };
            if attempt > mode.retries() || !safe_to_resend(&error, req.idempotent) {
                return Err(error);
            }
            if !self.budget.withdraw() {
                tracing::warn!(service = %req.service, endpoint = %req.endpoint, "retry budget exhausted; not retrying");
                return Err(error);
            }
            let delay = self.backoff.delay(attempt);
            if req.deadline.is_some_and(|d| Instant::now() + delay >= d) {
                return Err(error);
            }
            tracing::debug!(service = %req.service, endpoint = %req.endpoint, attempt, error = %error, ?delay, "sending again");
            tokio::time::sleep(delay).await;
        }
    }

    /// Opens a stream, going to another node when opening fails in a way that is safe to retry.
    pub(crate) async fn open_stream(&self, req: &RawRequest) -> Result<ClientCall> {
        let mut tried = Vec::new();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (node, marked) = self.choose(req, &tried).await?;
            tried.push(node.id.clone());
            let marker = Marker {
                selector: &*self.selector,
                service: &req.service,
                node: marked.then(|| node.clone()),
                started: Instant::now(),
            };
            let opened = attempt::open(&self.pool, &node.address, attempt::stream_head(req)).await;
            let error = match opened {
                Ok(call) => {
                    drop(marker);
                    return Ok(call);
                }
                Err(e) => e,
            };
            marker.finish(&Err(error.clone()));
            if attempt > req.fail_mode.retries() || !safe_to_resend(&error, req.idempotent) || !self.budget.withdraw() {
                return Err(error);
            }
            tokio::time::sleep(self.backoff.delay(attempt)).await;
        }
    }

    /// Failbackup: a second attempt to another node if the first is slow; first answer wins.
    async fn hedge(&self, req: &RawRequest, delay: Duration) -> Result<RawResponse> {
        let (first_node, first_marked) = self.choose(req, &[]).await?;
        let tried = [first_node.id.clone()];
        let first = self.send(req, first_node, first_marked, 1);
        tokio::pin!(first);
        tokio::select! {
            result = &mut first => return result,
            _ = tokio::time::sleep(delay) => {}
        }
        let backup = match self.choose(req, &tried).await {
            Ok((node, marked)) if node.id != tried[0] && self.budget.withdraw() => self.send(req, node, marked, 2),
            _ => return first.await,
        };
        tokio::pin!(backup);
        tokio::select! {
            result = &mut first => match result {
                Ok(response) => Ok(response),
                Err(_) => backup.await,
            },
            result = &mut backup => match result {
                Ok(response) => Ok(response),
                Err(_) => first.await,
            },
        }
    }
}
