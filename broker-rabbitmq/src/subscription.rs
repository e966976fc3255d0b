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
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, Connection, Consumer};
use rmicro_core::Result;
use rmicro_core::broker::{AckMode, Acknowledger, Delivery, DeliveryHandler, Envelope, SubscribeOptions, Subscription};
use rmicro_core::raw::{WorkerSubscription, handle_safely};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::{RabbitConfig, amqp_error, answered, metadata_of, open};

const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// How often a consuming subscription looks at its connection's state: the consumer's stream is
/// not trusted alone to end when the connection drops.
const LIVENESS_CHECK: Duration = Duration::from_secs(1);

/// What one subscription consumes from.
#[derive(Clone)]
struct Binding {
    config: RabbitConfig,
    topic: String,
    queue: Option<String>,
}

impl Binding {
    /// The queue to declare: a group's durable queue, kept while unused for `group_idle` when
    /// set, or an exclusive queue of the subscription's own that the broker names.
    fn queue(&self) -> (String, QueueDeclareOptions, FieldTable) {
        let Some(group) = &self.queue else {
            let options = QueueDeclareOptions { exclusive: true, auto_delete: true, ..QueueDeclareOptions::default() };
            return (String::new(), options, FieldTable::default());
        };
        let mut arguments = FieldTable::default();
        if let Some(idle) = self.config.group_idle {
            let millis = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX).max(1);
            arguments.insert(ShortString::from("x-expires"), AMQPValue::LongLongInt(millis));
        }
        let options = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
        (format!("{group}.{}", self.topic), options, arguments)
    }

    /// Connects, declares the queue, binds it and starts consuming.
    async fn consume(&self) -> Result<(Connection, Channel, Consumer)> {
        let (connection, channel) = open(&self.config).await?;
        let wait = self.config.answer_timeout;
        answered(wait, "setting prefetch", channel.basic_qos(self.config.prefetch, BasicQosOptions::default())).await?;
        let (name, options, arguments) = self.queue();
        let queue =
            answered(wait, "declaring a queue", channel.queue_declare(ShortString::from(name), options, arguments))
                .await?;
        let queue_name = queue.name().clone();
        answered(
            wait,
            "binding a queue",
            channel.queue_bind(
                queue_name.clone(),
                ShortString::from(self.config.exchange.as_str()),
                ShortString::from(self.topic.as_str()),
                QueueBindOptions::default(),
                FieldTable::default(),
            ),
        )
        .await?;
        let consumer = answered(
            wait,
            "consuming",
            channel.basic_consume(
                queue_name,
                ShortString::from(""),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            ),
        )
        .await?;
        Ok((connection, channel, consumer))
    }
}

pub(crate) async fn start(
    config: RabbitConfig,
    topic: &str,
    handler: Arc<dyn DeliveryHandler>,
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
    handler: Arc<dyn DeliveryHandler>,
    ack: AckMode,
    stop: CancellationToken,
) {
    let wait = binding.config.answer_timeout;
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
        let mut liveness = tokio::time::interval(LIVENESS_CHECK);
        liveness.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let next = tokio::select! {
                biased;
                _ = stop.cancelled() => {
                    let _ = answered(wait, "cancelling", channel.basic_cancel(consumer.tag(), BasicCancelOptions::default())).await;
                    let _ = answered(wait, "closing", connection.close(200, ShortString::from("unsubscribed"))).await;
                    return;
                }
                next = consumer.next() => next,
                _ = liveness.tick() => {
                    if connection.status().connected() && channel.status().connected() {
                        continue;
                    }
                    tracing::warn!(topic = %binding.topic, "the RabbitMQ connection is down; reconnecting");
                    break;
                }
            };
            let delivery = match next {
                Some(Ok(delivery)) => delivery,
                Some(Err(e)) => {
                    tracing::warn!(topic = %binding.topic, error = %e, "lost the RabbitMQ connection; reconnecting");
                    break;
                }
                None => break,
            };
            let message = Envelope {
                headers: metadata_of(delivery.properties.headers().as_ref()),
                body: delivery.data.clone().into(),
            };
            let attempt = if delivery.redelivered { 2 } else { 1 };
            let acker = Arc::new(delivery.acker);
            let manual = (ack == AckMode::Manual)
                .then(|| Box::new(RabbitAcker { acker: Some(acker.clone()), wait }) as Box<dyn Acknowledger>);
            let outcome = handle_safely(&*handler, Delivery::new(&binding.topic, message, attempt, manual)).await;
            if ack == AckMode::Auto {
                let settled = match &outcome {
                    Ok(()) => settle(wait, "acking", acker.ack(BasicAckOptions::default())).await,
                    Err(_) => settle(wait, "nacking", acker.nack(requeue())).await,
                };
                if let Err(e) = settled {
                    tracing::warn!(topic = %binding.topic, error = %e, "settling a delivery failed; RabbitMQ will deliver it again");
                    break;
                }
            }
            if let Err(e) = outcome {
                tracing::warn!(topic = %binding.topic, error = %e, "handler failed; the message is requeued");
            }
        }
    }
}

/// Sends an ack or a nack. lapin answers `false` when the delivery's channel has already failed:
/// the message was not settled, and RabbitMQ will deliver it again.
async fn settle(wait: Duration, doing: &str, sent: impl Future<Output = lapin::Result<bool>>) -> Result<()> {
    match answered(wait, doing, sent).await? {
        true => Ok(()),
        false => Err(amqp_error(doing, "the delivery's channel is closed; RabbitMQ will deliver the message again")),
    }
}

/// A nack that puts the message back in its queue.
fn requeue() -> BasicNackOptions {
    BasicNackOptions { requeue: true, ..BasicNackOptions::default() }
}

/// Settles a delivery by hand; dropped unsettled, it requeues the message.
struct RabbitAcker {
    acker: Option<Arc<lapin::Acker>>,
    wait: Duration,
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
            Some(acker) => settle(self.wait, "acking", acker.ack(BasicAckOptions::default())).await,
            None => Ok(()),
        }
    }

    async fn nack(&mut self) -> Result<()> {
        match self.acker.take() {
            Some(acker) => settle(self.wait, "nacking", acker.nack(requeue())).await,
            None => Ok(()),
        }
    }
}

impl Drop for RabbitAcker {
    fn drop(&mut self) {
        if let Some(acker) = self.acker.take() {
            let wait = self.wait;
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = answered(wait, "nacking", acker.nack(requeue())).await;
                });
            }
        }
    }
}
