//! The client's middle service: chooses a node for each attempt and retries what is safe to retry.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tokio::time::Instant;
use tower::ServiceExt;
use tower_service::Service;

use super::ClientService;
use super::backoff::Backoff;
use super::call::{RawRequest, RawResponse};
use crate::error::{Error, Result};
use crate::registry::Node;
use crate::selector::{Filter, SelectOptions, Selector};

/// Selects a node per attempt, bounds the whole call by its deadline, and retries retryable
/// errors with backoff, avoiding nodes already tried.
#[derive(Clone, Debug)]
pub(crate) struct Dispatch {
    pub(crate) selector: Arc<dyn Selector>,
    pub(crate) attempt: ClientService,
    pub(crate) backoff: Backoff,
}

/// The node for the next attempt: the call's fixed address, or the selector's choice (`true`
/// when the selector should hear how it went).
pub(crate) async fn choose(
    selector: &dyn Selector,
    service: &str,
    address: Option<&str>,
    filters: &[Filter],
    tried: &[String],
) -> Result<(Node, bool)> {
    if let Some(address) = address {
        let node = Node { id: address.to_owned(), address: address.to_owned(), ..Node::default() };
        return Ok((node, false));
    }
    let options = SelectOptions { filters: filters.to_vec(), tried: tried.to_vec() };
    Ok((selector.select(service, &options).await?, true))
}

pub(crate) fn deadline_exceeded(service: &str, endpoint: &str) -> Error {
    Error::deadline_exceeded(format!("call to {service} {endpoint} exceeded its deadline")).with_id("rmicro.client")
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
            let deadline = req.deadline;
            let mut tried = Vec::new();
            let mut attempt = 0;
            loop {
                attempt += 1;
                let result = match deadline {
                    Some(d) => tokio::time::timeout_at(d, this.attempt_once(&req, attempt, &mut tried))
                        .await
                        .unwrap_or_else(|_| Err(deadline_exceeded(&req.service, &req.endpoint))),
                    None => this.attempt_once(&req, attempt, &mut tried).await,
                };
                let error = match result {
                    Ok(response) => return Ok(response),
                    Err(e) if e.is_retryable() && attempt <= req.retries => e,
                    Err(e) => return Err(e),
                };
                let delay = this.backoff.delay(attempt);
                if deadline.is_some_and(|d| Instant::now() + delay >= d) {
                    return Err(error);
                }
                tracing::debug!(service = %req.service, endpoint = %req.endpoint, attempt, error = %error, ?delay, "retrying");
                tokio::time::sleep(delay).await;
            }
        })
    }
}

impl Dispatch {
    async fn attempt_once(&self, req: &RawRequest, attempt: u32, tried: &mut Vec<String>) -> Result<RawResponse> {
        let (node, marked) = choose(&*self.selector, &req.service, req.address.as_deref(), &req.filters, tried).await?;
        let mut one = req.clone();
        one.node = Some(node.clone());
        one.attempt = attempt;
        let sent = self.attempt.clone().oneshot(one);
        let result = match req.deadline {
            Some(d) => tokio::time::timeout_at(d, sent)
                .await
                .unwrap_or_else(|_| Err(deadline_exceeded(&req.service, &req.endpoint))),
            None => sent.await,
        };
        if marked {
            let outcome = result.as_ref().map(|_| ()).map_err(Clone::clone);
            self.selector.mark(&req.service, &node, &outcome);
        }
        tried.push(node.id);
        result
    }
}
