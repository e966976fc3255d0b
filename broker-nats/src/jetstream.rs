//! JetStream: one stream keeps every topic; queue groups are durable consumers.

use std::sync::Arc;

use async_nats::jetstream::{self, AckKind, consumer, stream};
use async_trait::async_trait;
use futures::StreamExt;
use rmicro_core::Result;
use rmicro_core::broker::{AckMode, Acknowledger, Delivery, DeliveryHandler, Envelope, SubscribeOptions, Subscription};
use rmicro_core::raw::{WorkerSubscription, handle_safely};
use tokio_util::sync::CancellationToken;

use crate::config::JetStreamConfig;
use crate::{headers_of, metadata_of, nats_error};

#[derive(Clone, Debug)]
pub(crate) struct Streams {
    context: jetstream::Context,
    stream: stream::Stream,
    settings: JetStreamConfig,
}

/// A consumer name for a queue group on a topic: NATS names cannot hold `.`, `*`, `>` or spaces.
fn durable_name(queue: &str, topic: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in topic.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let queue: String =
        queue.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    format!("{queue}-{hash:016x}")
}

impl Streams {
    pub(crate) async fn open(client: async_nats::Client, settings: JetStreamConfig) -> Result<Streams> {
        let context = jetstream::new(client);
        let stream = context
            .get_or_create_stream(stream::Config {
                name: settings.stream.clone(),
                subjects: vec![format!("{}>", settings.subject_prefix)],
                max_age: settings.max_age,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| nats_error(&format!("opening stream {}", settings.stream), e))?;
        Ok(Streams { context, stream, settings })
    }

    pub(crate) async fn publish(&self, topic: &str, message: Envelope) -> Result<()> {
        let subject = format!("{}{topic}", self.settings.subject_prefix);
        let ack = self
            .context
            .publish_with_headers(subject, headers_of(&message.headers), message.body)
            .await
            .map_err(|e| nats_error("publishing", e))?;
        ack.await.map(|_| ()).map_err(|e| nats_error("waiting for the stream to store a message", e))
    }

    pub(crate) async fn subscribe(
        &self,
        topic: &str,
        handler: Arc<dyn DeliveryHandler>,
        options: SubscribeOptions,
    ) -> Result<Box<dyn Subscription>> {
        let durable = options.queue.as_deref().map(|q| durable_name(q, topic));
        let name = durable.clone().unwrap_or_else(|| format!("rmicro-{}", uuid::Uuid::new_v4().simple()));
        let config = consumer::pull::Config {
            durable_name: durable.clone(),
            name: Some(name.clone()),
            filter_subject: format!("{}{topic}", self.settings.subject_prefix),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: self.settings.ack_wait,
            deliver_policy: consumer::DeliverPolicy::New,
            inactive_threshold: if durable.is_some() {
                self.settings.durable_idle
            } else {
                std::time::Duration::from_secs(30)
            },
            ..Default::default()
        };
        let consumer: consumer::PullConsumer = self
            .stream
            .get_or_create_consumer(&name, config)
            .await
            .map_err(|e| nats_error(&format!("creating consumer {name}"), e))?;
        let mut messages = consumer.messages().await.map_err(|e| nats_error("reading a consumer", e))?;
        let stop = CancellationToken::new();
        let (topic_name, stopped, ack_mode) = (topic.to_owned(), stop.clone(), options.ack);
        let (stream, ephemeral) = (self.stream.clone(), durable.is_none().then_some(name));
        let worker = tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    biased;
                    _ = stopped.cancelled() => break,
                    next = messages.next() => next,
                };
                let message = match next {
                    Some(Ok(message)) => message,
                    Some(Err(e)) => {
                        tracing::warn!(topic = %topic_name, error = %e, "JetStream consumer error; continuing");
                        continue;
                    }
                    None => break,
                };
                let attempt = message.info().map(|i| u32::try_from(i.delivered).unwrap_or(u32::MAX)).unwrap_or(1);
                let delivered =
                    Envelope { headers: metadata_of(message.headers.as_ref()), body: message.payload.clone() };
                let (message, acker) = message.split();
                drop(message);
                let acker = Arc::new(acker);
                let manual = (ack_mode == AckMode::Manual)
                    .then(|| Box::new(JetStreamAcker { acker: Some(acker.clone()) }) as Box<dyn Acknowledger>);
                let outcome = handle_safely(&*handler, Delivery::new(&topic_name, delivered, attempt, manual)).await;
                if ack_mode == AckMode::Auto {
                    let settled = match &outcome {
                        Ok(()) => acker.ack().await,
                        Err(_) => acker.ack_with(AckKind::Nak(None)).await,
                    };
                    if let Err(e) = settled {
                        tracing::warn!(topic = %topic_name, error = %e, "acknowledging failed; the message will come again");
                    }
                }
                if let Err(e) = outcome {
                    tracing::warn!(topic = %topic_name, attempt, error = %e, "handler failed; JetStream will redeliver");
                }
            }
            if let Some(name) = ephemeral {
                let _ = stream.delete_consumer(&name).await;
            }
        });
        Ok(Box::new(WorkerSubscription::new(topic, options.queue, stop, worker)))
    }
}

/// Settles one JetStream delivery; if dropped unsettled, asks for redelivery at once.
struct JetStreamAcker {
    acker: Option<Arc<jetstream::message::Acker>>,
}

impl std::fmt::Debug for JetStreamAcker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamAcker").field("settled", &self.acker.is_none()).finish()
    }
}

#[async_trait]
impl Acknowledger for JetStreamAcker {
    async fn ack(&mut self) -> Result<()> {
        match self.acker.take() {
            Some(acker) => acker.ack().await.map_err(|e| nats_error("acking", e)),
            None => Ok(()),
        }
    }

    async fn nack(&mut self) -> Result<()> {
        match self.acker.take() {
            Some(acker) => acker.ack_with(AckKind::Nak(None)).await.map_err(|e| nats_error("nacking", e)),
            None => Ok(()),
        }
    }
}

impl Drop for JetStreamAcker {
    fn drop(&mut self) {
        if let Some(acker) = self.acker.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = acker.ack_with(AckKind::Nak(None)).await;
                });
            }
        }
    }
}
