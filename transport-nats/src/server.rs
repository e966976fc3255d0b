//! The listening side: one subscription, `<node>.>`, takes call opens (`<node>.open`) and the
//! frames of calls in progress (`<node>.c.<call>`) in the order the caller sent them, whatever
//! the number of calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::{Client, HeaderMap};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use rmicro_core::metadata::Metadata;
use rmicro_core::transport::{CallHead, IncomingCall, Listener, MessageSource, Reply};
use rmicro_core::{Error, Result};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::frame::{
    self, CALL, CONTENT_TYPE, CREDIT, ENDPOINT, KIND, LAST, REPLY, SERVICE, STREAM, TIMEOUT, WINDOW, header,
};
use crate::{nats_error, too_large};

const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The calls in progress on a listener, by call id.
#[derive(Default)]
struct Calls(Mutex<HashMap<String, ServerCall>>);

struct ServerCall {
    requests: Option<mpsc::UnboundedSender<Bytes>>,
    cancel: CancellationToken,
    credit: Arc<Semaphore>,
}

impl Calls {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ServerCall>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub(crate) struct NatsListener {
    subject: String,
    incoming: mpsc::Receiver<IncomingCall>,
    task: JoinHandle<()>,
    accepting: CancellationToken,
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
        self.incoming.recv().await
    }

    /// Stops taking calls, then keeps serving frames until the calls in progress end.
    async fn shutdown(self: Box<Self>) {
        self.accepting.cancel();
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
    let (tx, incoming) = mpsc::channel(1024);
    let accepting = CancellationToken::new();
    let task = tokio::spawn(serve(client, subject.clone(), subscription, tx, calls.clone(), accepting.clone(), max));
    Ok(NatsListener { subject, incoming, task, accepting, calls })
}

/// Takes opens and frames in arrival order.
async fn serve(
    client: Client,
    subject: String,
    mut subscription: async_nats::Subscriber,
    incoming: mpsc::Sender<IncomingCall>,
    calls: Arc<Calls>,
    stopped: CancellationToken,
    max: usize,
) {
    let open_subject = format!("{subject}.open");
    while let Some(message) = subscription.next().await {
        if message.subject.as_str() == open_subject {
            if stopped.is_cancelled() {
                refuse(&client, &message).await;
            } else {
                open(&client, message, &incoming, &calls, max).await;
            }
        } else {
            frame_for(&message, &calls);
        }
    }
}

/// Answers an open with a refusal the caller may retry elsewhere.
async fn refuse(client: &Client, message: &async_nats::Message) {
    let Some(inbox) = message.reply.clone() else { return };
    let error = Err(Error::unavailable("the server is shutting down"));
    let (mut headers, body) = NatsReply::end_frame(&error, &Metadata::new(), None);
    headers.insert(crate::frame::REFUSED, "1");
    let _ = client.publish_with_headers(inbox, headers, body).await;
}

async fn open(
    client: &Client,
    message: async_nats::Message,
    incoming: &mpsc::Sender<IncomingCall>,
    calls: &Arc<Calls>,
    max: usize,
) {
    {
        let (Some(headers), Some(reply)) = (message.headers.as_ref(), message.reply.clone()) else { return };
        let Some(call_id) = header(headers, CALL).map(str::to_owned) else { return };
        let head = CallHead {
            service: header(headers, SERVICE).unwrap_or_default().to_owned(),
            endpoint: header(headers, ENDPOINT).unwrap_or_default().to_owned(),
            content_type: header(headers, CONTENT_TYPE).unwrap_or("application/protobuf").to_owned(),
            metadata: frame::metadata_from(headers),
            timeout: header(headers, TIMEOUT).and_then(frame::parse_timeout),
            stream: header(headers, STREAM) == Some("1"),
        };
        let (requests_tx, requests_rx) = mpsc::unbounded_channel();
        let (cancel, credit) = (CancellationToken::new(), Arc::new(Semaphore::new(WINDOW)));
        let unary = header(headers, LAST) == Some("1");
        let mut requests = Some(requests_tx);
        if unary {
            if let Some(tx) = requests.take() {
                let _ = tx.send(message.payload.clone());
            }
        }
        calls.lock().insert(call_id.clone(), ServerCall { requests, cancel: cancel.clone(), credit: credit.clone() });
        let reply = NatsReply {
            client: client.clone(),
            inbox: reply.to_string(),
            call_id: call_id.clone(),
            unary: !head.stream,
            pending: (Metadata::new(), None),
            credit,
            calls: calls.clone(),
            finished: false,
        };
        let requests = Requests {
            rx: requests_rx,
            cancel: cancel.clone(),
            client: client.clone(),
            inbox: reply.inbox.clone(),
            stream: head.stream,
            consumed: 0,
            max,
        };
        let inbox = reply.inbox.clone();
        let call = IncomingCall { head, requests: Box::new(requests), reply: Box::new(reply), cancel };
        if let Err(refused) = incoming.send(call).await {
            drop(refused);
            calls.lock().remove(&call_id);
            let error = Err(Error::unavailable("the server is not accepting calls"));
            let (mut headers, body) = NatsReply::end_frame(&error, &Metadata::new(), None);
            headers.insert(crate::frame::REFUSED, "1");
            let _ = client.publish_with_headers(inbox, headers, body).await;
        }
    }
}

/// Hands a frame to its call; frames of calls that ended are dropped.
fn frame_for(message: &async_nats::Message, calls: &Calls) {
    {
        let Some(call_id) = message.subject.rsplit('.').next().map(str::to_owned) else { return };
        let Some(headers) = message.headers.as_ref() else { return };
        let mut calls = calls.lock();
        let Some(call) = calls.get_mut(&call_id) else { return };
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
                call.credit.add_permits(more);
            }
            _ => {}
        }
    }
}

struct Requests {
    rx: mpsc::UnboundedReceiver<Bytes>,
    cancel: CancellationToken,
    client: Client,
    inbox: String,
    stream: bool,
    consumed: usize,
    max: usize,
}

impl std::fmt::Debug for Requests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Requests").field("inbox", &self.inbox).finish_non_exhaustive()
    }
}

#[async_trait]
impl MessageSource for Requests {
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

/// The server's answer. A unary call's header, response and status go out as one `end` frame;
/// a stream's as they come, within the caller's credit. Dropped unfinished (the server stopped),
/// it tells the caller so.
struct NatsReply {
    client: Client,
    inbox: String,
    call_id: String,
    unary: bool,
    pending: (Metadata, Option<Bytes>),
    credit: Arc<Semaphore>,
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
}

#[async_trait]
impl Reply for NatsReply {
    async fn send_header(&mut self, metadata: Metadata) -> Result<()> {
        if self.unary {
            self.pending.0 = metadata;
            return Ok(());
        }
        let mut headers = frame::kind("header");
        frame::insert_metadata(&mut headers, &metadata);
        self.publish(headers, Bytes::new()).await
    }

    async fn send(&mut self, message: Bytes) -> Result<()> {
        if self.unary {
            if self.pending.1.replace(message).is_some() {
                return Err(Error::internal("a unary call answers with one message"));
            }
            return Ok(());
        }
        let permit = self.credit.acquire().await.map_err(|_| Error::canceled("the call ended"))?;
        permit.forget();
        self.publish(frame::kind("msg"), message).await
    }

    async fn finish(mut self: Box<Self>, status: Result<()>) {
        self.finished = true;
        self.calls.lock().remove(&self.call_id);
        let reply = if self.unary { self.pending.1.take() } else { None };
        let (headers, body) = NatsReply::end_frame(&status, &self.pending.0, reply);
        if let Err(e) = self.publish(headers, body).await {
            tracing::warn!(inbox = %self.inbox, error = %e, "could not send a call's status");
        }
    }
}

impl Drop for NatsReply {
    fn drop(&mut self) {
        self.calls.lock().remove(&self.call_id);
        if self.finished {
            return;
        }
        let error = Err(Error::unavailable("the server stopped before answering"));
        let (headers, body) = NatsReply::end_frame(&error, &Metadata::new(), None);
        let (client, inbox) = (self.client.clone(), self.inbox.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = client.publish_with_headers(inbox, headers, body).await;
            });
        }
    }
}
