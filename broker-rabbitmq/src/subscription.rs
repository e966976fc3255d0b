//! A subscription: its own connection, queue and consumer, rebuilt whenever the connection
//! drops.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection, Consumer};
use rmicro_core::Result;
use rmicro_core::broker::{
    AckMode, Acknowledger, Delivery, Handler, Message, SubscribeOptions, Subscription, WorkerSubscription,
    handle_safely,
};
use tokio_util::sync::CancellationToken;

use crate::{RabbitConfig, amqp_error, metadata_of, open};

const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// What one subscription consumes from.
#[derive(Clone)]
struct Binding {
    config: RabbitConfig,
    topic: String,
    queue: Option<String>,
}

impl Binding {
    /// Connects, declares the queue, binds it and starts consuming.
    async fn consume(&self) -> Result<(Connection, Channel, Consumer)> {
        let (connection, channel) = open(&self.config).await?;
        channel
            .basic_qos(self.config.prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| amqp_error("setting prefetch", e))?;
        let (name, options) = match &self.queue {
            Some(group) => (
                format!("{group}.{}", self.topic),
                QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() },
            ),
            None => (
                String::new(),
                QueueDeclareOptions { exclusive: true, auto_delete: true, ..QueueDeclareOptions::default() },
            ),
        };
        let queue = channel
            .queue_declare(ShortString::from(name), options, FieldTable::default())
            .await
            .map_err(|e| amqp_error("declaring a queue", e))?;
        let queue_name = queue.name().clone();
        channel
            .queue_bind(
                queue_name.clone(),
                ShortString::from(self.config.exchange.as_str()),
                ShortString::from(self.topic.as_str()),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| amqp_error("binding a queue", e))?;
        let consumer = channel
            .basic_consume(queue_name, ShortString::from(""), BasicConsumeOptions::default(), FieldTable::default())
            .await
            .map_err(|e| amqp_error("consuming", e))?;
        Ok((connection, channel, consumer))
    }
}

pub(crate) async fn start(
    config: RabbitConfig,
    topic: &str,
    handler: Arc<dyn Handler>,
    options: SubscribeOptions,
) -> Result<Box<dyn Subscription>> {
    let binding = Binding { config, topic: topic.to_owned(), queue: options.queue.clone() };
    let first = binding.consume().await?;
    let stop = CancellationToken::new();
    let worker = tokio::spawn(run(binding, first, handler, options.ack, stop.clone()));
    Ok(Box::new(WorkerSubscription::new(topic, options.queue, stop, worker)))
}

async fn run(
    binding: Binding,
    first: (Connection, Channel, Consumer),
    handler: Arc<dyn Handler>,
    ack: AckMode,
    stop: CancellationToken,
) {
    let mut current = Some(first);
    let mut backoff = RECONNECT_MIN;
    loop {
        let (connection, channel, mut consumer) = match current.take() {
            Some(consuming) => consuming,
            None => {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                match binding.consume().await {
                    Ok(consuming) => {
                        tracing::info!(topic = %binding.topic, "reconnected to RabbitMQ and declared the queue again");
                        backoff = RECONNECT_MIN;
                        consuming
                    }
                    Err(e) => {
                        tracing::warn!(topic = %binding.topic, error = %e, "reconnecting to RabbitMQ failed; retrying");
                        backoff = (backoff * 2).min(RECONNECT_MAX);
                        continue;
                    }
                }
            }
        };
        loop {
            let next = tokio::select! {
                biased;
                _ = stop.cancelled() => {
                    let _ = channel.basic_cancel(consumer.tag(), BasicCancelOptions::default()).await;
                    let _ = connection.close(200, ShortString::from("unsubscribed")).await;
                    return;
                }
                next = consumer.next() => next,
            };
            let delivery = match next {
                Some(Ok(delivery)) => delivery,
                Some(Err(e)) => {
                    tracing::warn!(topic = %binding.topic, error = %e, "lost the RabbitMQ connection; reconnecting");
                    break;
                }
                None => break,
            };
            let message = Message {
                headers: metadata_of(delivery.properties.headers().as_ref()),
                body: delivery.data.clone().into(),
            };
            let attempt = if delivery.redelivered { 2 } else { 1 };
            let acker = Arc::new(delivery.acker);
            let manual = (ack == AckMode::Manual)
                .then(|| Box::new(RabbitAcker { acker: Some(acker.clone()) }) as Box<dyn Acknowledger>);
            let outcome = handle_safely(&*handler, Delivery::new(&binding.topic, message, attempt, manual)).await;
            if ack == AckMode::Auto {
                let settled = match &outcome {
                    Ok(()) => acker.ack(BasicAckOptions::default()).await,
                    Err(_) => acker.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await,
                };
                if let Err(e) = settled {
                    tracing::warn!(topic = %binding.topic, error = %e, "settling a delivery failed; RabbitMQ will deliver it again");
                }
            }
            if let Err(e) = outcome {
                tracing::warn!(topic = %binding.topic, error = %e, "handler failed; the message is requeued");
            }
        }
    }
}

/// Settles a delivery by hand; dropped unsettled, it requeues the message.
struct RabbitAcker {
    acker: Option<Arc<lapin::Acker>>,
}

impl std::fmt::Debug for RabbitAcker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitAcker").field("settled", &self.acker.is_none()).finish()
    }
}

#[async_trait]
impl Acknowledger for RabbitAcker {
    async fn ack(&mut self) -> Result<()> {
        match self.acker.take() {
            Some(acker) => acker.ack(BasicAckOptions::default()).await.map(|_| ()).map_err(|e| amqp_error("acking", e)),
            None => Ok(()),
        }
    }

    async fn nack(&mut self) -> Result<()> {
        match self.acker.take() {
            Some(acker) => acker
                .nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() })
                .await
                .map(|_| ())
                .map_err(|e| amqp_error("nacking", e)),
            None => Ok(()),
        }
    }
}

impl Drop for RabbitAcker {
    fn drop(&mut self) {
        if let Some(acker) = self.acker.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = acker.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await;
                });
            }
        }
    }
}
