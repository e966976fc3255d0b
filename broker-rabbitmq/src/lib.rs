//! rmicro's RabbitMQ broker (AMQP 0.9.1, through lapin).
//!
//! Topics are routing keys on a durable topic exchange (default `micro`). A queue group is a
//! durable queue (`<group>.<topic>`) bound to its topic: each message goes to one member, and
//! messages wait in the queue while every member is away. A subscription without a group gets
//! an exclusive, auto-deleted queue of its own. Publishing waits for the broker's publisher
//! confirm, so `Ok` means RabbitMQ has taken the message; a publish that is not confirmed is
//! an error the caller can retry. Deliveries are acked after the handler returns `Ok` (auto) or
//! when it acks; a failed handler or a nack requeues the message. Each subscription keeps its
//! own connection and, when it drops, reconnects with backoff and declares its exchange, queue
//! and binding again before consuming; the publisher reconnects on its next publish. Every
//! exchange with the broker has an answer timeout (10 s by default), so a broker that takes the
//! connection and says nothing (as RabbitMQ can while it starts) is an `Unavailable` error, not
//! a wait forever; a subscription also checks its connection's state every second rather than
//! trusting the consumer's stream alone to end when the connection drops.
//!
//! # Example
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use rmicro_core::prelude::*;
//! use rmicro_broker_rabbitmq::{RabbitBroker, RabbitConfig};
//!
//! # async fn demo() -> Result<(), Error> {
//! let broker = Arc::new(RabbitBroker::new(RabbitConfig::new("amqp://guest:guest@127.0.0.1:5672/%2f")));
//! let service = Service::builder("billing").broker(broker).build();
//! # Ok(()) }
//! ```
//!
//! # Configuration
//!
//! [`RabbitConfig`]: the AMQP URL (credentials, vhost; `amqps://` for TLS), the exchange, the
//! prefetch (QoS) per subscription, the answer timeout, how long an unused group queue is kept. Through the `rmicro` facade:
//! `MICRO_BROKER=rabbitmq MICRO_BROKER_ADDRESS=amqp://guest:guest@127.0.0.1:5672/%2f`.
//!
//! # Capabilities
//!
//! - [x] queue groups, every group gets every message
//! - [x] redelivery (nack with requeue; unacked messages of a lost connection)
//! - [x] durable group queues, publisher confirms, reconnection with re-declared topology
//!
//! # Tests
//!
//! The core broker suite runs against the real RabbitMQ at `MICRO_TEST_AMQP_URL` (default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`), which the project's test script starts when none
//! runs; `tests/restart.rs` restarts the broker's app (`rabbitmqctl stop_app`/`start_app`)
//! during publishing, alone in its test binary so nothing else runs beside it.

mod subscription;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lapin::Confirmation;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use rmicro_core::broker::{Broker, Capabilities, Handler, Message, SubscribeOptions, Subscription};
use rmicro_core::metadata::Metadata;
use rmicro_core::{Code, Error, Result};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

/// How to reach RabbitMQ and how to lay out the topology.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RabbitConfig {
    /// The AMQP URL, with credentials and vhost (`amqps://` for TLS).
    pub url: String,
    /// The topic exchange (durable).
    pub exchange: String,
    /// Unacked deliveries a subscription may hold (QoS prefetch).
    pub prefetch: u16,
    /// How long one exchange with RabbitMQ (connecting, a declaration, a publisher confirm, an
    /// ack) may take before it counts as failed: a broker that is still starting can accept a
    /// connection and not answer on it, and a connection that died can leave lapin waiting.
    pub answer_timeout: Duration,
    /// How long a queue group's durable queue outlives its last member (RabbitMQ's `x-expires`,
    /// messages waiting in it included); `None` keeps it until it is deleted by hand. RabbitMQ
    /// refuses to declare an existing queue again with another value.
    pub group_idle: Option<Duration>,
}

impl fmt::Debug for RabbitConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = match self.url.split_once('@') {
            Some((credentials, rest)) => {
                format!("{}<redacted>@{rest}", &credentials[..credentials.find("://").map_or(0, |i| i + 3)])
            }
            None => self.url.clone(),
        };
        f.debug_struct("RabbitConfig")
            .field("url", &url)
            .field("exchange", &self.exchange)
            .field("prefetch", &self.prefetch)
            .field("answer_timeout", &self.answer_timeout)
            .field("group_idle", &self.group_idle)
            .finish()
    }
}

impl RabbitConfig {
    /// The broker at `url`, exchange `micro`, prefetch 16, answers awaited 10 seconds, group
    /// queues kept until deleted.
    pub fn new(url: impl Into<String>) -> RabbitConfig {
        RabbitConfig {
            url: url.into(),
            exchange: "micro".to_owned(),
            prefetch: 16,
            answer_timeout: Duration::from_secs(10),
            group_idle: None,
        }
    }

    /// Uses the topic exchange `name`.
    pub fn exchange(mut self, name: impl Into<String>) -> RabbitConfig {
        self.exchange = name.into();
        self
    }

    /// Sets the prefetch (QoS) of each subscription.
    pub fn prefetch(mut self, prefetch: u16) -> RabbitConfig {
        self.prefetch = prefetch;
        self
    }

    /// Deletes a queue group's queue once no member has consumed from it for `idle`.
    pub fn group_idle(mut self, idle: Duration) -> RabbitConfig {
        self.group_idle = Some(idle);
        self
    }

    /// Sets how long one exchange with RabbitMQ may take before it counts as failed.
    pub fn answer_timeout(mut self, timeout: Duration) -> RabbitConfig {
        self.answer_timeout = timeout;
        self
    }
}

pub(crate) fn amqp_error(doing: &str, error: impl fmt::Display) -> Error {
    Error::new(Code::Unavailable, format!("rabbitmq: {doing}: {error}")).with_id("rmicro.broker.rabbitmq")
}

pub(crate) fn headers_of(metadata: &Metadata) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in metadata.iter() {
        table.insert(ShortString::from(key), AMQPValue::LongString(LongString::from(value.to_owned())));
    }
    table
}

pub(crate) fn metadata_of(table: Option<&FieldTable>) -> Metadata {
    let Some(table) = table else { return Metadata::new() };
    table
        .inner()
        .iter()
        .filter_map(|(key, value)| match value {
            AMQPValue::LongString(text) => {
                Some((key.as_str().to_owned(), String::from_utf8_lossy(text.as_bytes()).into_owned()))
            }
            AMQPValue::ShortString(text) => Some((key.as_str().to_owned(), text.as_str().to_owned())),
            _ => None,
        })
        .collect()
}

/// Waits for `operation` at most `timeout`; an error or no answer is `Unavailable`.
pub(crate) async fn answered<T>(
    timeout: Duration,
    doing: &str,
    operation: impl Future<Output = lapin::Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, operation).await {
        Ok(answer) => answer.map_err(|e| amqp_error(doing, e)),
        Err(_) => Err(amqp_error(doing, format!("no answer within {timeout:?}"))),
    }
}

/// Opens a connection and a channel on which the exchange exists.
pub(crate) async fn open(config: &RabbitConfig) -> Result<(Connection, Channel)> {
    let wait = config.answer_timeout;
    let connection =
        answered(wait, "connecting", Connection::connect(&config.url, ConnectionProperties::default())).await?;
    let channel = answered(wait, "opening a channel", connection.create_channel()).await?;
    answered(
        wait,
        "declaring the exchange",
        channel.exchange_declare(
            ShortString::from(config.exchange.as_str()),
            ExchangeKind::Topic,
            ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() },
            FieldTable::default(),
        ),
    )
    .await?;
    Ok((connection, channel))
}

/// The RabbitMQ broker.
#[derive(Clone)]
pub struct RabbitBroker {
    config: RabbitConfig,
    publisher: Arc<Mutex<Option<(Connection, Channel)>>>,
}

impl fmt::Debug for RabbitBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitBroker").field("config", &self.config).finish_non_exhaustive()
    }
}

impl RabbitBroker {
    /// A broker for `config`; connections are made on first use.
    pub fn new(config: RabbitConfig) -> RabbitBroker {
        RabbitBroker { config, publisher: Arc::default() }
    }

    /// The publishing channel (in confirm mode), connecting if there is none or it broke.
    async fn publishing_channel(&self) -> Result<Channel> {
        let mut publisher = self.publisher.lock().await;
        if let Some((connection, channel)) = publisher.as_ref() {
            if connection.status().connected() && channel.status().connected() {
                return Ok(channel.clone());
            }
        }
        let (connection, channel) = open(&self.config).await?;
        answered(
            self.config.answer_timeout,
            "enabling publisher confirms",
            channel.confirm_select(ConfirmSelectOptions::default()),
        )
        .await?;
        *publisher = Some((connection, channel.clone()));
        Ok(channel)
    }
}

#[async_trait]
impl Broker for RabbitBroker {
    fn name(&self) -> &'static str {
        "rabbitmq"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new(true, true, true)
    }

    async fn connect(&self) -> Result<()> {
        self.publishing_channel().await.map(|_| ())
    }

    async fn disconnect(&self) -> Result<()> {
        if let Some((connection, _)) = self.publisher.lock().await.take() {
            let _ =
                answered(self.config.answer_timeout, "closing", connection.close(200, ShortString::from("bye"))).await;
        }
        Ok(())
    }

    async fn publish(&self, topic: &str, message: Message) -> Result<()> {
        let channel = self.publishing_channel().await?;
        let properties = BasicProperties::default().with_headers(headers_of(&message.headers)).with_delivery_mode(2);
        let confirmation = answered(self.config.answer_timeout, "publishing (not confirmed)", async {
            channel
                .basic_publish(
                    ShortString::from(self.config.exchange.as_str()),
                    ShortString::from(topic),
                    BasicPublishOptions::default(),
                    &message.body,
                    properties,
                )
                .await?
                .await
        })
        .await;
        match confirmation {
            Ok(Confirmation::Ack(_)) | Ok(Confirmation::NotRequested) => Ok(()),
            Ok(Confirmation::Nack(_)) => Err(amqp_error("publishing", "the broker nacked the message")),
            Err(e) => {
                self.publisher.lock().await.take();
                Err(e)
            }
        }
    }

    async fn subscribe(
        &self,
        topic: &str,
        handler: Arc<dyn Handler>,
        options: SubscribeOptions,
    ) -> Result<Box<dyn Subscription>> {
        subscription::start(self.config.clone(), topic, handler, options).await
    }
}
