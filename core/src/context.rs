//! The context a handler runs in: the caller's metadata, its deadline and cancellation.
//!
//! While a handler runs, its context is the task's current one ([`Context::current`]): a call
//! the handler makes inherits the caller's deadline and metadata with nothing passed by hand,
//! and is cancelled with it (the handler's future, and the outgoing call in it, is dropped).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::metadata::Metadata;

tokio::task_local! {
    /// The context of the call whose handler runs on this task.
    static CURRENT: Context;
}

/// What a handler knows about the call it serves.
///
/// Calls made while the handler runs inherit its deadline and metadata (see
/// [`Context::current`]); work spawned on a task of its own takes them with
/// [`Context::scope`] or [`Call::context`](crate::client::Call::context). Clones share one
/// call's state, so a clone costs a reference count.
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

    /// The context of the call whose handler (or server layer) is running on this task, if any.
    /// The client reads it for every call, so an outgoing call made inside a handler inherits
    /// the incoming call's deadline and metadata.
    pub fn current() -> Option<Context> {
        CURRENT.try_with(Context::clone).ok()
    }

    /// Runs `work` as part of this call: it becomes [`Context::current`] while `work` runs, as
    /// it is for the handler itself. For work a handler spawns on a task of its own.
    pub fn scope<F: Future>(self, work: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self, work)
    }

    /// Runs `f` with this context as [`Context::current`]: what the server does around each
    /// poll of a handler.
    pub(crate) fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self.clone(), f)
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
