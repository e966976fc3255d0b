//! The calling side: per dialled node, one inbox subscription (`<inbox>.>`) receives the frames
//! of every call, routed by call id; nothing is subscribed per call.
//! A call sends through its [`call::Sink`] and receives from its [`call::Responses`].

mod call;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use async_nats::{Client, HeaderMap, Subject};
use async_trait::async_trait;
use bytes::Bytes;
use foldhash::HashMap;
use futures::StreamExt;
use rmicro_core::metadata::Metadata;
use rmicro_core::raw::{RecvCredit, SendCredit};
use rmicro_core::transport::EncodedResponse;
use rmicro_core::transport::{CallHead, ClientCall, Connection};
use rmicro_core::{Error, Result};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::frame::{self, CONTENT_TYPE, CREDIT, ENDPOINT, KIND, REFUSED, REPLY, SERVICE, STREAM, TIMEOUT, header};
use crate::{nats_error, too_large, unary};
use call::{Responses, Sink};

/// What arrives for a call.
#[derive(Debug)]
pub(crate) enum Inbound {
    Header(Metadata),
    Message(Bytes),
    End(Result<()>),
}

/// Where a call's replies go: a stream's frames, with the credit its requests may use, or a
/// unary call's one answer.
enum Route {
    Stream(mpsc::UnboundedSender<Inbound>, SendCredit),
    Unary(oneshot::Sender<Result<EncodedResponse>>),
}

/// The calls in progress on one connection, by call number.
#[derive(Default)]
pub(crate) struct Calls {
    calls: Mutex<HashMap<u64, Route>>,
}

impl Calls {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Route>> {
        self.calls.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Fails every call in progress (the connection to NATS was lost).
    pub(crate) fn fail_all(&self, why: &str) {
        for (_, route) in self.lock().drain() {
            let error = Error::unavailable(why.to_owned());
            match route {
                Route::Stream(frames, credit) => {
                    credit.close();
                    drop(frames.send(Inbound::End(Err(error))))
                }
                Route::Unary(answer) => drop(answer.send(Err(error))),
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The number of the call a reply is for: its subject ends in `<token>-<number>`. Read from the
/// end byte by byte: a search for either of two characters costs more than the rest of routing.
fn call_number(subject: &str) -> Option<u64> {
    let dash = subject.bytes().rposition(|b| !b.is_ascii_digit())?;
    if subject.as_bytes()[dash] != b'-' {
        return None;
    }
    subject[dash + 1..].parse().ok()
}

pub(crate) struct NatsConnection {
    client: Client,
    node: String,
    /// Where calls are opened: `<node>.open`.
    open_subject: Subject,
    /// `<inbox>.<token>-`: a call's reply subject is this and the call's number; the part from
    /// `<token>` on is the call's id on the server.
    reply_prefix: String,
    calls: Arc<Calls>,
    next: AtomicU64,
    router: JoinHandle<()>,
    max: usize,
}

impl std::fmt::Debug for NatsConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConnection")
            .field("node", &self.node)
            .field("calls", &self.calls.len())
            .finish_non_exhaustive()
    }
}

impl Drop for NatsConnection {
    fn drop(&mut self) {
        self.router.abort();
    }
}

pub(crate) async fn dial(
    client: Client,
    node: &str,
    max: usize,
    live: &Mutex<Vec<Weak<Calls>>>,
) -> Result<NatsConnection> {
    let inbox = client.new_inbox();
    let replies =
        client.subscribe(format!("{inbox}.>")).await.map_err(|e| nats_error("subscribing to replies", e).unsent())?;
    let calls = Arc::new(Calls::default());
    live.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(Arc::downgrade(&calls));
    let router = tokio::spawn(route(replies, calls.clone(), node.to_owned()));
    let token = inbox.rsplit('.').next().unwrap_or_default();
    Ok(NatsConnection {
        client,
        node: node.to_owned(),
        open_subject: Subject::from(format!("{node}.open")),
        reply_prefix: format!("{inbox}.{token}-"),
        calls,
        next: AtomicU64::new(0),
        router,
        max,
    })
}

/// Hands each reply to its call.
async fn route(mut replies: async_nats::Subscriber, calls: Arc<Calls>, node: String) {
    while let Some(message) = replies.next().await {
        let Some(number) = call_number(&message.subject) else { continue };
        let no_responders = message.status == Some(async_nats::StatusCode::NO_RESPONDERS);
        let unanswered = {
            let mut calls = calls.lock();
            match calls.get(&number) {
                Some(Route::Unary(_)) => calls.remove(&number),
                _ => None,
            }
        };
        if let Some(Route::Unary(answer)) = unanswered {
            let _ = answer.send(if no_responders {
                Err(Error::unavailable(format!("nothing listens on {node}")).unsent())
            } else {
                unary::read_answer(message.headers.as_ref(), message.payload)
            });
            continue;
        }
        let inbound = if no_responders {
            Inbound::End(Err(Error::unavailable(format!("nothing listens on {node}")).unsent()))
        } else {
            let Some(headers) = message.headers.as_ref() else { continue };
            match header(headers, KIND) {
                Some("header") => Inbound::Header(frame::metadata_from(headers)),
                Some("msg") => Inbound::Message(message.payload.clone()),
                Some("credit") => {
                    let more = header(headers, CREDIT).and_then(|c| c.parse().ok()).unwrap_or(0);
                    if let Some(Route::Stream(_, credit)) = calls.lock().get(&number) {
                        credit.grant(more);
                    }
                    continue;
                }
                Some("end") => {
                    let metadata = frame::metadata_from(headers);
                    let Some(Route::Stream(frames, credit)) = calls.lock().remove(&number) else { continue };
                    credit.close();
                    let _ = frames.send(Inbound::Header(metadata));
                    if header(headers, REPLY) == Some("1") {
                        let _ = frames.send(Inbound::Message(message.payload.clone()));
                    }
                    let status = if header(headers, "micro-status") == Some("error") {
                        let error = Error::from_json(&message.payload);
                        Err(if header(headers, REFUSED) == Some("1") { error.unsent() } else { error })
                    } else {
                        Ok(())
                    };
                    let _ = frames.send(Inbound::End(status));
                    continue;
                }
                _ => continue,
            }
        };
        let ended = matches!(inbound, Inbound::End(_));
        let frames = {
            let mut calls = calls.lock();
            let frames = match calls.get(&number) {
                Some(Route::Stream(frames, _)) => Some(frames.clone()),
                _ => None,
            };
            if ended {
                if let Some(Route::Stream(_, credit)) = calls.remove(&number) {
                    credit.close();
                }
            }
            frames
        };
        if let Some(frames) = frames {
            let _ = frames.send(inbound);
        }
    }
}

impl NatsConnection {
    /// A new call's number and the subject its replies come to; the subject's last segment is
    /// the call's id.
    fn next_call(&self) -> (u64, String) {
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(number);
        let mut reply = String::with_capacity(self.reply_prefix.len() + digits.len());
        reply.push_str(&self.reply_prefix);
        reply.push_str(digits);
        (number, reply)
    }

    /// Where the server takes the frames of call `number`: `<node>.c.<call id>`.
    fn frames_subject(&self, number: u64) -> String {
        let token = &self.reply_prefix[frame::call_id_start(&self.reply_prefix)..];
        format!("{}.c.{token}{number}", self.node)
    }

    fn open_headers(&self, head: &CallHead) -> HeaderMap {
        let mut headers = frame::kind("open");
        headers.insert(SERVICE, head.service.as_str());
        headers.insert(ENDPOINT, head.endpoint.as_str());
        headers.insert(CONTENT_TYPE, head.content_type.as_str());
        if let Some(timeout) = head.timeout {
            headers.insert(TIMEOUT, frame::timeout_header(timeout).as_str());
        }
        if head.stream {
            headers.insert(STREAM, "1");
        }
        frame::insert_metadata(&mut headers, &head.metadata);
        headers
    }
}

#[async_trait]
impl Connection for NatsConnection {
    async fn open(&self, head: CallHead) -> Result<ClientCall> {
        let (number, reply) = self.next_call();
        let (tx, rx) = mpsc::unbounded_channel();
        let credit = SendCredit::new();
        self.calls.lock().insert(number, Route::Stream(tx, credit.clone()));
        let open = self.open_headers(&head);
        if head.stream {
            self.client
                .publish_with_reply_and_headers(self.open_subject.clone(), reply.clone(), open.clone(), Bytes::new())
                .await
                .map_err(|e| nats_error("opening a stream", e).unsent())?;
        }
        let frames_subject = self.frames_subject(number);
        Ok(ClientCall {
            requests: Box::new(Sink {
                client: self.client.clone(),
                open_subject: self.open_subject.clone(),
                frames_subject: frames_subject.clone(),
                reply,
                open: (!head.stream).then_some(open),
                pending: None,
                credit,
                max: self.max,
            }),
            responses: Box::new(Responses {
                rx,
                header: None,
                done: false,
                stream: head.stream,
                window: RecvCredit::default(),
                client: self.client.clone(),
                frames_subject,
                number,
                calls: self.calls.clone(),
                max: self.max,
            }),
        })
    }

    /// One message each way (see the `unary` module).
    async fn unary(&self, head: &CallHead, request: Bytes) -> Result<EncodedResponse> {
        let (number, reply) = self.next_call();
        let payload = unary::encode_call(head, &request)?;
        if payload.len() > self.max {
            return Err(too_large(payload.len(), self.max));
        }
        let (answer_tx, answer) = oneshot::channel();
        self.calls.lock().insert(number, Route::Unary(answer_tx));
        let mut awaiting = Awaiting { connection: self, number, answered: false };
        self.client
            .publish_with_reply(self.open_subject.clone(), reply, payload)
            .await
            .map_err(|e| nats_error("sending a call", e).unsent())?;
        let answer = answer.await;
        awaiting.answered = true;
        answer.unwrap_or_else(|_| Err(Error::unavailable("the connection to NATS was lost")))
    }

    fn is_closed(&self) -> bool {
        self.router.is_finished()
    }
}

/// A unary call waiting for its answer. Dropped unanswered, the call is forgotten here and
/// cancelled on the server.
struct Awaiting<'a> {
    connection: &'a NatsConnection,
    number: u64,
    answered: bool,
}

impl Drop for Awaiting<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.connection.calls.lock().remove(&self.number);
            cancel(&self.connection.client, self.connection.frames_subject(self.number));
        }
    }
}

/// Tells the server, from a call's destructor, that its caller gave up on it.
pub(super) fn cancel(client: &Client, frames_subject: String) {
    let client = client.clone();
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let _ = client.publish_with_headers(frames_subject, frame::kind("cancel"), Bytes::new()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::call_number;

    #[test]
    fn a_reply_names_its_call_by_the_number_after_the_last_dash() {
        assert_eq!(call_number("_INBOX.a1.tok-42"), Some(42));
        assert_eq!(call_number("_INBOX.a1.tok-4x2"), None);
        assert_eq!(call_number("_INBOX.a1.tok-"), None);
        assert_eq!(call_number("_INBOX.a1.42"), None);
        assert_eq!(call_number("42"), None);
    }
}
