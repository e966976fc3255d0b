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
//! let broker = Arc::new(KafkaBroker::new(KafkaConfig::new("127.0.0.1:9092"))?);
//! let service = Service::builder("billing").broker(broker).build();
//! # Ok(()) }
//! ```
//!
//! # Configuration
//!
//! [`KafkaConfig`]: bootstrap servers, partitions of topics it creates, and any librdkafka
//! property ([`KafkaConfig::property`]), which is how SASL and TLS are set
//! (`security.protocol`, `sasl.mechanisms`, `sasl.username`, `ssl.ca.location`, ...). Through the
//! `rmicro` facade: `MICRO_BROKER=kafka MICRO_BROKER_ADDRESS=127.0.0.1:9092`.
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

mod subscription;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rmicro_core::broker::{Broker, Capabilities, Handler, Message, SubscribeOptions, Subscription};
use rmicro_core::{Code, Error, Result};
use serde::{Deserialize, Serialize};

/// The header whose value becomes the record key.
pub const PARTITION_KEY: &str = "partition-key";

/// How to reach Kafka.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated.
    pub brokers: String,
    /// Partitions of topics this broker creates.
    pub partitions: i32,
    /// Extra librdkafka properties (SASL, TLS, tuning), applied to producer and consumers.
    pub properties: BTreeMap<String, String>,
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| {
                (k.as_str(), if k.contains("password") || k.contains("secret") { "<redacted>" } else { v.as_str() })
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("partitions", &self.partitions)
            .field("properties", &shown)
            .finish()
    }
}

impl KafkaConfig {
    /// Kafka at `brokers`; topics it creates get one partition.
    pub fn new(brokers: impl Into<String>) -> KafkaConfig {
        KafkaConfig { brokers: brokers.into(), partitions: 1, properties: BTreeMap::new() }
    }

    /// Sets a librdkafka property (e.g. `security.protocol=SASL_SSL`).
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> KafkaConfig {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// Partitions of the topics this broker creates.
    pub fn partitions(mut self, partitions: i32) -> KafkaConfig {
        self.partitions = partitions.max(1);
        self
    }

    pub(crate) fn client(&self) -> ClientConfig {
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", &self.brokers);
        for (key, value) in &self.properties {
            client.set(key, value);
        }
        client
    }
}

pub(crate) fn kafka_error(doing: &str, error: impl fmt::Display) -> Error {
    Error::new(Code::Unavailable, format!("kafka: {doing}: {error}")).with_id("rmicro.broker.kafka")
}

/// The Kafka broker.
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
    /// A broker for `config` (librdkafka connects in the background).
    pub fn new(config: KafkaConfig) -> Result<KafkaBroker> {
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

    async fn publish(&self, topic: &str, message: Message) -> Result<()> {
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
        handler: Arc<dyn Handler>,
        options: SubscribeOptions,
    ) -> Result<Box<dyn Subscription>> {
        self.ensure_topic(topic).await?;
        subscription::start(&self.config, topic, handler, options).await
    }
}
