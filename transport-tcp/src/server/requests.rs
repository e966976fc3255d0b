//! A stream's request messages, as the connection's reader routes them to the call.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::{BufMut, Bytes};
use rmicro_core::raw::RecvCredit;
use rmicro_core::transport::MessageSource;
use rmicro_core::{Error, Result};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::connection::ServerConnection;
use crate::frame::Kind;
use crate::too_large;

/// A stream's request messages, as they arrive.
pub(super) struct StreamRequests {
    rx: mpsc::UnboundedReceiver<Bytes>,
    cancel: CancellationToken,
    connection: Arc<ServerConnection>,
    call: u32,
    window: RecvCredit,
}

impl StreamRequests {
    pub(super) fn new(
        rx: mpsc::UnboundedReceiver<Bytes>,
        cancel: CancellationToken,
        connection: Arc<ServerConnection>,
        call: u32,
    ) -> StreamRequests {
        StreamRequests { rx, cancel, connection, call, window: RecvCredit::default() }
    }
}

impl std::fmt::Debug for StreamRequests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamRequests").field("call", &self.call).finish_non_exhaustive()
    }
}

#[async_trait]
impl MessageSource for StreamRequests {
    async fn recv(&mut self) -> Result<Option<Bytes>> {
        let max = self.connection.state.max;
        match self.rx.recv().await {
            Some(message) if message.len() > max => Err(too_large(message.len(), max)),
            Some(message) => {
                if let Some(more) = self.window.consumed() {
                    let grant = |buf: &mut bytes::BytesMut, _: &mut _| buf.put_u32(more);
                    let _ = self.connection.outbox.push(Kind::Credit, 0, self.call, grant, Bytes::new());
                }
                Ok(Some(message))
            }
            None if self.cancel.is_cancelled() => Err(Error::canceled("the caller went away")),
            None => Ok(None),
        }
    }
}
