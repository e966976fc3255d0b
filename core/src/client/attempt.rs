//! One attempt of a unary call: the innermost client service, which talks to the transport.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::time::Instant;
use tower_service::Service;

use super::call::ClientRequest;
use super::pool::Pool;
use crate::error::{Code, Error, Result};
use crate::transport::EncodedResponse;
use crate::transport::{CallHead, ClientCall};

/// Sends one attempt to the node chosen for it and reads the single response.
#[derive(Clone, Debug)]
pub(crate) struct Attempt {
    pub(crate) pool: Arc<Pool>,
}

impl Service<ClientRequest> for Attempt {
    type Response = EncodedResponse;
    type Error = Error;
    type Future = BoxFuture<'static, Result<EncodedResponse>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: ClientRequest) -> Self::Future {
        let pool = self.pool.clone();
        Box::pin(async move {
            let ClientRequest { service, endpoint, content_type, metadata, body, deadline, node, .. } = req;
            let node = node.ok_or_else(|| Error::internal("no node was chosen for the attempt"))?;
            let now = Instant::now();
            let timeout = deadline.map(|d| d.saturating_duration_since(now));
            let head = CallHead { service, endpoint, content_type, metadata, timeout, stream: false };
            unary(&pool, &node.address, &head, body, now).await
        })
    }
}

/// Sends a unary call, made at `now`, on the pooled connection to `address`, dialling again next
/// time if the connection could not take the call.
pub(crate) async fn unary(
    pool: &Pool,
    address: &str,
    head: &CallHead,
    body: Bytes,
    now: Instant,
) -> Result<EncodedResponse> {
    let conn = pool.get(address, now).await?;
    let answered = conn.unary(head, body).await;
    if matches!(&answered, Err(e) if e.code == Code::Unavailable && e.is_unsent()) {
        pool.evict(address);
    }
    answered
}

/// Opens a call, made at `now`, on the pooled connection to `address`, dialling again next time
/// if it had closed.
pub(crate) async fn open(pool: &Pool, address: &str, head: CallHead, now: Instant) -> Result<ClientCall> {
    let conn = pool.get(address, now).await?;
    match conn.open(head).await {
        Err(e) if e.code == Code::Unavailable => {
            pool.evict(address);
            Err(e)
        }
        opened => opened,
    }
}
