//! Asynchronous messaging: publish to a topic, subscribe with a handler.
//!
//! Every backend gives the same semantics, checked by the conformance kit:
//! - a subscription in a queue group shares the topic's messages with the group's other members
//!   (each message to one member), while every group (and every subscription without a group)
//!   gets every message;
//! - with [`AckMode::Auto`] a message is acknowledged when the handler returns `Ok` and
//!   redelivered when it returns `Err` or panics; with [`AckMode::Manual`] the handler calls
//!   [`Delivery::ack`] or [`Delivery::nack`] itself;
//! - headers travel with the body.
//!
//! What a backend cannot do it declares in [`Capabilities`].

mod memory;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;
use crate::metadata::Metadata;

pub use memory::MemoryBroker;

/// A published message: headers plus an opaque body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelope {
    /// Headers, e.g. `content-type` and the publisher's metadata.
    pub headers: Metadata,
    /// The encoded body.
    pub body: Bytes,
}

impl Envelope {
    /// A message with `body` and no headers.
    pub fn new(body: impl Into<Bytes>) -> Envelope {
        Envelope { headers: Metadata::new(), body: body.into() }
    }

    /// Adds a header.
    pub fn with_header(mut self, key: &str, value: impl Into<String>) -> Envelope {
        self.headers.insert(key, value);
        self
    }
}

/// Who acknowledges a delivered message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AckMode {
    /// The broker acknowledges when the handler returns `Ok`, and redelivers on `Err`.
    #[default]
    Auto,
    /// The handler calls [`Delivery::ack`] or [`Delivery::nack`].
    Manual,
}

/// How to subscribe.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct SubscribeOptions {
    /// The queue group: each message goes to one member of the group.
    pub queue: Option<String>,
    /// Who acknowledges messages.
    pub ack: AckMode,
}

impl SubscribeOptions {
    /// Joins the queue group `name`.
    pub fn queue(mut self, name: impl Into<String>) -> SubscribeOptions {
        self.queue = Some(name.into());
        self
    }

    /// Sets the acknowledgement mode.
    pub fn ack(mut self, mode: AckMode) -> SubscribeOptions {
        self.ack = mode;
        self
    }
}

/// What a broker backend can do; the conformance kit checks what is declared and skips the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Queue groups share messages among members.
    pub queue_groups: bool,
    /// A nacked or failed message is delivered again.
    pub redelivery: bool,
    /// Messages published while a durable subscriber is away wait for it.
    pub durable: bool,
}

impl Capabilities {
    /// Capabilities with each property given.
    pub fn new(queue_groups: bool, redelivery: bool, durable: bool) -> Capabilities {
        Capabilities { queue_groups, redelivery, durable }
    }
}

/// A message broker.
#[async_trait]
pub trait Broker: Send + Sync + fmt::Debug + 'static {
    /// The broker's name, e.g. `memory`, `nats`.
    fn name(&self) -> &'static str;
    /// What this backend can do.
    fn capabilities(&self) -> Capabilities;
    /// Connects to the broker server (a no-op where there is none).
    async fn connect(&self) -> Result<()>;
    /// Stops every subscription and disconnects.
    async fn disconnect(&self) -> Result<()>;
    /// Publishes `message` to `topic`; `Ok` means the broker has taken it.
    async fn publish(&self, topic: &str, message: Envelope) -> Result<()>;
    /// Delivers messages published to `topic` from now on to `handler`.
    async fn subscribe(
        &self,
        topic: &str,
        handler: Arc<dyn DeliveryHandler>,
        options: SubscribeOptions,
    ) -> Result<Box<dyn Subscription>>;
}

/// Handles delivered messages.
#[async_trait]
pub trait DeliveryHandler: Send + Sync + 'static {
    /// Handles one delivery; `Err` asks for redelivery (in [`AckMode::Auto`]).
    async fn handle(&self, delivery: Delivery) -> Result<()>;
}

#[async_trait]
impl<F, Fut> DeliveryHandler for F
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    async fn handle(&self, delivery: Delivery) -> Result<()> {
        (self)(delivery).await
    }
}

/// Settles a delivered message with the broker.
#[async_trait]
pub trait Acknowledger: Send + fmt::Debug {
    /// The message was handled; do not deliver it again.
    async fn ack(&mut self) -> Result<()>;
    /// The message was not handled; deliver it again.
    async fn nack(&mut self) -> Result<()>;
}

/// A message delivered to a subscriber.
#[derive(Debug)]
pub struct Delivery {
    topic: String,
    message: Envelope,
    attempt: u32,
    acker: Option<Box<dyn Acknowledger>>,
}

impl Delivery {
    /// A delivery of `message` on `topic`, the `attempt`-th time (1 for the first), settled by
    /// `acker` when the handler acknowledges manually.
    pub fn new(topic: &str, message: Envelope, attempt: u32, acker: Option<Box<dyn Acknowledger>>) -> Delivery {
        Delivery { topic: topic.to_owned(), message, attempt, acker }
    }

    /// The topic the message was published to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The message.
    pub fn message(&self) -> &Envelope {
        &self.message
    }

    /// The message's headers.
    pub fn headers(&self) -> &Metadata {
        &self.message.headers
    }

    /// The message's body.
    pub fn body(&self) -> &Bytes {
        &self.message.body
    }

    /// How many times this message has been delivered, counting this time, where the backend
    /// knows (1 otherwise).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Acknowledges the message (manual mode); in auto mode the broker does it and this does nothing.
    pub async fn ack(&mut self) -> Result<()> {
        match self.acker.take() {
            Some(mut acker) => acker.ack().await,
            None => Ok(()),
        }
    }

    /// Asks for the message again (manual mode); in auto mode return `Err` from the handler instead.
    pub async fn nack(&mut self) -> Result<()> {
        match self.acker.take() {
            Some(mut acker) => acker.nack().await,
            None => Ok(()),
        }
    }
}

/// A live subscription.
#[async_trait]
pub trait Subscription: Send + Sync + fmt::Debug {
    /// The topic subscribed to.
    fn topic(&self) -> &str;
    /// The queue group joined, if any.
    fn queue(&self) -> Option<&str>;
    /// Stops delivery, after the message being handled (if any) is settled.
    async fn unsubscribe(self: Box<Self>) -> Result<()>;
}
