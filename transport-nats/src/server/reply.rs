//! The server's answer on a call: one message for a unary call, frames for a stream, and the
//! message that ends a call with an error.

use std::future::Future;
use std::sync::Arc;

use async_nats::{Client, HeaderMap, Subject};
use async_trait::async_trait;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::Either;
use rmicro_core::metadata::Metadata;
use rmicro_core::raw::SendCredit;
use rmicro_core::transport::Reply;
use rmicro_core::{Error, Result};

use super::calls::Calls;
use crate::frame::{self, REPLY};
use crate::{nats_error, unary};

/// The message that ends a call with `error`, in the call's own format (a unary answer, or an
/// `end` frame); `refused` when no handler saw the call, so the caller may send it elsewhere.
pub(super) fn failure(unary: bool, error: Error, refused: bool) -> (Option<HeaderMap>, Bytes) {
    if unary {
        return unary::answer(Err((&error, refused)));
    }
    let (mut headers, body) = NatsReply::end_frame(&Err(error), &Metadata::new(), None);
    if refused {
        headers.insert(crate::frame::REFUSED, "1");
    }
    (Some(headers), body)
}

/// Publishes a message with headers or, without, a plain one.
pub(super) fn publish(
    client: &Client,
    subject: Subject,
    (headers, body): (Option<HeaderMap>, Bytes),
) -> impl Future<Output = std::result::Result<(), async_nats::PublishError>> + Send + '_ {
    match headers {
        None => Either::Left(client.publish(subject, body)),
        Some(headers) => Either::Right(client.publish_with_headers(subject, headers, body)),
    }
}

/// How a call's answer travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AnswerForm {
    /// A unary call opened in one message without headers: one such message back.
    Unary,
    /// A unary call opened with header frames: one `end` frame back.
    Headers,
    /// A stream: frames as they come.
    Stream,
}

/// The server's answer. A unary call's header, response and status go out as one message;
/// a stream's as they come, within the caller's credit. Dropped unfinished (the server stopped),
/// it tells the caller so.
pub(super) struct NatsReply {
    /// Shared by every call of the listener: cloning an async-nats client per call costs more.
    pub(super) client: Arc<Client>,
    /// The caller's reply subject, whose last segment is the call's id.
    pub(super) inbox: Subject,
    /// Where the call's id starts in `inbox`.
    pub(super) call_id_start: usize,
    pub(super) form: AnswerForm,
    pub(super) pending: (Metadata, Option<Bytes>),
    pub(super) credit: Option<SendCredit>,
    pub(super) calls: Arc<Calls>,
    pub(super) finished: bool,
}

impl std::fmt::Debug for NatsReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsReply").field("inbox", &self.inbox).finish_non_exhaustive()
    }
}

impl NatsReply {
    async fn publish(&self, headers: HeaderMap, body: Bytes) -> Result<()> {
        self.client.publish_with_headers(self.inbox.clone(), headers, body).await.map_err(|e| nats_error("replying", e))
    }

    fn end_frame(status: &Result<()>, metadata: &Metadata, reply: Option<Bytes>) -> (HeaderMap, Bytes) {
        let mut headers = frame::kind("end");
        frame::insert_metadata(&mut headers, metadata);
        match (status, reply) {
            (Err(e), _) => {
                headers.insert("micro-status", "error");
                (headers, Bytes::from(e.to_json()))
            }
            (Ok(()), Some(body)) => {
                headers.insert(REPLY, "1");
                (headers, body)
            }
            (Ok(()), None) => (headers, Bytes::new()),
        }
    }

    /// Ends the call with `status`: builds the message that tells the caller, with the unary
    /// response and metadata held so far. Built apart from [`deliver`](Self::deliver) so that a
    /// reply's future holds only the publish: a future of 1 KiB or more is a large block to glibc,
    /// and taking one merges its small free blocks on every call.
    fn end(&mut self, status: Result<()>) -> (Option<HeaderMap>, Bytes) {
        self.finished = true;
        match self.form {
            AnswerForm::Unary => match &status {
                Err(e) => unary::answer(Err((e, false))),
                Ok(()) => unary::answer(Ok((&self.pending.0, self.pending.1.take().unwrap_or_default()))),
            },
            AnswerForm::Headers | AnswerForm::Stream => {
                let reply = if self.form == AnswerForm::Headers { self.pending.1.take() } else { None };
                let (headers, body) = NatsReply::end_frame(&status, &self.pending.0, reply);
                (Some(headers), body)
            }
        }
    }

    /// Publishes what [`end`](Self::end) built; the future is async-nats's own publish, with
    /// nothing held beside it.
    fn deliver(&self, last: (Option<HeaderMap>, Bytes)) -> impl Future<Output = ()> + Send + '_ {
        publish(&self.client, self.inbox.clone(), last).map(move |sent| {
            if let Err(e) = sent {
                tracing::warn!(inbox = %self.inbox, error = %e, "could not send a call's status");
            }
        })
    }
}

#[async_trait]
impl Reply for NatsReply {
    async fn send_header(&mut self, metadata: Metadata) -> Result<()> {
        if self.form != AnswerForm::Stream {
            self.pending.0 = metadata;
            return Ok(());
        }
        let mut headers = frame::kind("header");
        frame::insert_metadata(&mut headers, &metadata);
        self.publish(headers, Bytes::new()).await
    }

    async fn send(&mut self, message: Bytes) -> Result<()> {
        let Some(credit) = self.credit.as_ref().filter(|_| self.form == AnswerForm::Stream) else {
            if self.pending.1.replace(message).is_some() {
                return Err(Error::internal("a unary call answers with one message"));
            }
            return Ok(());
        };
        credit.take().await?;
        self.publish(frame::kind("msg"), message).await
    }

    async fn finish(mut self: Box<Self>, status: Result<()>) {
        let last = self.end(status);
        self.deliver(last).await;
    }

    /// A unary call's metadata and response leave with its status, in one message; only a
    /// stream sends them as frames of their own.
    async fn answer(mut self: Box<Self>, metadata: Metadata, response: Bytes) {
        let sent = if self.form == AnswerForm::Stream {
            match self.send_header(metadata).await {
                Ok(()) => self.send(response).await,
                Err(e) => Err(e),
            }
        } else {
            self.pending = (metadata, Some(response));
            Ok(())
        };
        let last = self.end(sent);
        self.deliver(last).await;
    }
}

impl Drop for NatsReply {
    /// Takes the call off the listener's calls in progress, here rather than where its end is
    /// built: a unary call that had to wait to send its end is listed only then. If the server
    /// stopped before answering, tells the caller so.
    fn drop(&mut self) {
        self.calls.remove(&self.inbox[self.call_id_start..]);
        if self.finished {
            return;
        }
        let error = Error::unavailable("the server stopped before answering");
        let (client, inbox, form) = (self.client.clone(), self.inbox.clone(), self.form);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = publish(&client, inbox, failure(form == AnswerForm::Unary, error, false)).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// glibc serves blocks under 1 KiB from caches per size; a larger block every call makes it
    /// merge its free lists every time.
    #[tokio::test]
    async fn a_replys_futures_stay_under_1_kib() {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect("nats://127.0.0.1:1")
            .await
            .expect("a client that connects later");
        let reply = || {
            Box::new(NatsReply {
                client: Arc::new(client.clone()),
                inbox: Subject::from_static("inbox.t-1"),
                call_id_start: 6,
                form: AnswerForm::Unary,
                pending: (Metadata::new(), None),
                credit: None,
                calls: Arc::default(),
                finished: true,
            })
        };
        let answer = reply().answer(Metadata::new(), Bytes::new());
        let finish = reply().finish(Ok(()));
        assert!(std::mem::size_of_val(&*answer) < 1024, "answer: {} bytes", std::mem::size_of_val(&*answer));
        assert!(std::mem::size_of_val(&*finish) < 1024, "finish: {} bytes", std::mem::size_of_val(&*finish));
    }
}
