//! An in-process broker with queue groups and redelivery; it keeps nothing across restarts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::{
    AckMode, Acknowledger, Broker, Capabilities, Delivery, DeliveryHandler, Envelope, SubscribeOptions, Subscription,
};
use crate::error::{Error, Result};
use crate::raw::WorkerSubscription;

/// The in-memory broker. Clones share topics and subscriptions.
#[derive(Clone, Debug, Default)]
pub struct MemoryBroker {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// topic -> group name -> the group's shared queue.
    topics: Mutex<HashMap<String, HashMap<String, Group>>>,
    disconnected: AtomicBool,
    /// Cancelled on disconnect, stopping every subscription.
    stop_all: Mutex<CancellationToken>,
}

#[derive(Debug)]
struct Group {
    queue: async_channel::Sender<Pending>,
    receiver: async_channel::Receiver<Pending>,
    members: usize,
}

#[derive(Debug)]
struct Pending {
    message: Envelope,
    attempt: u32,
}

impl MemoryBroker {
    /// A broker with no topics.
    pub fn new() -> MemoryBroker {
        MemoryBroker::default()
    }
}

impl Inner {
    fn topics(&self) -> MutexGuard<'_, HashMap<String, HashMap<String, Group>>> {
        self.topics.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn stop_all(&self) -> CancellationToken {
        self.stop_all.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn leave(&self, topic: &str, group: &str) {
        let mut topics = self.topics();
        if let Some(groups) = topics.get_mut(topic) {
            if let Some(g) = groups.get_mut(group) {
                g.members -= 1;
                if g.members == 0 {
                    groups.remove(group);
                }
            }
            if groups.is_empty() {
                topics.remove(topic);
            }
        }
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new(true, true, false)
    }

    async fn connect(&self) -> Result<()> {
        let mut stop_all = self.inner.stop_all.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if stop_all.is_cancelled() {
            *stop_all = CancellationToken::new();
        }
        self.inner.disconnected.store(false, Ordering::SeqCst);
        Ok(())
    }

    async fn disconnect(&self) -> Result<()> {
        self.inner.disconnected.store(true, Ordering::SeqCst);
        self.inner.stop_all().cancel();
        Ok(())
    }

    async fn publish(&self, topic: &str, message: Envelope) -> Result<()> {
        if self.inner.disconnected.load(Ordering::SeqCst) {
            return Err(Error::unavailable("memory broker is disconnected"));
        }
        if let Some(groups) = self.inner.topics().get(topic) {
            for group in groups.values() {
                // Unbounded: cannot be full, and the group's receiver lives as long as the group.
                let _ = group.queue.try_send(Pending { message: message.clone(), attempt: 1 });
            }
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        topic: &str,
        handler: Arc<dyn DeliveryHandler>,
        options: SubscribeOptions,
    ) -> Result<Box<dyn Subscription>> {
        if self.inner.disconnected.load(Ordering::SeqCst) {
            return Err(Error::unavailable("memory broker is disconnected"));
        }
        let group = options.queue.clone().unwrap_or_else(|| format!("_sub-{}", uuid::Uuid::new_v4()));
        let (queue, receiver) = {
            let mut topics = self.inner.topics();
            let g = topics.entry(topic.to_owned()).or_default().entry(group.clone()).or_insert_with(|| {
                let (queue, receiver) = async_channel::unbounded();
                Group { queue, receiver, members: 0 }
            });
            g.members += 1;
            (g.queue.clone(), g.receiver.clone())
        };
        let stop = self.inner.stop_all().child_token();
        let worker = tokio::spawn(consume(Consumer {
            topic: topic.to_owned(),
            handler,
            ack: options.ack,
            queue,
            receiver,
            stop: stop.clone(),
        }));
        Ok(Box::new(MemorySubscription {
            topic: topic.to_owned(),
            group,
            worker: Some(WorkerSubscription::new(topic, options.queue, stop, worker)),
            broker: self.inner.clone(),
        }))
    }
}

struct Consumer {
    topic: String,
    handler: Arc<dyn DeliveryHandler>,
    ack: AckMode,
    queue: async_channel::Sender<Pending>,
    receiver: async_channel::Receiver<Pending>,
    stop: CancellationToken,
}

async fn consume(c: Consumer) {
    loop {
        let pending = tokio::select! {
            biased;
            _ = c.stop.cancelled() => return,
            next = c.receiver.recv() => match next {
                Ok(pending) => pending,
                Err(_) => return,
            },
        };
        let attempt = pending.attempt;
        let message = pending.message.clone();
        let mut acker = MemoryAcker { queue: c.queue.clone(), pending: Some(pending) };
        let delivery = match c.ack {
            AckMode::Auto => Delivery::new(&c.topic, message, attempt, None),
            AckMode::Manual => Delivery::new(&c.topic, message, attempt, Some(Box::new(acker.take()))),
        };
        let handled = crate::raw::handle_safely(&*c.handler, delivery).await.is_ok();
        if !handled {
            tracing::warn!(topic = %c.topic, attempt, "memory broker: handler failed; message will be redelivered");
        }
        if c.ack == AckMode::Auto {
            let _ = if handled { acker.ack().await } else { acker.nack().await };
        }
    }
}

/// Puts its message back on the group's queue when nacked or dropped unsettled, so a message is
/// never lost between delivery and acknowledgement.
#[derive(Debug)]
struct MemoryAcker {
    queue: async_channel::Sender<Pending>,
    pending: Option<Pending>,
}

impl MemoryAcker {
    fn take(&mut self) -> MemoryAcker {
        MemoryAcker { queue: self.queue.clone(), pending: self.pending.take() }
    }

    fn requeue(&mut self) {
        if let Some(mut pending) = self.pending.take() {
            pending.attempt += 1;
            let _ = self.queue.try_send(pending);
        }
    }
}

#[async_trait]
impl Acknowledger for MemoryAcker {
    async fn ack(&mut self) -> Result<()> {
        self.pending = None;
        Ok(())
    }

    async fn nack(&mut self) -> Result<()> {
        self.requeue();
        Ok(())
    }
}

impl Drop for MemoryAcker {
    fn drop(&mut self) {
        self.requeue();
    }
}

/// A worker subscription that also leaves its group when it goes away.
#[derive(Debug)]
struct MemorySubscription {
    topic: String,
    group: String,
    worker: Option<WorkerSubscription>,
    broker: Arc<Inner>,
}

#[async_trait]
impl Subscription for MemorySubscription {
    fn topic(&self) -> &str {
        &self.topic
    }

    fn queue(&self) -> Option<&str> {
        self.worker.as_ref().and_then(|w| w.queue())
    }

    async fn unsubscribe(mut self: Box<Self>) -> Result<()> {
        match self.worker.take() {
            Some(worker) => Box::new(worker).unsubscribe().await,
            None => Ok(()),
        }
    }
}

impl Drop for MemorySubscription {
    fn drop(&mut self) {
        self.worker.take();
        self.broker.leave(&self.topic, &self.group);
    }
}
