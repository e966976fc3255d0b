//! A typed bidirectional stream on the client side.

use std::marker::PhantomData;
use std::sync::Arc;

use tokio::time::Instant;

use crate::codec::{self, Codec, Message};
use crate::error::{Code, Error, Result};
use crate::metadata::Metadata;
use crate::transport::ClientCall;

use super::dispatch::deadline_exceeded;

/// An open stream to a server: send `Req`s, receive `Resp`s. Dropping it cancels the call on
/// the server.
#[derive(Debug)]
pub struct Streaming<Req, Resp> {
    call: ClientCall,
    codec: Arc<dyn Codec>,
    deadline: Option<Instant>,
    service: String,
    endpoint: String,
    _types: PhantomData<fn(Req) -> Resp>,
}

impl<Req: Message, Resp: Message + Default> Streaming<Req, Resp> {
    pub(crate) fn new(
        call: ClientCall,
        codec: Arc<dyn Codec>,
        deadline: Option<Instant>,
        service: String,
        endpoint: String,
    ) -> Streaming<Req, Resp> {
        Streaming { call, codec, deadline, service, endpoint, _types: PhantomData }
    }

    /// Sends one message. If the server has already ended the stream, the error is its status.
    pub async fn send(&mut self, message: &Req) -> Result<()> {
        let body = self.codec.encode(message)?;
        match self.call.requests.send(body).await {
            Err(e) if e.code == Code::Canceled => match self.call.responses.recv().await {
                Err(status) => Err(status),
                Ok(_) => Err(e),
            },
            sent => sent,
        }
    }

    /// Says no more messages will be sent; responses can still be received.
    pub async fn close_send(&mut self) -> Result<()> {
        self.call.requests.close().await
    }

    /// The next response; `Ok(None)` when the server ended the stream successfully.
    pub async fn recv(&mut self) -> Result<Option<Resp>> {
        let next = self.call.responses.recv();
        let received = match self.deadline {
            Some(d) => {
                tokio::time::timeout_at(d, next).await.map_err(|_| deadline_exceeded(&self.service, &self.endpoint))?
            }
            None => next.await,
        };
        match received? {
            Some(body) => codec::decode(&*self.codec, body).map(Some).map_err(bad_response),
            None => Ok(None),
        }
    }

    /// The metadata the server sent back, once a response or the end of the stream arrived.
    pub fn header(&self) -> Option<&Metadata> {
        self.call.responses.header()
    }
}

/// A response that does not decode is the server's fault, not the caller's.
pub(crate) fn bad_response(e: Error) -> Error {
    if e.code == Code::BadRequest {
        Error::internal(format!("response from server: {}", e.detail)).with_id("rmicro.client")
    } else {
        e
    }
}
