//! Pieces every broker backend needs: running a handler so that a panic cannot stop a
//! subscription, a subscription served by a task, and a manual acknowledgement reported over a
//! channel.

use std::panic::AssertUnwindSafe;

use async_trait::async_trait;
use futures::FutureExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::broker::{Acknowledger, Delivery, DeliveryHandler, Subscription};
use crate::error::{Error, Result};

/// Runs `handler` on `delivery`; a panic becomes an error, so the caller can redeliver and go on.
pub async fn handle_safely(handler: &dyn DeliveryHandler, delivery: Delivery) -> Result<()> {
    AssertUnwindSafe(handler.handle(delivery))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| Err(Error::internal("the subscriber's handler panicked")))
}

/// A subscription served by a task that stops when `stop` is cancelled. Unsubscribing waits
/// for the task, so the message in hand is settled first; dropping it only signals the stop.
#[derive(Debug)]
pub struct WorkerSubscription {
    topic: String,
    queue: Option<String>,
    stop: CancellationToken,
    worker: Option<JoinHandle<()>>,
}

impl WorkerSubscription {
    /// A subscription to `topic` (in `queue`) served by `worker`, which watches `stop`.
    pub fn new(
        topic: &str,
        queue: Option<String>,
        stop: CancellationToken,
        worker: JoinHandle<()>,
    ) -> WorkerSubscription {
        WorkerSubscription { topic: topic.to_owned(), queue, stop, worker: Some(worker) }
    }
}

#[async_trait]
impl Subscription for WorkerSubscription {
    fn topic(&self) -> &str {
        &self.topic
    }

    fn queue(&self) -> Option<&str> {
        self.queue.as_deref()
    }

    async fn unsubscribe(mut self: Box<Self>) -> Result<()> {
        self.stop.cancel();
        if let Some(worker) = self.worker.take() {
            let _ = worker.await;
        }
        Ok(())
    }
}

impl Drop for WorkerSubscription {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A manual acknowledgement reported over a channel: the receiver gets `true` for an ack,
/// `false` for a nack, and an error if the delivery was dropped unsettled.
pub fn settle_channel() -> (Box<dyn Acknowledger>, oneshot::Receiver<bool>) {
    let (tx, rx) = oneshot::channel();
    (Box::new(Settle(Some(tx))), rx)
}

#[derive(Debug)]
struct Settle(Option<oneshot::Sender<bool>>);

#[async_trait]
impl Acknowledger for Settle {
    async fn ack(&mut self) -> Result<()> {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(true);
        }
        Ok(())
    }

    async fn nack(&mut self) -> Result<()> {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(false);
        }
        Ok(())
    }
}
