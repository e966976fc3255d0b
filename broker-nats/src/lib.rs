//! rmicro's NATS broker: core NATS pub/sub, or JetStream for durable, acknowledged delivery.
//!
//! - Core NATS: a topic is a subject; queue groups are NATS queue groups (each message to one
//!   member); no acknowledgements, no redelivery, nothing kept for absent subscribers — declared
//!   in the capabilities.
//! - JetStream ([`NatsConfig::with_jetstream`]): topics are published to `<prefix><topic>` in one
//!   stream, and `publish` returns once the stream has stored the message. A queue group is a
//!   durable pull consumer (each message to one member; messages published while every member
//!   is away wait for the group), a subscription without a group an ephemeral consumer.
//!   Deliveries are acked explicitly: after the handler returns `Ok` (auto) or when it calls
//!   `ack`; a failed handler or `nack` gets the message again at once, and one that neither acks
//!   nor nacks gets it again after the ack wait.
//!
//! # Example
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use rmicro_core::prelude::*;
//! use rmicro_broker_nats::{JetStreamConfig, NatsBroker, NatsConfig};
//!
//! # async fn demo() -> Result<(), Error> {
//! let config = NatsConfig::default().with_address("nats://127.0.0.1:4222").with_jetstream(JetStreamConfig::default());
//! let broker = Arc::new(NatsBroker::connect(config).await?);
//! let service = Service::builder("billing").broker(broker).build();
//! # Ok(()) }
//! ```
//!
//! # Configuration
//!
//! [`NatsConfig`] (URL(s), user/password or token, JetStream) and [`JetStreamConfig`] (stream
//! name, subject prefix, ack wait, retention, idle durable lifetime), in code or from settings
//! ([`NatsConfig::from_env`]); through the `rmicro` facade, `MICRO_BROKER=nats` (core) or
//! `MICRO_BROKER=jetstream` with:
//!
//! | Setter | Environment | Default | |
//! |---|---|---|---|
//! | [`with_address`](NatsConfig::with_address) | `MICRO_BROKER_ADDRESS` | `nats://127.0.0.1:4222` | server URL(s), comma-separated |
//! | [`with_credentials`](NatsConfig::with_credentials) | `MICRO_BROKER_USER`, `MICRO_BROKER_PASSWORD` | none | user and password |
//! | [`with_token`](NatsConfig::with_token) | `MICRO_BROKER_TOKEN` | none | token |
//! | [`with_jetstream`](NatsConfig::with_jetstream) | `MICRO_BROKER=jetstream` or `MICRO_BROKER_JETSTREAM=true` | core NATS | JetStream with the default stream |
//! | [`JetStreamConfig::with_ack_wait`] | `MICRO_BROKER_ACK_WAIT` | `30s` | redelivery after a handler that neither acked nor nacked |
//!
//! # Capabilities
//!
//! | | core | JetStream |
//! |---|---|---|
//! | queue groups | ✓ | ✓ |
//! | redelivery | — | ✓ |
//! | durable | — | ✓ |
//!
//! # Tests
//!
//! The core broker suite runs in both modes against the real `nats-server` (with JetStream)
//! at `MICRO_TEST_NATS_URL` (default `nats://127.0.0.1:4222`), which the project's test script
//! starts when none runs; `tests/durable.rs` stops a durable subscriber while 1,000 messages are
//! published.

mod config;
mod jetstream;

use std::sync::Arc;

use async_nats::HeaderMap;
use async_trait::async_trait;
use futures::StreamExt;
use rmicro_core::broker::{Broker, Capabilities, Delivery, DeliveryHandler, Envelope, SubscribeOptions, Subscription};
use rmicro_core::metadata::Metadata;
use rmicro_core::raw::plugin::{Build, Plugin, Setting};
use rmicro_core::raw::{WorkerSubscription, handle_safely};
use rmicro_core::{Code, Error, Result};
use tokio_util::sync::CancellationToken;

pub use config::{JetStreamConfig, NatsConfig};

/// The NATS broker as the `rmicro` facade knows it: `MICRO_BROKER=nats` for core NATS,
/// `MICRO_BROKER=jetstream` for JetStream, built from [`NatsConfig::from_settings`].
pub static PLUGIN: Plugin = Plugin {
    names: &["nats", "jetstream"],
    about: "NATS: core pub/sub with queue groups, or JetStream for durable, acknowledged delivery",
    default_address: config::DEFAULT_ADDRESS,
    settings: &[
        &[
            Setting::new("user", "user name, with password"),
            Setting::new("password", "password of user"),
            Setting::new("token", "authentication token"),
        ],
        &[
            Setting::new("jetstream", "true for JetStream under the name nats (default false)"),
            Setting::new(
                "ack_wait",
                "JetStream: redelivery after a handler that neither acked nor nacked (default 30s)",
            ),
        ],
    ],
    build: Build::Broker(|settings, _registry| {
        Box::pin(async move {
            Ok(Arc::new(NatsBroker::connect(NatsConfig::from_settings(&settings)?).await?) as Arc<dyn Broker>)
        })
    }),
};

/// The NATS broker; see the [crate] docs.
#[derive(Clone, Debug)]
pub struct NatsBroker {
    client: async_nats::Client,
    jetstream: Option<jetstream::Streams>,
}

pub(crate) fn nats_error(doing: &str, error: impl std::fmt::Display) -> Error {
    Error::new(Code::Unavailable, format!("nats: {doing}: {error}")).with_id("rmicro.broker.nats")
}

pub(crate) fn headers_of(metadata: &Metadata) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (key, value) in metadata.iter() {
        headers.insert(key, value);
    }
    headers
}

pub(crate) fn metadata_of(headers: Option<&HeaderMap>) -> Metadata {
    headers
        .map(|h| h.iter().filter_map(|(k, v)| Some((k.to_string(), v.first()?.to_string()))).collect())
        .unwrap_or_default()
}

impl NatsBroker {
    /// Connects to NATS (and, with JetStream, makes sure its stream exists).
    pub async fn connect(config: NatsConfig) -> Result<NatsBroker> {
        let client = config
            .connect_options()
            .connect(config.address.as_str())
            .await
            .map_err(|e| nats_error(&format!("connecting to {}", config.address), e))?;
        let jetstream = match &config.jetstream {
            Some(settings) => Some(jetstream::Streams::open(client.clone(), settings.clone()).await?),
            None => None,
        };
        Ok(NatsBroker { client, jetstream })
    }
}

#[async_trait]
impl Broker for NatsBroker {
    fn name(&self) -> &'static str {
        if self.jetstream.is_some() { "jetstream" } else { "nats" }
    }

    fn capabilities(&self) -> Capabilities {
        let durable = self.jetstream.is_some();
        Capabilities::new(true, durable, durable)
    }

    async fn connect(&self) -> Result<()> {
        Ok(())
    }

    async fn disconnect(&self) -> Result<()> {
        self.client.flush().await.map_err(|e| nats_error("flushing", e))
    }

    async fn publish(&self, topic: &str, message: Envelope) -> Result<()> {
        if let Some(streams) = &self.jetstream {
            return streams.publish(topic, message).await;
        }
        self.client
            .publish_with_headers(topic.to_owned(), headers_of(&message.headers), message.body)
            .await
            .map_err(|e| nats_error("publishing", e))?;
        self.client.flush().await.map_err(|e| nats_error("flushing a publish", e))
    }

    async fn subscribe(
        &self,
        topic: &str,
        handler: Arc<dyn DeliveryHandler>,
        options: SubscribeOptions,
    ) -> Result<Box<dyn Subscription>> {
        if let Some(streams) = &self.jetstream {
            return streams.subscribe(topic, handler, options).await;
        }
        let mut subscriber = match &options.queue {
            Some(queue) => self.client.queue_subscribe(topic.to_owned(), queue.clone()).await,
            None => self.client.subscribe(topic.to_owned()).await,
        }
        .map_err(|e| nats_error("subscribing", e))?;
        self.client.flush().await.map_err(|e| nats_error("flushing a subscription", e))?;
        let stop = CancellationToken::new();
        let (topic_name, stopped) = (topic.to_owned(), stop.clone());
        let worker = tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    biased;
                    _ = stopped.cancelled() => break,
                    next = subscriber.next() => next,
                };
                let Some(message) = next else { break };
                let delivered = Envelope { headers: metadata_of(message.headers.as_ref()), body: message.payload };
                if let Err(e) = handle_safely(&*handler, Delivery::new(&topic_name, delivered, 1, None)).await {
                    tracing::warn!(topic = %topic_name, error = %e, "handler failed; core NATS does not redeliver");
                }
            }
            let _ = subscriber.unsubscribe().await;
        });
        Ok(Box::new(WorkerSubscription::new(topic, options.queue, stop, worker)))
    }
}
