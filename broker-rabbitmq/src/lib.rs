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
//! let config = RabbitConfig::default().with_address("amqp://guest:guest@127.0.0.1:5672/%2f").with_exchange("billing");
//! let broker = Arc::new(RabbitBroker::connect(config).await?);
//! let service = Service::builder("billing").broker(broker).build();
//! # Ok(()) }
//! ```
//!
//! # Configuration
//!
//! [`RabbitConfig`], in code or from settings ([`RabbitConfig::from_env`]); through the
//! `rmicro` facade, `MICRO_BROKER=rabbitmq` with:
//!
//! | Setter | Environment | Default | |
//! |---|---|---|---|
//! | [`with_address`](RabbitConfig::with_address) | `MICRO_BROKER_ADDRESS` | `amqp://guest:guest@127.0.0.1:5672/%2f` | AMQP URL with credentials and vhost; `amqps://` for TLS |
//! | [`with_exchange`](RabbitConfig::with_exchange) | `MICRO_BROKER_EXCHANGE` | `micro` | the durable topic exchange |
//! | [`with_prefetch`](RabbitConfig::with_prefetch) | `MICRO_BROKER_PREFETCH` | 16 | unacked deliveries per subscription (QoS) |
//! | [`with_group_idle`](RabbitConfig::with_group_idle) | `MICRO_BROKER_GROUP_IDLE` | kept | how long an unused group queue is kept |
//! | [`with_answer_timeout`](RabbitConfig::with_answer_timeout) | `MICRO_BROKER_ANSWER_TIMEOUT` | `10s` | how long one exchange with RabbitMQ may take |
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

mod config;
mod subscription;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lapin::Confirmation;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use rmicro_core::broker::{Broker, Capabilities, DeliveryHandler, Envelope, SubscribeOptions, Subscription};
use rmicro_core::metadata::Metadata;
use rmicro_core::raw::plugin::{Build, Plugin, Setting};
use rmicro_core::{Code, Error, Result};
use tokio::sync::Mutex;

pub use config::RabbitConfig;

/// The RabbitMQ broker as the `rmicro` facade knows it (`MICRO_BROKER=rabbitmq`), built from
/// [`RabbitConfig::from_settings`].
pub static PLUGIN: Plugin = Plugin {
    names: &["rabbitmq"],
    about: "RabbitMQ (AMQP 0.9.1): topic exchange, durable group queues, publisher confirms",
    default_address: config::DEFAULT_ADDRESS,
    settings: &[&[
        Setting::new("exchange", "the durable topic exchange (default micro)"),
        Setting::new("prefetch", "unacked deliveries a subscription may hold (default 16)"),
        Setting::new("group_idle", "how long a queue group's queue outlives its last member (default: until deleted)"),
        Setting::new("answer_timeout", "how long one exchange with RabbitMQ may take (default 10s)"),
    ]],
    build: Build::Broker(|settings, _registry| {
        Box::pin(async move {
            Ok(Arc::new(RabbitBroker::connect(RabbitConfig::from_settings(&settings)?).await?) as Arc<dyn Broker>)
        })
    }),
};

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
        answered(wait, "connecting", Connection::connect(&config.address, ConnectionProperties::default())).await?;
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

/// The RabbitMQ broker; see the [crate] docs.
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
    /// A broker for `config`. It does not dial yet: the publishing connection is made by
    /// [`Broker::connect`] or the first publish, each subscription's when it subscribes, and
    /// each is made again when it drops.
    pub async fn connect(config: RabbitConfig) -> Result<RabbitBroker> {
        Ok(RabbitBroker { config, publisher: Arc::default() })
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

    async fn publish(&self, topic: &str, message: Envelope) -> Result<()> {
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
        handler: Arc<dyn DeliveryHandler>,
        options: SubscribeOptions,
    ) -> Result<Box<dyn Subscription>> {
        subscription::start(self.config.clone(), topic, handler, options).await
    }
}
