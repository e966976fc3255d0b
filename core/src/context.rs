//! The context a handler runs in: the caller's metadata, its deadline and cancellation.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::metadata::Metadata;

/// What a handler knows about the call it serves.
///
/// Pass it on to outgoing calls (`Request::with_context`) so the caller's deadline and metadata
/// follow the call chain. Clones share one call's state, so a clone costs a reference count.
#[derive(Clone, Debug)]
pub struct Context(Arc<CallState>);

#[derive(Debug)]
struct CallState {
    metadata: Metadata,
    deadline: Option<Instant>,
    cancel: CancellationToken,
    reply_metadata: Mutex<Metadata>,
}

impl Context {
    /// A context for a call carrying `metadata` that must finish by `deadline`, cancelled by `cancel`.
    pub fn new(metadata: Metadata, deadline: Option<Instant>, cancel: CancellationToken) -> Context {
        Context(Arc::new(CallState { metadata, deadline, cancel, reply_metadata: Mutex::default() }))
    }

    /// A context with no metadata, no deadline and nothing that cancels it.
    pub fn background() -> Context {
        Context::new(Metadata::new(), None, CancellationToken::new())
    }

    /// The metadata the caller sent.
    pub fn metadata(&self) -> &Metadata {
        &self.0.metadata
    }

    fn lock_reply_metadata(&self) -> std::sync::MutexGuard<'_, Metadata> {
        self.0.reply_metadata.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sets metadata sent back to the caller with the response.
    pub fn set_reply_metadata(&self, key: &str, value: impl Into<String>) {
        self.lock_reply_metadata().insert(key, value);
    }

    /// The metadata set with [`Context::set_reply_metadata`] so far.
    pub fn reply_metadata(&self) -> Metadata {
        self.lock_reply_metadata().clone()
    }

    /// Takes the reply metadata, once the handler is done with it.
    pub(crate) fn take_reply_metadata(&self) -> Metadata {
        std::mem::take(&mut *self.lock_reply_metadata())
    }

    /// When the caller stops waiting, if it set a deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.0.deadline
    }

    /// How long is left before the deadline (zero once passed); `None` without a deadline.
    pub fn remaining(&self) -> Option<Duration> {
        self.0.deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Whether the call was cancelled: the caller went away or the deadline passed.
    pub fn is_cancelled(&self) -> bool {
        self.0.cancel.is_cancelled()
    }

    /// Completes when the call is cancelled.
    pub async fn cancelled(&self) {
        self.0.cancel.cancelled().await
    }

    /// The token that cancels this call, for handing to spawned work.
    pub fn cancellation_token(&self) -> &CancellationToken {
        &self.0.cancel
    }
}
