//! The one future that decides how a call ends: its work, a panic in it, the caller cancelling,
//! the deadline or the server stopping, whichever comes first.
//!
//! Written as a struct rather than an `async fn` taking the work: such a function keeps the
//! work future twice in its state (once as the argument, once where it is polled), and a call's
//! work is most of its task, which is copied as it is built and spawned.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures::FutureExt;
use futures::future::CatchUnwind;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::context::Context as CallContext;
use crate::error::{Error, Result};

pin_project! {
    /// Resolves to the work's result, or to the error that ended the call first.
    pub(crate) struct BoundedCall<'a, F> {
        #[pin]
        work: CatchUnwind<AssertUnwindSafe<F>>,
        // The watches and the timer are made on the first poll that finds the work waiting: a
        // call that answers straight away has no use for them.
        #[pin]
        watching: Option<Watching<'a>>,
        deadline: Option<Instant>,
        context: &'a CallContext,
        stop: &'a CancellationToken,
        server: &'a str,
    }
}

pin_project! {
    /// What ends a call that waits, other than its work.
    struct Watching<'a> {
        #[pin]
        cancelled: WaitForCancellationFuture<'a>,
        #[pin]
        stopped: WaitForCancellationFuture<'a>,
        #[pin]
        expired: Option<Sleep>,
    }
}

impl<'a, T, F: Future<Output = Result<T>>> BoundedCall<'a, F> {
    /// Runs `work` as the call of `context` (its [`Context::current`](CallContext::current)
    /// while polled) until it ends, the call is cancelled (the caller went away), `deadline`
    /// passes (the call is then cancelled) or `stop` fires (the server stops without waiting).
    /// Entering the context here, rather than wrapping the work in a future of its own, spares
    /// every call a move of its work.
    pub(crate) fn new(
        server: &'a str,
        deadline: Option<Instant>,
        context: &'a CallContext,
        stop: &'a CancellationToken,
        work: F,
    ) -> BoundedCall<'a, F> {
        BoundedCall { work: AssertUnwindSafe(work).catch_unwind(), watching: None, deadline, context, stop, server }
    }
}

impl<T, F: Future<Output = Result<T>>> Future for BoundedCall<'_, F> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let mut this = self.project();
        if let Poll::Ready(done) = this.context.enter(|| this.work.as_mut().poll(cx)) {
            return Poll::Ready(done.unwrap_or_else(|_| {
                tracing::error!(server = %this.server, "a handler panicked");
                Err(Error::internal("the handler panicked"))
            }));
        }
        loop {
            let Some(watching) = this.watching.as_mut().as_pin_mut().map(|watching| watching.project()) else {
                this.watching.set(Some(Watching {
                    cancelled: this.context.cancellation_token().cancelled(),
                    stopped: this.stop.cancelled(),
                    expired: this.deadline.map(tokio::time::sleep_until),
                }));
                continue;
            };
            if watching.cancelled.poll(cx).is_ready() {
                return Poll::Ready(Err(Error::canceled("the caller cancelled the call")));
            }
            if let Some(expired) = watching.expired.as_pin_mut() {
                if expired.poll(cx).is_ready() {
                    this.context.cancellation_token().cancel();
                    return Poll::Ready(Err(Error::deadline_exceeded(
                        "the call's deadline passed while it was handled",
                    )));
                }
            }
            ready!(watching.stopped.poll(cx));
            this.context.cancellation_token().cancel();
            return Poll::Ready(Err(Error::unavailable("the server stopped before the call finished")));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::task::Waker;
    use std::time::Duration;

    use super::*;
    use crate::error::Code;
    use crate::metadata::Metadata;

    #[tokio::test(start_paused = true)]
    async fn the_deadline_ends_and_cancels_work_that_waits() {
        let (cancel, stop) = (CancellationToken::new(), CancellationToken::new());
        let call = CallContext::new(Metadata::new(), None, cancel.clone());
        let deadline = Instant::now() + Duration::from_millis(50);
        let never = std::future::pending::<Result<()>>();
        let ended = BoundedCall::new("test", Some(deadline), &call, &stop, never).await;
        assert_eq!(ended.unwrap_err().code, Code::DeadlineExceeded);
        assert!(cancel.is_cancelled(), "the call is cancelled at its deadline");
        assert!(Instant::now() >= deadline, "not before it");
    }

    #[tokio::test]
    async fn a_stop_ends_and_cancels_work_that_waits() {
        let (cancel, stop) = (CancellationToken::new(), CancellationToken::new());
        let call = CallContext::new(Metadata::new(), None, cancel.clone());
        stop.cancel();
        let never = std::future::pending::<Result<()>>();
        let ended = BoundedCall::new("test", None, &call, &stop, never).await;
        assert_eq!(ended.unwrap_err().code, Code::Unavailable);
        assert!(cancel.is_cancelled(), "what the handler started with the call's token stops too");
    }

    #[tokio::test]
    async fn the_work_runs_as_the_current_call() {
        let (call, stop) = (CallContext::background(), CancellationToken::new());
        call.set_reply_metadata("seen", "yes");
        let work = async { Ok(CallContext::current().map(|c| c.reply_metadata().get("seen").map(str::to_owned))) };
        let seen = BoundedCall::new("test", None, &call, &stop, work).await.unwrap();
        assert_eq!(seen, Some(Some("yes".to_owned())));
        assert!(CallContext::current().is_none(), "only while the work is polled");
    }

    #[tokio::test]
    async fn work_that_answers_at_once_makes_no_timer() {
        let (call, stop) = (CallContext::background(), CancellationToken::new());
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut done = pin!(BoundedCall::new("test", Some(deadline), &call, &stop, async { Ok(7) }));
        let polled = done.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        assert!(matches!(polled, Poll::Ready(Ok(7))));
        assert!(done.watching.is_none(), "a timer was made for a call that never waited");
    }
}
