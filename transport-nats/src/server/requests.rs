//! Request messages as the listener routes them to a call, granting the caller credit as the
//! handler consumes them.

use std::sync::Arc;

use async_nats::{Client, Subject};
use async_trait::async_trait;
use bytes::Bytes;
use rmicro_core::raw::RecvCredit;
use rmicro_core::transport::MessageSource;
use rmicro_core::{Error, Result};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::frame::{self, CREDIT};
use crate::too_large;

/// Request messages as they arrive: a stream's, or a unary call's opened with header frames.
pub(super) struct StreamRequests {
    pub(super) rx: mpsc::UnboundedReceiver<Bytes>,
    pub(super) cancel: CancellationToken,
    pub(super) client: Arc<Client>,
    pub(super) inbox: Subject,
    pub(super) stream: bool,
    pub(super) window: RecvCredit,
    pub(super) max: usize,
}

impl std::fmt::Debug for StreamRequests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamRequests").field("inbox", &self.inbox).finish_non_exhaustive()
    }
}

#[async_trait]
impl MessageSource for StreamRequests {
    async fn recv(&mut self) -> Result<Option<Bytes>> {
        match self.rx.recv().await {
            Some(message) if message.len() > self.max => Err(too_large(message.len(), self.max)),
            Some(message) => {
                if let Some(more) = self.window.consumed().filter(|_| self.stream) {
                    let mut headers = frame::kind("credit");
                    headers.insert(CREDIT, more.to_string().as_str());
                    let _ = self.client.publish_with_headers(self.inbox.clone(), headers, Bytes::new()).await;
                }
                Ok(Some(message))
            }
            None if self.cancel.is_cancelled() => Err(Error::canceled("the caller went away")),
            None => Ok(None),
        }
    }
}
