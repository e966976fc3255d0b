//! One attempt of a unary call: the innermost client service, which talks to the transport.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tokio::time::Instant;
use tower_service::Service;

use super::call::{RawRequest, RawResponse};
use super::pool::Pool;
use crate::error::{Code, Error, Result};
use crate::transport::{CallHead, ClientCall};

/// Sends one attempt to the node chosen for it and reads the single response.
#[derive(Clone, Debug)]
pub(crate) struct Attempt {
    pub(crate) pool: Arc<Pool>,
}

impl Service<RawRequest> for Attempt {
    type Response = RawResponse;
    type Error = Error;
    type Future = BoxFuture<'static, Result<RawResponse>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: RawRequest) -> Self::Future {
        let pool = self.pool.clone();
        Box::pin(async move {
            let RawRequest { service, endpoint, content_type, metadata, body, deadline, node, .. } = req;
            let node = node.ok_or_else(|| Error::internal("no node was chosen for the attempt"))?;
            let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let head = CallHead { service, endpoint, content_type, metadata, timeout, stream: false };
            let mut call = open(&pool, &node.address, head).await?;
            let sent = async {
                call.requests.send(body).await?;
                call.requests.close().await
            }
            .await;
            let response = match call.responses.recv().await {
                Ok(Some(body)) => body,
                Ok(None) => return Err(sent.err().unwrap_or_else(|| Error::internal("the server sent no response"))),
                Err(status) => return Err(status),
            };
            call.responses.recv().await?;
            let metadata = call.responses.header().cloned().unwrap_or_default();
            Ok(RawResponse::new(metadata, response))
        })
    }
}

/// The call head of a stream for `req`, carrying the time left until its deadline.
pub(crate) fn stream_head(req: &RawRequest) -> CallHead {
    CallHead {
        service: req.service.clone(),
        endpoint: req.endpoint.clone(),
        content_type: req.content_type.clone(),
        metadata: req.metadata.clone(),
        timeout: req.deadline.map(|d| d.saturating_duration_since(Instant::now())),
        stream: true,
    }
}

/// Opens a call on the pooled connection to `address`, dialling again once if it had closed.
pub(crate) async fn open(pool: &Pool, address: &str, head: CallHead) -> Result<ClientCall> {
    let conn = pool.get(address).await?;
    match conn.open(head).await {
        Err(e) if e.code == Code::Unavailable => {
            pool.evict(address);
            Err(e)
        }
        opened => opened,
    }
}
