//! A subscription: a consumer, handled one message at a time, committing each offset only after
//! the message was handled, and reading a message again after a failure.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use rmicro_core::Result;
use rmicro_core::broker::{AckMode, Delivery, DeliveryHandler, Envelope, SubscribeOptions, Subscription};
use rmicro_core::metadata::Metadata;
use rmicro_core::raw::{WorkerSubscription, handle_safely, settle_channel};
use tokio_util::sync::CancellationToken;

use crate::{KafkaConfig, kafka_error};

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// A consumer in `group`; the configured properties win over these defaults, except the
/// group and the manual commits at-least-once delivery depends on.
fn consumer(config: &KafkaConfig, group: &str, reset: &str) -> Result<StreamConsumer> {
    let mut client = rdkafka::ClientConfig::new();
    client.set("session.timeout.ms", "10000").set("auto.offset.reset", reset).set("bootstrap.servers", &config.address);
    for (key, value) in &config.properties {
        client.set(key, value);
    }
    client
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()
        .map_err(|e| kafka_error("creating a consumer", e))
}

pub(crate) async fn start(
    config: &KafkaConfig,
    topic: &str,
    handler: Arc<dyn DeliveryHandler>,
    options: SubscribeOptions,
) -> Result<Box<dyn Subscription>> {
    let consumer = match &options.queue {
        Some(group) => {
            let consumer = consumer(config, group, "earliest")?;
            consumer.subscribe(&[topic]).map_err(|e| kafka_error("subscribing", e))?;
            consumer
        }
        None => {
            let consumer = consumer(config, &format!("rmicro-{}", uuid::Uuid::new_v4().simple()), "latest")?;
            let metadata = consumer
                .fetch_metadata(Some(topic), METADATA_TIMEOUT)
                .map_err(|e| kafka_error("reading topic metadata", e))?;
            let mut assignment = TopicPartitionList::new();
            for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
                let (_, high) = consumer
                    .fetch_watermarks(topic, partition.id(), METADATA_TIMEOUT)
                    .map_err(|e| kafka_error("reading the topic's end", e))?;
                assignment
                    .add_partition_offset(topic, partition.id(), Offset::Offset(high))
                    .map_err(|e| kafka_error("assigning", e))?;
            }
            consumer.assign(&assignment).map_err(|e| kafka_error("assigning partitions", e))?;
            consumer
        }
    };
    let stop = CancellationToken::new();
    let worker = tokio::spawn(run(consumer, topic.to_owned(), handler, options.ack, stop.clone()));
    Ok(Box::new(WorkerSubscription::new(topic, options.queue, stop, worker)))
}

fn headers_of(message: &BorrowedMessage<'_>) -> Metadata {
    let Some(headers) = message.headers() else { return Metadata::new() };
    headers.iter().filter_map(|h| Some((h.key.to_owned(), String::from_utf8_lossy(h.value?).into_owned()))).collect()
}

async fn run(
    consumer: StreamConsumer,
    topic: String,
    handler: Arc<dyn DeliveryHandler>,
    ack: AckMode,
    stop: CancellationToken,
) {
    let mut attempts: (i32, i64, u32) = (-1, -1, 0);
    loop {
        let received = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            received = consumer.recv() => received,
        };
        let message = match received {
            Ok(message) => message,
            Err(e) => {
                tracing::warn!(%topic, error = %e, "kafka consumer error; continuing");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let (partition, offset) = (message.partition(), message.offset());
        attempts = if (attempts.0, attempts.1) == (partition, offset) {
            (partition, offset, attempts.2 + 1)
        } else {
            (partition, offset, 1)
        };
        let delivered =
            Envelope { headers: headers_of(&message), body: message.payload().unwrap_or_default().to_vec().into() };
        let (acker, settled) = settle_channel();
        let manual = (ack == AckMode::Manual).then_some(acker);
        let outcome = handle_safely(&*handler, Delivery::new(&topic, delivered, attempts.2, manual)).await;
        let handled = match ack {
            AckMode::Auto => outcome.is_ok(),
            AckMode::Manual => matches!(settled.await, Ok(true)),
        };
        if handled {
            if let Err(e) = consumer.commit_message(&message, CommitMode::Async) {
                tracing::warn!(%topic, error = %e, "committing an offset failed; the message may come again");
            }
        } else {
            tracing::warn!(%topic, partition, offset, attempt = attempts.2, "message not handled; reading it again");
            if let Err(e) = consumer.seek(&topic, partition, Offset::Offset(offset), Duration::from_secs(5)) {
                tracing::warn!(%topic, error = %e, "seeking back failed");
            }
        }
    }
}
