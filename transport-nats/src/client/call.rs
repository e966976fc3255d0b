//! One call's two directions: the requests it publishes and the responses the connection's
//! inbox subscription routes to it.

use std::sync::Arc;

use async_nats::{Client, HeaderMap, Subject};
use async_trait::async_trait;
use bytes::Bytes;
use rmicro_core::metadata::Metadata;
use rmicro_core::raw::{RecvCredit, SendCredit};
use rmicro_core::transport::{MessageSink, MessageSource};
use rmicro_core::{Error, Result};
use tokio::sync::mpsc;

use super::{Calls, Inbound, cancel};
use crate::frame::{self, CREDIT, LAST};
use crate::{nats_error, too_large};

pub(super) struct Sink {
    pub(super) client: Client,
    pub(super) open_subject: Subject,
    pub(super) frames_subject: String,
    pub(super) reply: String,
    /// For a unary call: the open frame, sent with the request when the call is closed.
    pub(super) open: Option<HeaderMap>,
    pub(super) pending: Option<Bytes>,
    pub(super) credit: SendCredit,
    pub(super) max: usize,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink").field("frames", &self.frames_subject).finish_non_exhaustive()
    }
}

#[async_trait]
impl MessageSink for Sink {
    async fn send(&mut self, message: Bytes) -> Result<()> {
        if message.len() > self.max {
            return Err(too_large(message.len(), self.max));
        }
        if self.open.is_some() {
            if self.pending.replace(message).is_some() {
                return Err(Error::bad_request("a unary call carries one request message"));
            }
            return Ok(());
        }
        self.credit.take().await?;
        self.client
            .publish_with_headers(self.frames_subject.clone(), frame::kind("msg"), message)
            .await
            .map_err(|e| nats_error("sending a message", e))
    }

    async fn close(&mut self) -> Result<()> {
        match self.open.take() {
            Some(mut open) => {
                open.insert(LAST, "1");
                let body = self.pending.take().unwrap_or_default();
                self.client
                    .publish_with_reply_and_headers(self.open_subject.clone(), self.reply.clone(), open, body)
                    .await
                    .map_err(|e| nats_error("sending a call", e).unsent())
            }
            None => self
                .client
                .publish_with_headers(self.frames_subject.clone(), frame::kind("close"), Bytes::new())
                .await
                .map_err(|e| nats_error("closing a stream", e)),
        }
    }
}

pub(super) struct Responses {
    pub(super) rx: mpsc::UnboundedReceiver<Inbound>,
    pub(super) header: Option<Metadata>,
    pub(super) done: bool,
    pub(super) stream: bool,
    pub(super) window: RecvCredit,
    pub(super) client: Client,
    pub(super) frames_subject: String,
    pub(super) number: u64,
    pub(super) calls: Arc<Calls>,
    pub(super) max: usize,
}

impl std::fmt::Debug for Responses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responses").field("call", &self.number).finish_non_exhaustive()
    }
}

#[async_trait]
impl MessageSource for Responses {
    async fn recv(&mut self) -> Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        loop {
            match self.rx.recv().await {
                Some(Inbound::Header(metadata)) => self.header = Some(metadata),
                Some(Inbound::Message(message)) if message.len() > self.max => {
                    return Err(too_large(message.len(), self.max));
                }
                Some(Inbound::Message(message)) => {
                    self.header.get_or_insert_with(Metadata::new);
                    if let Some(more) = self.window.consumed().filter(|_| self.stream) {
                        let mut credit = frame::kind("credit");
                        credit.insert(CREDIT, more.to_string().as_str());
                        let _ =
                            self.client.publish_with_headers(self.frames_subject.clone(), credit, Bytes::new()).await;
                    }
                    return Ok(Some(message));
                }
                Some(Inbound::End(status)) => {
                    self.done = true;
                    self.header.get_or_insert_with(Metadata::new);
                    return status.map(|()| None);
                }
                None => {
                    self.done = true;
                    return Err(Error::unavailable("the connection to NATS was lost"));
                }
            }
        }
    }

    fn header(&self) -> Option<&Metadata> {
        self.header.as_ref()
    }
}

/// A call dropped before its end is cancelled on the server, and forgotten here.
impl Drop for Responses {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.calls.lock().remove(&self.number);
        cancel(&self.client, self.frames_subject.clone());
    }
}
