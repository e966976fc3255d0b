//! The client's middle service: chooses a node for each attempt, bounds the call by its deadline,
//! and applies the fail mode, sending again only what is safe to send again.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::time::Instant;
use tower::ServiceExt;
use tower_service::Service;

use super::ClientService;
use super::attempt;
use super::backoff::Backoff;
use super::budget::RetryBudget;
use super::call::ClientRequest;
use super::fail_mode::FailMode;
use super::pool::Pool;
use crate::error::{Error, Result};
use crate::metadata::Metadata;
use crate::registry::Node;
use crate::selector::{Filter, Outcome, SelectOptions, Selector};
use crate::transport::EncodedResponse;
use crate::transport::{CallHead, ClientCall};

/// Selects nodes, runs attempts (through the per-attempt layers, when there are any) and applies
/// the fail mode.
#[derive(Clone, Debug)]
pub(crate) struct Dispatch {
    pub(crate) selector: Arc<dyn Selector>,
    /// The per-attempt layers over [`Attempt`](super::attempt::Attempt); `None` when none were
    /// added, and attempts go to the connection directly.
    pub(crate) attempt_layers: Option<ClientService>,
    pub(crate) pool: Arc<Pool>,
    pub(crate) backoff: Backoff,
    pub(crate) budget: Arc<RetryBudget>,
}

pub(crate) fn deadline_exceeded(service: &str, endpoint: &str) -> Error {
    Error::deadline_exceeded(format!("call to {service} {endpoint} exceeded its deadline")).with_id("rmicro.client")
}

/// Whether sending a failed call again cannot run a handler twice, or does not matter.
fn safe_to_resend(error: &Error, idempotent: bool) -> bool {
    error.is_retryable() && (idempotent || error.is_unsent())
}

/// The node a call given an address goes to: that address, named after itself.
pub(crate) fn node_at(address: &str) -> Arc<Node> {
    Arc::new(Node { id: address.to_owned(), address: address.to_owned(), ..Node::default() })
}

/// The select options of a call with `metadata`, `filters` and `key`, excluding nodes already
/// tried.
pub(crate) fn select_options(
    metadata: &Metadata,
    filters: &[Filter],
    key: &Option<String>,
    tried: &[String],
) -> SelectOptions {
    SelectOptions { filters: filters.to_vec(), tried: tried.to_vec(), key: key.clone(), metadata: metadata.clone() }
}

/// A call as dispatch holds it: the head every attempt sends, moved out of the request once
/// rather than copied per attempt, and how the call is routed and retried.
#[derive(Debug)]
pub(crate) struct PreparedCall {
    pub(crate) head: CallHead,
    pub(crate) body: Bytes,
    pub(crate) deadline: Option<Instant>,
    node: Option<Arc<Node>>,
    fail_mode: FailMode,
    idempotent: bool,
    address: Option<String>,
    key: Option<String>,
    filters: Vec<Filter>,
}

impl From<ClientRequest> for PreparedCall {
    fn from(req: ClientRequest) -> PreparedCall {
        let ClientRequest {
            service,
            endpoint,
            content_type,
            metadata,
            body,
            deadline,
            node,
            fail_mode,
            idempotent,
            address,
            key,
            filters,
            ..
        } = req;
        PreparedCall {
            head: CallHead { service, endpoint, content_type, metadata, timeout: None, stream: false },
            body,
            deadline,
            node,
            fail_mode,
            idempotent,
            address,
            key,
            filters,
        }
    }
}

impl PreparedCall {
    fn service(&self) -> &str {
        &self.head.service
    }

    /// The request per-attempt layers see for attempt number `attempt` to `node`.
    fn attempt_request(&self, node: Arc<Node>, attempt: u32) -> ClientRequest {
        ClientRequest {
            service: self.head.service.clone(),
            endpoint: self.head.endpoint.clone(),
            content_type: self.head.content_type.clone(),
            metadata: self.head.metadata.clone(),
            body: self.body.clone(),
            deadline: self.deadline,
            node: Some(node),
            attempt,
            fail_mode: self.fail_mode,
            idempotent: self.idempotent,
            address: self.address.clone(),
            key: self.key.clone(),
            filters: self.filters.clone(),
        }
    }

    /// The time left at `now` until the call's deadline.
    fn remaining(&self, now: Instant) -> Option<Duration> {
        self.deadline.map(|d| d.saturating_duration_since(now))
    }
}

/// Tells the selector how a call to a node went, even when the call is dropped half-way
/// (a hedge that lost, a caller that gave up): then the outcome is "abandoned".
struct OutcomeReport<'a> {
    selector: &'a dyn Selector,
    service: &'a str,
    node: &'a Arc<Node>,
    /// Whether the selector chose the node, and so must hear how the call went.
    armed: bool,
    started: Instant,
}

impl OutcomeReport<'_> {
    fn finish(mut self, result: Result<()>) {
        self.armed = false;
        let outcome = Outcome { latency: self.started.elapsed(), result: Some(result) };
        self.selector.mark(self.service, self.node, &outcome);
    }

    fn finish_with<T>(self, result: &Result<T>) {
        if self.armed {
            self.finish(result.as_ref().map(|_| ()).map_err(Clone::clone));
        }
    }
}

impl Drop for OutcomeReport<'_> {
    fn drop(&mut self) {
        if self.armed {
            let outcome = Outcome { latency: self.started.elapsed(), result: None };
            self.selector.mark(self.service, self.node, &outcome);
        }
    }
}

impl Service<ClientRequest> for Dispatch {
    type Response = EncodedResponse;
    type Error = Error;
    type Future = BoxFuture<'static, Result<EncodedResponse>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: ClientRequest) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.dispatch(req).await })
    }
}

impl Dispatch {
    /// Sends the call, within its deadline, as its fail mode says. Takes the request apart
    /// before making the future, which then holds the call once.
    pub(crate) fn dispatch(
        &self,
        req: ClientRequest,
    ) -> impl Future<Output = Result<EncodedResponse>> + Send + use<'_> {
        self.budget.deposit();
        let mut call = PreparedCall::from(req);
        async move {
            let result = match (call.fail_mode, call.deadline) {
                // Boxed: hedging's state would otherwise enlarge every call's future.
                (FailMode::Failbackup(delay), deadline) if call.idempotent => {
                    let hedged = Box::pin(self.hedge(&call, delay));
                    match deadline {
                        Some(deadline) => tokio::time::timeout_at(deadline, hedged).await.ok(),
                        None => Some(hedged.await),
                    }
                }
                (mode, Some(deadline)) => tokio::time::timeout_at(deadline, self.retry(&mut call, mode)).await.ok(),
                (mode, None) => Some(self.retry(&mut call, mode).await),
            };
            result.unwrap_or_else(|| Err(deadline_exceeded(&call.head.service, &call.head.endpoint)))
        }
    }

    /// Chooses the node for the next attempt: the pinned node, the call's address, or the
    /// selector's choice (`true` when the selector must hear how it went).
    async fn choose(&self, call: &PreparedCall, tried: &[String]) -> Result<(Arc<Node>, bool)> {
        if let Some(node) = &call.node {
            return Ok((node.clone(), call.address.is_none()));
        }
        if let Some(address) = &call.address {
            return Ok((node_at(address), false));
        }
        let options = select_options(&call.head.metadata, &call.filters, &call.key, tried);
        Ok((self.selector.select(call.service(), &options).await?, true))
    }

    /// Sends one attempt to `node`, with `head` (the call's head carrying the time left).
    async fn send(
        &self,
        call: &PreparedCall,
        head: &CallHead,
        marker: OutcomeReport<'_>,
        attempt: u32,
    ) -> Result<EncodedResponse> {
        let node = marker.node;
        let result = match &self.attempt_layers {
            // Boxed: the request it holds would otherwise enlarge every call's future.
            Some(layers) => Box::pin(layers.clone().oneshot(call.attempt_request(node.clone(), attempt))).await,
            None => attempt::unary(&self.pool, &node.address, head, call.body.clone(), marker.started).await,
        };
        marker.finish_with(&result);
        result
    }

    /// The marker of an attempt to `node` that started at `started`; `armed` when the selector
    /// chose the node.
    fn marker<'a>(
        &'a self,
        call: &'a PreparedCall,
        node: &'a Arc<Node>,
        armed: bool,
        started: Instant,
    ) -> OutcomeReport<'a> {
        OutcomeReport { selector: &*self.selector, service: call.service(), node, armed, started }
    }

    /// Failfast, failover and failtry: attempts one after another, with backoff between them.
    async fn retry(&self, call: &mut PreparedCall, mode: FailMode) -> Result<EncodedResponse> {
        let mut tried = Vec::new();
        let mut sticky: Option<(Arc<Node>, bool)> = None;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let chosen = match sticky.clone() {
                Some(chosen) => Ok(chosen),
                None => self.choose(call, &tried).await,
            };
            let result = match chosen {
                Ok((node, marked)) => {
                    if let FailMode::Failtry(_) = mode {
                        sticky = Some((node.clone(), marked));
                    }
                    let started = Instant::now();
                    call.head.timeout = call.remaining(started);
                    let marker = self.marker(call, &node, marked, started);
                    let result = self.send(call, &call.head, marker, attempt).await;
                    if result.is_err() {
                        tried.push(node.id.clone());
                    }
                    result
                }
                Err(e) => Err(e),
            };
            let error = match result {
                Ok(response) => return Ok(response),
                Err(e) => e,
            };
            if attempt > mode.retries() || !safe_to_resend(&error, call.idempotent) {
                return Err(error);
            }
            let (service, endpoint) = (&call.head.service, &call.head.endpoint);
            if !self.budget.withdraw() {
                tracing::warn!(%service, %endpoint, "retry budget exhausted; not retrying");
                return Err(error);
            }
            let delay = self.backoff.delay(attempt);
            if call.deadline.is_some_and(|d| Instant::now() + delay >= d) {
                return Err(error);
            }
            tracing::debug!(%service, %endpoint, attempt, error = %error, ?delay, "sending again");
            tokio::time::sleep(delay).await;
        }
    }

    /// Opens a stream, going to another node when opening fails in a way that is safe to retry.
    pub(crate) async fn open_stream(&self, call: &PreparedCall) -> Result<ClientCall> {
        let mut tried = Vec::new();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (node, marked) = self.choose(call, &tried).await?;
            let started = Instant::now();
            let head = CallHead { timeout: call.remaining(started), stream: true, ..call.head.clone() };
            let marker = self.marker(call, &node, marked, started);
            let opened = attempt::open(&self.pool, &node.address, head, started).await;
            let error = match opened {
                Ok(call) => {
                    drop(marker);
                    return Ok(call);
                }
                Err(e) => e,
            };
            marker.finish_with::<()>(&Err(error.clone()));
            tried.push(node.id.clone());
            if attempt > call.fail_mode.retries() || !safe_to_resend(&error, call.idempotent) || !self.budget.withdraw()
            {
                return Err(error);
            }
            tokio::time::sleep(self.backoff.delay(attempt)).await;
        }
    }

    /// Failbackup: a second attempt to another node if the first is slow; first answer wins.
    async fn hedge(&self, call: &PreparedCall, delay: Duration) -> Result<EncodedResponse> {
        let (first_node, first_marked) = self.choose(call, &[]).await?;
        let tried = [first_node.id.clone()];
        let started = Instant::now();
        let first_head = CallHead { timeout: call.remaining(started), ..call.head.clone() };
        let first = self.send(call, &first_head, self.marker(call, &first_node, first_marked, started), 1);
        tokio::pin!(first);
        tokio::select! {
            result = &mut first => return result,
            _ = tokio::time::sleep(delay) => {}
        }
        let (backup_node, backup_marked) = match self.choose(call, &tried).await {
            Ok((node, marked)) if node.id != tried[0] && self.budget.withdraw() => (node, marked),
            _ => return first.await,
        };
        let started = Instant::now();
        let backup_head = CallHead { timeout: call.remaining(started), ..call.head.clone() };
        let backup = self.send(call, &backup_head, self.marker(call, &backup_node, backup_marked, started), 2);
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
