//! The listening side: one subscription, `<node>.>`, takes call opens (`<node>.open`) and the
//! frames of calls in progress (`<node>.c.<call>`) in the order the caller sent them, whatever
//! the number of calls.

use std::borrow::Borrow;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::{Client, HeaderMap, Subject};
use async_trait::async_trait;
use bytes::Bytes;
use foldhash::HashMap;
use futures::future::Either;
use futures::{FutureExt, StreamExt};
use rmicro_core::metadata::Metadata;
use rmicro_core::raw::{Accepting, Arrivals};
use rmicro_core::transport::{CallHead, IncomingCall, Listener, MessageSource, Reply, Requests, ServeCalls};
use rmicro_core::{Error, Result};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::frame::{self, CONTENT_TYPE, CREDIT, ENDPOINT, KIND, LAST, REPLY, SERVICE, STREAM, TIMEOUT, WINDOW, header};
use crate::{nats_error, too_large, unary};

const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The calls in progress on a listener, by call id, and how many there are: a call's end looks
/// for it only when there are any. A unary call served to its end at once is never listed.
#[derive(Default)]
struct Calls {
    calls: Mutex<HashMap<CallKey, ServerCall>>,
    listed: AtomicUsize,
}

/// A call's reply subject, which names the call by its last segment: keying the calls by it
/// copies nothing, and the segment is found once.
struct CallKey {
    reply: Subject,
    id_start: usize,
}

impl CallKey {
    fn new(reply: Subject) -> CallKey {
        let id_start = frame::call_id_start(&reply);
        CallKey { reply, id_start }
    }

    fn id(&self) -> &str {
        &self.reply[self.id_start..]
    }
}

impl PartialEq for CallKey {
    fn eq(&self, other: &CallKey) -> bool {
        self.id() == other.id()
    }
}

impl Eq for CallKey {}

impl Hash for CallKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id().hash(state);
    }
}

impl Borrow<str> for CallKey {
    fn borrow(&self) -> &str {
        self.id()
    }
}

struct ServerCall {
    requests: Option<mpsc::UnboundedSender<Bytes>>,
    cancel: CancellationToken,
    /// A stream's credit for its responses.
    credit: Option<Arc<Semaphore>>,
}

impl Calls {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CallKey, ServerCall>> {
        self.calls.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn insert(&self, key: CallKey, call: ServerCall) {
        let mut calls = self.lock();
        calls.insert(key, call);
        self.listed.store(calls.len(), Ordering::Release);
    }

    /// Takes off the call whose id is `id`, if it is listed.
    fn remove(&self, id: &str) {
        if self.listed.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut calls = self.lock();
        calls.remove(id);
        self.listed.store(calls.len(), Ordering::Release);
    }
}

pub(crate) struct NatsListener {
    subject: String,
    incoming: Accepting,
    task: JoinHandle<()>,
    /// Set once the listener shuts down: opens are refused from then on. A flag rather than a
    /// cancellation token, which takes a lock to be read, as every open reads it.
    stopped: Arc<AtomicBool>,
    calls: Arc<Calls>,
}

impl std::fmt::Debug for NatsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsListener").field("subject", &self.subject).finish_non_exhaustive()
    }
}

impl Drop for NatsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[async_trait]
impl Listener for NatsListener {
    fn address(&self) -> String {
        self.subject.clone()
    }

    async fn accept(&mut self) -> Option<IncomingCall> {
        self.incoming.accept().await
    }

    fn deliver_to(&mut self, server: std::sync::Arc<dyn ServeCalls>) {
        self.incoming.deliver_to(server);
    }

    /// Stops taking calls, then keeps serving frames until the calls in progress end.
    async fn shutdown(self: Box<Self>) {
        self.stopped.store(true, Ordering::Release);
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while !self.calls.lock().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub(crate) async fn listen(client: Client, address: &str, max: usize) -> Result<NatsListener> {
    let subject = if address.is_empty() || address.ends_with(":0") {
        format!("rmicro.node.{}", uuid::Uuid::new_v4().simple())
    } else {
        address.to_owned()
    };
    let subscription =
        client.subscribe(format!("{subject}.>")).await.map_err(|e| nats_error("subscribing to calls", e))?;
    client.flush().await.map_err(|e| nats_error("flushing a subscription", e))?;
    let calls = Arc::new(Calls::default());
    let (tx, incoming) = rmicro_core::raw::arrivals(1024);
    let stopped = Arc::new(AtomicBool::new(false));
    let task =
        tokio::spawn(serve(Arc::new(client), subject.clone(), subscription, tx, calls.clone(), stopped.clone(), max));
    Ok(NatsListener { subject, incoming, task, stopped, calls })
}

/// Takes opens and frames in arrival order.
async fn serve(
    client: Arc<Client>,
    subject: String,
    mut subscription: async_nats::Subscriber,
    incoming: Arrivals,
    calls: Arc<Calls>,
    stopped: Arc<AtomicBool>,
    max: usize,
) {
    let open_subject = format!("{subject}.open");
    while let Some(message) = subscription.next().await {
        if message.subject.as_str() == open_subject {
            match (stopped.load(Ordering::Acquire), message.headers.is_none()) {
                (true, _) => refuse(&client, &message).await,
                (false, true) => open_unary(&client, message, &incoming, &calls, max).await,
                (false, false) => open(&client, message, &incoming, &calls, max).await,
            }
        } else {
            frame_for(&message, &calls);
        }
    }
}

/// Answers an open with a refusal the caller may retry elsewhere.
async fn refuse(client: &Client, message: &async_nats::Message) {
    let Some(inbox) = message.reply.clone() else { return };
    refuse_with(client, inbox, message.headers.is_none(), Error::unavailable("the server is shutting down")).await;
}

/// Sends `error` as the refusal of a call, in the call's own format.
async fn refuse_with(client: &Client, inbox: Subject, unary: bool, error: Error) {
    let _ = publish(client, inbox, failure(unary, error, true)).await;
}

/// The message that ends a call with `error`, in the call's own format (a unary answer, or an
/// `end` frame); `refused` when no handler saw the call, so the caller may send it elsewhere.
fn failure(unary: bool, error: Error, refused: bool) -> (Option<HeaderMap>, Bytes) {
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
fn publish(
    client: &Client,
    subject: Subject,
    (headers, body): (Option<HeaderMap>, Bytes),
) -> impl Future<Output = std::result::Result<(), async_nats::PublishError>> + Send + '_ {
    match headers {
        None => Either::Left(client.publish(subject, body)),
        Some(headers) => Either::Right(client.publish_with_headers(subject, headers, body)),
    }
}

/// Opens a unary call that came in one message without headers.
async fn open_unary(
    client: &Arc<Client>,
    message: async_nats::Message,
    incoming: &Arrivals,
    calls: &Arc<Calls>,
    max: usize,
) {
    let Some(inbox) = message.reply else { return };
    let answer_error = |error: Error| publish(client, inbox.clone(), unary::answer(Err((&error, false))));
    let call = match unary::decode_call(message.payload) {
        Ok(call) => call,
        Err(why) => {
            tracing::warn!(subject = %message.subject, reason = %why, "a malformed call");
            let _ = answer_error(Error::bad_request(format!("malformed call: {why}"))).await;
            return;
        }
    };
    if call.request.len() > max {
        let _ = answer_error(too_large(call.request.len(), max)).await;
        return;
    }
    let Some(arrival) = incoming.reserve().await else {
        return refuse_with(client, inbox, true, Error::unavailable("the server is not accepting calls")).await;
    };
    let cancel = CancellationToken::new();
    let key = CallKey::new(inbox.clone());
    let reply = NatsReply {
        client: client.clone(),
        inbox,
        call_id_start: key.id_start,
        form: AnswerForm::Unary,
        pending: (Metadata::new(), None),
        credit: None,
        calls: calls.clone(),
        finished: false,
    };
    let listed = ServerCall { requests: None, cancel: cancel.clone(), credit: None };
    let call =
        IncomingCall { head: call.head, requests: Requests::Whole(call.request), reply: Box::new(reply), cancel };
    arrival.spawn_with(call, || calls.insert(key, listed));
}

async fn open(client: &Arc<Client>, message: async_nats::Message, incoming: &Arrivals, calls: &Arc<Calls>, max: usize) {
    let (Some(headers), Some(inbox)) = (message.headers.as_ref(), message.reply.clone()) else { return };
    let Some(arrival) = incoming.reserve().await else {
        return refuse_with(client, inbox, false, Error::unavailable("the server is not accepting calls")).await;
    };
    let head = CallHead {
        service: header(headers, SERVICE).unwrap_or_default().to_owned(),
        endpoint: header(headers, ENDPOINT).unwrap_or_default().to_owned(),
        content_type: header(headers, CONTENT_TYPE).unwrap_or("application/protobuf").to_owned(),
        metadata: frame::metadata_from(headers),
        timeout: header(headers, TIMEOUT).and_then(frame::parse_timeout),
        stream: header(headers, STREAM) == Some("1"),
    };
    let (requests_tx, requests_rx) = mpsc::unbounded_channel();
    let (cancel, credit) = (CancellationToken::new(), Some(Arc::new(Semaphore::new(WINDOW))));
    let unary = header(headers, LAST) == Some("1");
    let mut requests = Some(requests_tx);
    if unary {
        if let Some(tx) = requests.take() {
            let _ = tx.send(message.payload.clone());
        }
    }
    let key = CallKey::new(inbox.clone());
    let call_id_start = key.id_start;
    calls.insert(key, ServerCall { requests, cancel: cancel.clone(), credit: credit.clone() });
    let requests = StreamRequests {
        rx: requests_rx,
        cancel: cancel.clone(),
        client: client.clone(),
        inbox: inbox.clone(),
        stream: head.stream,
        consumed: 0,
        max,
    };
    let reply = NatsReply {
        client: client.clone(),
        inbox,
        call_id_start,
        form: if head.stream { AnswerForm::Stream } else { AnswerForm::Headers },
        pending: (Metadata::new(), None),
        credit,
        calls: calls.clone(),
        finished: false,
    };
    arrival.spawn(IncomingCall {
        head,
        requests: Requests::Stream(Box::new(requests)),
        reply: Box::new(reply),
        cancel,
    });
}

/// Hands a frame to its call; frames of calls that ended are dropped.
fn frame_for(message: &async_nats::Message, calls: &Calls) {
    let Some(headers) = message.headers.as_ref() else { return };
    let mut calls = calls.lock();
    let Some(call) = calls.get_mut(&message.subject[frame::call_id_start(&message.subject)..]) else { return };
    match header(headers, KIND) {
        Some("msg") => {
            if let Some(tx) = &call.requests {
                let _ = tx.send(message.payload.clone());
            }
        }
        Some("close") => call.requests = None,
        Some("cancel") => {
            call.requests = None;
            call.cancel.cancel();
        }
        Some("credit") => {
            let more = header(headers, CREDIT).and_then(|c| c.parse().ok()).unwrap_or(0);
            if let Some(credit) = &call.credit {
                credit.add_permits(more);
            }
        }
        _ => {}
    }
}

/// Request messages as they arrive: a stream's, or a unary call's opened with header frames.
struct StreamRequests {
    rx: mpsc::UnboundedReceiver<Bytes>,
    cancel: CancellationToken,
    client: Arc<Client>,
    inbox: Subject,
    stream: bool,
    consumed: usize,
    max: usize,
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
                self.consumed += 1;
                if self.stream && self.consumed % (WINDOW / 2) == 0 {
                    let mut headers = frame::kind("credit");
                    headers.insert(CREDIT, (WINDOW / 2).to_string().as_str());
                    let _ = self.client.publish_with_headers(self.inbox.clone(), headers, Bytes::new()).await;
                }
                Ok(Some(message))
            }
            None if self.cancel.is_cancelled() => Err(Error::canceled("the caller went away")),
            None => Ok(None),
        }
    }
}

/// How a call's answer travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AnswerForm {
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
struct NatsReply {
    /// Shared by every call of the listener: cloning an async-nats client per call costs more.
    client: Arc<Client>,
    /// The caller's reply subject, whose last segment is the call's id.
    inbox: Subject,
    /// Where the call's id starts in `inbox`.
    call_id_start: usize,
    form: AnswerForm,
    pending: (Metadata, Option<Bytes>),
    credit: Option<Arc<Semaphore>>,
    calls: Arc<Calls>,
    finished: bool,
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
        credit.acquire().await.map_err(|_| Error::canceled("the call ended"))?.forget();
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
