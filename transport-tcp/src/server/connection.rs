//! A connection's call table: the reader turns `Open` frames into calls and routes each later
//! frame to its call; the writer drains the connection's outbox.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use rmicro_core::Error;
use rmicro_core::raw::{Arrivals, SendCredit};
use rmicro_core::transport::{CallHead, IncomingCall, Requests};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::ListenerState;
use super::reply::TcpReply;
use super::requests::StreamRequests;
use crate::call_ids::CallIds;
use crate::frame::{self, Frame, Kind, Reader, Table};
use crate::io::{FrameReader, Outbox, ReadEnd};
use crate::{ReadHalf, WriteHalf, max_frame, too_large, unavailable};

/// A call in progress on a connection.
#[derive(Debug)]
struct Slot {
    requests: Option<mpsc::UnboundedSender<Bytes>>,
    cancel: CancellationToken,
    credit: Option<SendCredit>,
}

#[derive(Debug)]
pub(super) struct ServerConnection {
    peer: String,
    pub(super) outbox: Outbox,
    calls: Mutex<CallIds<Slot>>,
    pub(super) state: Arc<ListenerState>,
}

impl ServerConnection {
    fn calls(&self) -> MutexGuard<'_, CallIds<Slot>> {
        self.calls.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes a call that ended off the table.
    pub(super) fn ended(&self, call: u32) {
        self.calls().remove(&call);
        self.state.live.fetch_sub(1, Ordering::SeqCst);
    }

    /// Answers an `Open` without running anything.
    fn refuse(&self, call: u32, error: Error, refused: bool) {
        let flags = frame::END_ERROR | if refused { frame::END_REFUSED } else { 0 };
        let _ = self.outbox.push(Kind::End, flags, call, |_, _| {}, Bytes::from(error.to_json()));
    }

    async fn dispatch(
        self: &Arc<Self>,
        frame: Frame,
        table: &mut Table,
        calls: &Arrivals,
    ) -> std::result::Result<(), String> {
        let Frame { kind, flags, call, mut body } = frame;
        match kind {
            Kind::Open => {
                let mut reader = Reader::new(&mut body);
                let timeout = if flags & frame::OPEN_TIMEOUT != 0 {
                    Some(Duration::from_millis(reader.u32("timeout")?.into()))
                } else {
                    None
                };
                let head = CallHead {
                    service: reader.string(table, "service")?,
                    endpoint: reader.string(table, "endpoint")?,
                    content_type: reader.string(table, "content type")?,
                    metadata: reader.metadata(table)?,
                    timeout,
                    stream: flags & frame::OPEN_STREAM != 0,
                };
                let request = (flags & frame::OPEN_LAST != 0).then(|| reader.rest());
                if self.calls().contains_key(&call) {
                    return Err(format!("call id {call} is already in use"));
                }
                self.open(call, head, request, calls).await;
            }
            Kind::Message => {
                if let Some(Slot { requests: Some(requests), .. }) = self.calls().get(&call) {
                    let _ = requests.send(body);
                }
            }
            Kind::Close => {
                if let Some(slot) = self.calls().get_mut(&call) {
                    slot.requests = None;
                }
            }
            Kind::Cancel => {
                if let Some(slot) = self.calls().get_mut(&call) {
                    slot.requests = None;
                    slot.cancel.cancel();
                }
            }
            Kind::Credit => {
                let more = Reader::new(&mut body).u32("credit")?;
                if let Some(Slot { credit: Some(credit), .. }) = self.calls().get(&call) {
                    credit.grant(more.into());
                }
            }
            Kind::Header | Kind::End => return Err(format!("a client sent a {kind:?} frame")),
        }
        Ok(())
    }

    async fn open(self: &Arc<Self>, call: u32, head: CallHead, request: Option<Bytes>, calls: &Arrivals) {
        let max = self.state.max;
        if self.state.refusing.load(Ordering::SeqCst) {
            return self.refuse(call, unavailable("the server is shutting down"), true);
        }
        if let Some(request) = request.as_ref().filter(|r| r.len() > max) {
            return self.refuse(call, too_large(request.len(), max), false);
        }
        let Some(arrival) = calls.reserve().await else {
            return self.refuse(call, unavailable("the server is not accepting calls"), true);
        };
        let cancel = CancellationToken::new();
        let credit = head.stream.then(SendCredit::new);
        let (requests, slot_requests) = match request {
            Some(request) => (Requests::Whole(request), None),
            None => {
                let (tx, rx) = mpsc::unbounded_channel();
                let requests = StreamRequests::new(rx, cancel.clone(), self.clone(), call);
                (Requests::Stream(Box::new(requests)), Some(tx))
            }
        };
        self.calls().insert(call, Slot { requests: slot_requests, cancel: cancel.clone(), credit: credit.clone() });
        self.state.live.fetch_add(1, Ordering::SeqCst);
        let reply = TcpReply::new(self.clone(), call, head.stream, credit);
        arrival.spawn(IncomingCall { head, requests, reply: Box::new(reply), cancel });
    }

    /// The connection is gone: calls in progress learn that their caller went away.
    fn cancel_all(&self) {
        for (_, slot) in self.calls().drain() {
            slot.cancel.cancel();
        }
    }
}

/// Serves one connection until it ends or `closing` fires.
pub(super) async fn serve(
    read: ReadHalf,
    write: WriteHalf,
    peer: String,
    state: Arc<ListenerState>,
    calls: Arrivals,
    closing: CancellationToken,
) {
    let connection =
        Arc::new(ServerConnection { peer, outbox: Outbox::default(), calls: Mutex::default(), state: state.clone() });
    let writer = connection.clone();
    let writer = tokio::spawn(async move { writer.outbox.drain(write).await });
    let mut reader = FrameReader::new(read, max_frame(state.max)).pausing();
    let mut table = Table::default();
    // Made once: a wait for cancellation joins the token's list of waiters when first polled and
    // leaves it when dropped, each under the token's lock, which a wait made per frame repeats.
    let mut closing = std::pin::pin!(closing.cancelled());
    let end = loop {
        let frame = tokio::select! {
            biased;
            _ = &mut closing => break None,
            frame = reader.next() => frame,
        };
        match frame {
            Ok(frame) => {
                if let Err(why) = connection.dispatch(frame, &mut table, &calls).await {
                    break Some(ReadEnd::Malformed(why));
                }
            }
            Err(end) => break Some(end),
        }
    };
    let why = match &end {
        Some(end @ ReadEnd::Malformed(_)) => {
            tracing::warn!(peer = %connection.peer, reason = %end, "closing the connection");
            end.to_string()
        }
        Some(end) => end.to_string(),
        None => "the server closed the connection".to_owned(),
    };
    connection.cancel_all();
    connection.outbox.close(&why);
    let _ = writer.await;
}
