//! The listening side: one subscription, `<node>.>`, takes call opens (`<node>.open`) and the
//! frames of calls in progress (`<node>.c.<call>`) in the order the caller sent them, whatever
//! the number of calls. The calls in progress are in the [`calls`] table; each answers through
//! its [`reply`] and reads a stream's messages from [`requests`].

mod calls;
mod reply;
mod requests;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::{Client, Subject};
use futures::StreamExt;
use rmicro_core::codec::DEFAULT_CONTENT_TYPE;
use rmicro_core::metadata::Metadata;
use rmicro_core::raw::{Arrivals, Listening, QueueListener, RecvCredit, SHUTDOWN_GRACE, SendCredit};
use rmicro_core::transport::{CallHead, IncomingCall, Requests};
use rmicro_core::{Error, Result};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::frame::{self, CONTENT_TYPE, ENDPOINT, LAST, SERVICE, STREAM, TIMEOUT, header};
use crate::{nats_error, too_large, unary};
use calls::{CallKey, Calls, ServerCall, frame_for};
use reply::{AnswerForm, NatsReply, failure, publish};
use requests::StreamRequests;

/// A listener: the queue of calls, and what stops it ([`NatsListening`]).
pub(crate) type NatsListener = QueueListener<NatsListening>;

/// The subscription's task, whether the listener stopped, and the calls in progress.
pub(crate) struct NatsListening {
    task: JoinHandle<()>,
    /// Set once the listener shuts down: opens are refused from then on. A flag rather than a
    /// cancellation token, which takes a lock to be read, as every open reads it.
    stopped: Arc<AtomicBool>,
    calls: Arc<Calls>,
}

impl std::fmt::Debug for NatsListening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsListening").finish_non_exhaustive()
    }
}

impl Drop for NatsListening {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listening for NatsListening {
    /// Stops taking calls, then keeps serving frames until the calls in progress end.
    async fn shutdown(self, _address: &str) {
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
    Ok(QueueListener::new(subject, incoming, NatsListening { task, stopped, calls }))
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
        content_type: header(headers, CONTENT_TYPE).unwrap_or(DEFAULT_CONTENT_TYPE).to_owned(),
        metadata: frame::metadata_from(headers),
        timeout: header(headers, TIMEOUT).and_then(frame::parse_timeout),
        stream: header(headers, STREAM) == Some("1"),
    };
    let (requests_tx, requests_rx) = mpsc::unbounded_channel();
    let (cancel, credit) = (CancellationToken::new(), Some(SendCredit::new()));
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
        window: RecvCredit::default(),
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
