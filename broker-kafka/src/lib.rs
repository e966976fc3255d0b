//! rmicro's Kafka broker, through rdkafka (librdkafka, built from source by the crate).
//!
//! - A topic is a Kafka topic, created on first use when missing (brokers such as tansu do not
//!   create topics by themselves).
//! - A queue group is a consumer group: the group's members share the topic's partitions, and
//!   every group gets every message. A new group starts from the oldest message Kafka keeps. A
//!   subscription without a group reads every partition from its end, as of subscribing.
//! - Headers travel as Kafka record headers; the `partition-key` header, when set, is the record
//!   key, so messages with the same key keep their order.
//! - The producer waits for all in-sync replicas (`acks=all`) with idempotence on, so `publish`
//!   returns once Kafka stored the message.
//! - At least once: a message's offset is committed only after the handler returns `Ok` (or
//!   acks). A failed handler, or a nack, reads it again; a subscriber that dies before
//!   committing leaves the message to the group's next member.
//!
//! # Example
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use rmicro_core::prelude::*;
//! use rmicro_broker_kafka::{KafkaBroker, KafkaConfig};
//!
//! # async fn demo() -> Result<(), Error> {
//! let config = KafkaConfig::default().with_address("127.0.0.1:9092").with_partitions(3);
//! let broker = Arc::new(KafkaBroker::connect(config).await?);
//! let service = Service::builder("billing").broker(broker).build();
//! # Ok(()) }
//! ```
//!
//! # Configuration
//!
//! [`KafkaConfig`], in code or from settings ([`KafkaConfig::from_env`]): bootstrap servers,
//! partitions of topics it creates, and any librdkafka property, which is how SASL and TLS are
//! set (`security.protocol`, `sasl.mechanisms`, `sasl.username`, `ssl.ca.location`, ...).
//! Through the `rmicro` facade, `MICRO_BROKER=kafka` with:
//!
//! | Setter | Environment | Default | |
//! |---|---|---|---|
//! | [`with_address`](KafkaConfig::with_address) | `MICRO_BROKER_ADDRESS` | `127.0.0.1:9092` | bootstrap servers, comma-separated |
//! | [`with_partitions`](KafkaConfig::with_partitions) | `MICRO_BROKER_PARTITIONS` | 1 | partitions of the topics it creates |
//! | [`with_property`](KafkaConfig::with_property) | `MICRO_BROKER_PROPERTIES` | none | librdkafka properties, `key=value,key=value` |
//!
//! # Capabilities
//!
//! - [x] queue groups (consumer groups), every group gets every message
//! - [x] redelivery of failed or nacked messages; offsets committed after handling
//! - [x] durable: Kafka keeps messages for groups that are away
//!
//! # Tests
//!
//! The core broker suite runs against a Kafka-protocol broker at `MICRO_TEST_KAFKA_BROKERS`
//! (default `127.0.0.1:9092`): here tansu (`cargo install tansu`), which the project's test
//! script builds once and starts; Python `confluent-kafka` reads what rmicro writes and writes
//! what rmicro reads; a subscriber killed mid-stream of 1,000 messages loses none.

mod config;
mod subscription;

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rmicro_core::broker::{Broker, Capabilities, DeliveryHandler, Envelope, SubscribeOptions, Subscription};
use rmicro_core::raw::plugin::{Build, Plugin, Setting};
use rmicro_core::{Code, Error, Result};

pub use config::KafkaConfig;

/// The header whose value becomes the record key.
pub const PARTITION_KEY: &str = "partition-key";

/// The Kafka broker as the `rmicro` facade knows it (`MICRO_BROKER=kafka`), built from
/// [`KafkaConfig::from_settings`].
pub static PLUGIN: Plugin = Plugin {
    names: &["kafka"],
    about: "Kafka (librdkafka): consumer groups, offsets committed after handling, acks=all producer",
    default_address: config::DEFAULT_ADDRESS,
    settings: &[&[
        Setting::new("partitions", "partitions of the topics it creates (default 1)"),
        Setting::new("properties", "librdkafka properties, key=value separated by commas (SASL, TLS, tuning)"),
    ]],
    build: Build::Broker(|settings, _registry| {
        Box::pin(async move {
            Ok(Arc::new(KafkaBroker::connect(KafkaConfig::from_settings(&settings)?).await?) as Arc<dyn Broker>)
        })
    }),
};

pub(crate) fn kafka_error(doing: &str, error: impl fmt::Display) -> Error {
    Error::new(Code::Unavailable, format!("kafka: {doing}: {error}")).with_id("rmicro.broker.kafka")
}

/// The Kafka broker; see the [crate] docs.
#[derive(Clone)]
pub struct KafkaBroker {
    config: KafkaConfig,
    producer: FutureProducer,
    admin: Arc<AdminClient<DefaultClientContext>>,
    topics: Arc<Mutex<HashSet<String>>>,
}

impl fmt::Debug for KafkaBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaBroker").field("config", &self.config).finish_non_exhaustive()
    }
}

impl KafkaBroker {
    /// A broker for `config`: its producer and admin client, which librdkafka connects in the
    /// background.
    pub async fn connect(config: KafkaConfig) -> Result<KafkaBroker> {
        let producer: FutureProducer = config
            .client()
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "30000")
            .create()
            .map_err(|e| kafka_error("creating the producer", e))?;
        let admin = config.client().create().map_err(|e| kafka_error("creating the admin client", e))?;
        Ok(KafkaBroker { config, producer, admin: Arc::new(admin), topics: Arc::default() })
    }

    /// Creates `topic` unless this broker knows it exists.
    pub(crate) async fn ensure_topic(&self, topic: &str) -> Result<()> {
        if self.topics.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).contains(topic) {
            return Ok(());
        }
        let new = NewTopic::new(topic, self.config.partitions, TopicReplication::Fixed(1));
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results =
            self.admin.create_topics([&new], &options).await.map_err(|e| kafka_error("creating a topic", e))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => return Err(kafka_error(&format!("creating topic {name}"), code)),
            }
        }
        self.topics.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(topic.to_owned());
        Ok(())
    }
}

#[async_trait]
impl Broker for KafkaBroker {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new(true, true, true)
    }

    async fn connect(&self) -> Result<()> {
        Ok(())
    }

    async fn disconnect(&self) -> Result<()> {
        Ok(())
    }

    async fn publish(&self, topic: &str, message: Envelope) -> Result<()> {
        self.ensure_topic(topic).await?;
        let mut headers = OwnedHeaders::new();
        for (key, value) in message.headers.iter() {
            headers = headers.insert(Header { key, value: Some(value) });
        }
        let key = message.headers.get(PARTITION_KEY).map(str::to_owned);
        let mut record = FutureRecord::to(topic).payload(message.body.as_ref()).headers(headers);
        if let Some(key) = &key {
            record = record.key(key.as_str());
        }
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(e, _)| kafka_error("publishing", e))
    }

    async fn subscribe(
        &self,
        topic: &str,
        handler: Arc<dyn DeliveryHandler>,
        options: SubscribeOptions,
    ) -> Result<Box<dyn Subscription>> {
        self.ensure_topic(topic).await?;
        subscription::start(&self.config, topic, handler, options).await
    }
}
