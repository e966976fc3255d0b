//! One call's two directions on a connection: the requests it sends and the responses the
//! connection's reader routes to it.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use rmicro_core::metadata::Metadata;
use rmicro_core::raw::{RecvCredit, SendCredit};
use rmicro_core::transport::{CallHead, MessageSink, MessageSource};
use rmicro_core::{Error, Result};
use tokio::sync::{mpsc, oneshot};

use super::{Ended, Event, Shared};
use crate::frame::Kind;
use crate::{too_large, unavailable};

pub(super) struct Sink {
    pub(super) shared: Arc<Shared>,
    pub(super) call: u32,
    /// For a unary call: the head and request, sent together as one frame when closed.
    pub(super) unary: Option<(CallHead, Option<Bytes>)>,
    pub(super) credit: Option<SendCredit>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink").field("call", &self.call).finish_non_exhaustive()
    }
}

#[async_trait]
impl MessageSink for Sink {
    async fn send(&mut self, message: Bytes) -> Result<()> {
        if message.len() > self.shared.max {
            return Err(too_large(message.len(), self.shared.max));
        }
        if let Some((_, request)) = &mut self.unary {
            if request.replace(message).is_some() {
                return Err(Error::bad_request("a unary call carries one request message"));
            }
            return Ok(());
        }
        if let Some(credit) = &self.credit {
            credit.take().await?;
        }
        self.shared.send(Kind::Message, self.call, message)
    }

    async fn close(&mut self) -> Result<()> {
        match self.unary.take() {
            Some((head, request)) => self.shared.open(self.call, &head, Some(request.unwrap_or_default())),
            None => self.shared.send(Kind::Close, self.call, Bytes::new()),
        }
    }
}

#[derive(Debug)]
pub(super) enum Inbound {
    Unary(Option<oneshot::Receiver<Ended>>),
    Stream(mpsc::UnboundedReceiver<Event>),
}

#[derive(Debug)]
pub(super) struct Responses {
    shared: Arc<Shared>,
    call: u32,
    inbound: Inbound,
    header: Option<Metadata>,
    /// The status, once the `End` frame arrived; taken when reported.
    status: Option<Result<()>>,
    ended: bool,
    window: RecvCredit,
}

impl Responses {
    pub(super) fn new(shared: Arc<Shared>, call: u32, inbound: Inbound) -> Responses {
        Responses { shared, call, inbound, header: None, status: None, ended: false, window: RecvCredit::default() }
    }

    fn checked(&self, message: Bytes) -> Result<Option<Bytes>> {
        if message.len() > self.shared.max {
            return Err(too_large(message.len(), self.shared.max));
        }
        Ok(Some(message))
    }

    fn end(&mut self, ended: Ended) -> Result<Option<Bytes>> {
        self.ended = true;
        self.header = Some(ended.header);
        match ended.reply {
            Some(reply) => {
                self.status = Some(ended.status);
                self.checked(reply)
            }
            None => ended.status.map(|()| None),
        }
    }

    fn lost(&mut self) -> Result<Option<Bytes>> {
        self.ended = true;
        Err(unavailable(format!("the connection to {} closed", self.shared.address)))
    }
}

#[async_trait]
impl MessageSource for Responses {
    async fn recv(&mut self) -> Result<Option<Bytes>> {
        if let Some(status) = self.status.take() {
            return status.map(|()| None);
        }
        if self.ended {
            return Ok(None);
        }
        match &mut self.inbound {
            Inbound::Unary(ended) => match ended.take() {
                Some(ended) => match ended.await {
                    Ok(ended) => self.end(ended),
                    Err(_) => self.lost(),
                },
                None => Ok(None),
            },
            Inbound::Stream(events) => loop {
                match events.recv().await {
                    Some(Event::Header(metadata)) => self.header = Some(metadata),
                    Some(Event::Message(message)) => {
                        self.header.get_or_insert_with(Metadata::new);
                        if let Some(more) = self.window.consumed() {
                            self.shared.grant(self.call, more);
                        }
                        return self.checked(message);
                    }
                    Some(Event::End(ended)) => return self.end(ended),
                    None => return self.lost(),
                }
            },
        }
    }

    fn header(&self) -> Option<&Metadata> {
        self.header.as_ref()
    }
}

/// A call dropped before its end is forgotten here and cancelled on the server.
impl Drop for Responses {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        self.shared.cancel(self.call);
    }
}
