//! The context a handler runs in: the caller's metadata, its deadline and cancellation.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::metadata::Metadata;

/// What a handler knows about the call it serves.
///
/// Pass it on to outgoing calls (`Request::with_context`) so the caller's deadline and metadata
/// follow the call chain.
#[derive(Clone, Debug)]
pub struct Context {
    metadata: Metadata,
    deadline: Option<Instant>,
    cancel: CancellationToken,
    reply_metadata: ReplyMetadata,
}

/// The metadata a handler sets for the caller, shared by every clone of its context.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReplyMetadata(Arc<Mutex<Metadata>>);

impl ReplyMetadata {
    fn lock(&self) -> std::sync::MutexGuard<'_, Metadata> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes what was set, once the handler is done with it.
    pub(crate) fn take(&self) -> Metadata {
        std::mem::take(&mut *self.lock())
    }
}

impl Context {
    /// A context for a call carrying `metadata` that must finish by `deadline`, cancelled by `cancel`.
    pub fn new(metadata: Metadata, deadline: Option<Instant>, cancel: CancellationToken) -> Context {
        Context { metadata, deadline, cancel, reply_metadata: ReplyMetadata::default() }
    }

    /// A context with no metadata, no deadline and nothing that cancels it.
    pub fn background() -> Context {
        Context::new(Metadata::new(), None, CancellationToken::new())
    }

    /// The metadata the caller sent.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Sets metadata sent back to the caller with the response.
    pub fn set_reply_metadata(&self, key: &str, value: impl Into<String>) {
        self.reply_metadata.lock().insert(key, value);
    }

    /// The metadata set with [`Context::set_reply_metadata`] so far.
    pub fn reply_metadata(&self) -> Metadata {
        self.reply_metadata.lock().clone()
    }

    /// Where the handler's reply metadata is kept: what the server holds on to, rather than
    /// the whole context, to read it when the handler returns.
    pub(crate) fn reply_metadata_slot(&self) -> ReplyMetadata {
        self.reply_metadata.clone()
    }

    /// When the caller stops waiting, if it set a deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// How long is left before the deadline (zero once passed); `None` without a deadline.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Whether the call was cancelled: the caller went away or the deadline passed.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Completes when the call is cancelled.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    /// The token that cancels this call, for handing to spawned work.
    pub fn cancellation_token(&self) -> &CancellationToken {
        &self.cancel
    }
}
