//! The server's answer on a call, as frames on the call's connection.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use rmicro_core::metadata::Metadata;
use rmicro_core::raw::SendCredit;
use rmicro_core::transport::Reply;
use rmicro_core::{Error, Result};

use super::connection::ServerConnection;
use crate::frame::{self, Kind};
use crate::{too_large, unavailable};

/// The server's answer. A unary call's header, response and status leave as one `End` frame; a
/// stream's as they come, within the caller's credit. Dropped unfinished, it tells the caller.
pub(super) struct TcpReply {
    connection: Arc<ServerConnection>,
    call: u32,
    stream: bool,
    header: Option<Metadata>,
    response: Option<Bytes>,
    credit: Option<SendCredit>,
    finished: bool,
}

impl std::fmt::Debug for TcpReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpReply").field("call", &self.call).finish_non_exhaustive()
    }
}

impl TcpReply {
    pub(super) fn new(
        connection: Arc<ServerConnection>,
        call: u32,
        stream: bool,
        credit: Option<SendCredit>,
    ) -> TcpReply {
        TcpReply { connection, call, stream, header: None, response: None, credit, finished: false }
    }

    fn end(&mut self, status: Result<()>) {
        self.finished = true;
        self.connection.ended(self.call);
        let header = self.header.take().filter(|header| !header.is_empty());
        let mut flags = if header.is_some() { frame::END_HEADER } else { 0 };
        let body = match (status, self.response.take()) {
            (Err(error), _) => {
                flags |= frame::END_ERROR;
                Bytes::from(error.to_json())
            }
            (Ok(()), Some(response)) => {
                flags |= frame::END_REPLY;
                response
            }
            (Ok(()), None) => Bytes::new(),
        };
        let write_header = |buf: &mut bytes::BytesMut, interner: &mut frame::Interner| {
            if let Some(header) = &header {
                interner.put_metadata(buf, header);
            }
        };
        let _ = self.connection.outbox.push(Kind::End, flags, self.call, write_header, body);
    }
}

#[async_trait]
impl Reply for TcpReply {
    async fn send_header(&mut self, metadata: Metadata) -> Result<()> {
        frame::check_head([], &metadata)?;
        if !self.stream {
            self.header = Some(metadata);
            return Ok(());
        }
        let write = |buf: &mut bytes::BytesMut, interner: &mut frame::Interner| interner.put_metadata(buf, &metadata);
        self.connection.outbox.push(Kind::Header, 0, self.call, write, Bytes::new()).map_err(unavailable)
    }

    async fn send(&mut self, message: Bytes) -> Result<()> {
        let max = self.connection.state.max;
        if message.len() > max {
            return Err(too_large(message.len(), max));
        }
        if !self.stream {
            if self.response.replace(message).is_some() {
                return Err(Error::internal("a unary call answers with one message"));
            }
            return Ok(());
        }
        if let Some(credit) = &self.credit {
            credit.take().await?;
        }
        self.connection.outbox.push(Kind::Message, 0, self.call, |_, _| {}, message).map_err(unavailable)
    }

    async fn finish(mut self: Box<Self>, status: Result<()>) {
        self.end(status);
    }

    async fn answer(mut self: Box<Self>, metadata: Metadata, response: Bytes) {
        let max = self.connection.state.max;
        let status = match frame::check_head([], &metadata) {
            Err(e) => Err(e),
            Ok(()) if response.len() > max => Err(too_large(response.len(), max)),
            Ok(()) => {
                self.header = Some(metadata);
                self.response = Some(response);
                Ok(())
            }
        };
        self.end(status);
    }
}

impl Drop for TcpReply {
    fn drop(&mut self) {
        if !self.finished {
            self.end(Err(unavailable("the server stopped before answering")));
        }
    }
}
