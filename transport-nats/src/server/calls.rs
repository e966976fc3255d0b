//! The listener's call table: the calls in progress, by the call id their reply subject ends
//! in, where the frames of each call find it.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_nats::Subject;
use bytes::Bytes;
use foldhash::HashMap;
use rmicro_core::raw::SendCredit;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::frame::{self, CREDIT, KIND, header};

/// The calls in progress on a listener, by call id, and how many there are: a call's end looks
/// for it only when there are any. A unary call served to its end at once is never listed.
#[derive(Default)]
pub(super) struct Calls {
    calls: Mutex<HashMap<CallKey, ServerCall>>,
    listed: AtomicUsize,
}

/// A call's reply subject, which names the call by its last segment: keying the calls by it
/// copies nothing, and the segment is found once.
pub(super) struct CallKey {
    reply: Subject,
    pub(super) id_start: usize,
}

impl CallKey {
    pub(super) fn new(reply: Subject) -> CallKey {
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

pub(super) struct ServerCall {
    pub(super) requests: Option<mpsc::UnboundedSender<Bytes>>,
    pub(super) cancel: CancellationToken,
    /// A stream's credit for its responses.
    pub(super) credit: Option<SendCredit>,
}

impl Calls {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CallKey, ServerCall>> {
        self.calls.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn insert(&self, key: CallKey, call: ServerCall) {
        let mut calls = self.lock();
        calls.insert(key, call);
        self.listed.store(calls.len(), Ordering::Release);
    }

    /// Takes off the call whose id is `id`, if it is listed.
    pub(super) fn remove(&self, id: &str) {
        if self.listed.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut calls = self.lock();
        calls.remove(id);
        self.listed.store(calls.len(), Ordering::Release);
    }
}

/// Hands a frame to its call; frames of calls that ended are dropped.
pub(super) fn frame_for(message: &async_nats::Message, calls: &Calls) {
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
                credit.grant(more);
            }
        }
        _ => {}
    }
}
