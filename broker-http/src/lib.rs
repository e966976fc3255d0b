//! The embedded HTTP broker, go-micro's default: publish/subscribe with no broker server.
//!
//! Each subscription is an HTTP endpoint registered in the registry as a node of the service
//! `micro.http.broker`, labelled with its topic and queue group. Publishing looks the topic's
//! subscribers up in the registry and posts the message to every subscription without a group
//! and to one member of each group (another member if that one fails).
//!
//! There is no durability: a subscriber that is down when a message is published does not get
//! it, and the publisher learns of it — `publish` fails naming the subscribers it could not
//! reach. A handler that fails (or nacks) gets the message again on its own endpoint, up to
//! `redeliveries` times, after which the publisher's group delivery moves to another member.
//!
//! # Example
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use rmicro_core::prelude::*;
//! # use rmicro_core::registry::MemoryRegistry;
//! use rmicro_broker_http::{HttpBroker, HttpBrokerConfig};
//!
//! # async fn demo() -> Result<(), Error> {
//! let registry = Arc::new(MemoryRegistry::new());
//! let broker = HttpBroker::connect(HttpBrokerConfig::default().with_redeliveries(1), registry.clone()).await?;
//! let service = Service::builder("audit").registry(registry).broker(Arc::new(broker)).build();
//! # Ok(()) }
//! ```
//!
//! # Configuration
//!
//! [`HttpBrokerConfig`], in code or from settings ([`HttpBrokerConfig::from_env`]); through
//! the `rmicro` facade, `MICRO_BROKER=http` (the default) with:
//!
//! | Setter | Environment | Default | |
//! |---|---|---|---|
//! | [`with_address`](HttpBrokerConfig::with_address) | `MICRO_BROKER_ADDRESS` | `127.0.0.1:0` | where subscriber endpoints listen |
//! | [`with_redeliveries`](HttpBrokerConfig::with_redeliveries) | `MICRO_BROKER_REDELIVERIES` | 3 | local redeliveries after a failed or nacked handling |
//! | [`with_ttl`](HttpBrokerConfig::with_ttl) | `MICRO_BROKER_TTL` | `30s` | registration TTL of each subscription, renewed at a third of it |
//!
//! # Capabilities
//!
//! - [x] queue groups, every group gets every message
//! - [x] redelivery of failed or nacked messages (to the same subscriber, bounded)
//! - [x] headers
//! - [ ] durability: none; undeliverable messages are reported to the publisher
//!
//! # Tests
//!
//! `tests/conformance.rs` runs the core broker suite over real loopback HTTP with the in-memory
//! registry; no server is needed.

mod config;
mod endpoint;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::join_all;
use http::{HeaderName, HeaderValue, Request};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::seq::SliceRandom;
use rmicro_core::broker::{Broker, Capabilities, DeliveryHandler, Envelope, SubscribeOptions, Subscription};
use rmicro_core::raw::plugin::{Build, Plugin, Setting};
use rmicro_core::registry::{self, Node, Registry};
use rmicro_core::{Code, Error, Result};
use tokio::task::JoinHandle;

use endpoint::{Endpoint, HEADER_PREFIX, PATH, Subscriber, Subscribers, TOPIC};

pub use config::HttpBrokerConfig;

/// The registry service subscriptions register under.
pub const BROKER_SERVICE: &str = "micro.http.broker";

/// The HTTP broker as the `rmicro` facade knows it (`MICRO_BROKER=http`): built from
/// [`HttpBrokerConfig::from_settings`] with the deployment's registry.
pub static PLUGIN: Plugin = Plugin {
    names: &["http"],
    about: "embedded HTTP broker: no server, subscribers found through the registry, no durability",
    default_address: config::DEFAULT_ADDRESS,
    settings: &[&[
        Setting::new("redeliveries", "times a failed or nacked message is handed to the handler again (default 3)"),
        Setting::new("ttl", "registration TTL of each subscription, renewed at a third of it (default 30s)"),
    ]],
    build: Build::Broker(|settings, registry| {
        Box::pin(async move {
            let config = HttpBrokerConfig::from_settings(&settings)?;
            Ok(Arc::new(HttpBroker::connect(config, registry).await?) as Arc<dyn Broker>)
        })
    }),
};

/// The HTTP broker; see the [crate] docs.
#[derive(Clone, Debug)]
pub struct HttpBroker {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Arc<dyn Registry>,
    config: HttpBrokerConfig,
    endpoint: tokio::sync::Mutex<Option<Endpoint>>,
    subscribers: Subscribers,
    records: Mutex<HashMap<String, registry::ServiceRecord>>,
    renewer: Mutex<Option<JoinHandle<()>>>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpBroker")
            .field("registry", &self.registry.name())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(renewer) = lock(&self.renewer).take() {
            renewer.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl HttpBroker {
    /// A broker that registers its subscriptions in `registry` and finds the subscribers it
    /// publishes to there: the HTTP broker has no server, the registry is how its publishers and
    /// subscribers meet, so it must be the one the deployment's services share. Nothing listens
    /// until [`Broker::connect`] or the first subscription.
    pub async fn connect(config: HttpBrokerConfig, registry: Arc<dyn Registry>) -> Result<HttpBroker> {
        Ok(HttpBroker {
            inner: Arc::new(Inner {
                registry,
                config,
                endpoint: tokio::sync::Mutex::new(None),
                subscribers: Subscribers::default(),
                records: Mutex::default(),
                renewer: Mutex::default(),
                client: Client::builder(TokioExecutor::new()).build_http(),
            }),
        })
    }

    /// Starts the endpoint (once) and returns its address.
    async fn endpoint_address(&self) -> Result<String> {
        let mut endpoint = self.inner.endpoint.lock().await;
        if let Some(endpoint) = endpoint.as_ref() {
            return Ok(endpoint.address.clone());
        }
        let started =
            endpoint::serve(&self.inner.config.address, self.inner.subscribers.clone(), self.inner.config.redeliveries)
                .await?;
        let address = started.address.clone();
        *endpoint = Some(started);
        let renewer = tokio::spawn(renew(Arc::downgrade(&self.inner)));
        if let Some(old) = lock(&self.inner.renewer).replace(renewer) {
            old.abort();
        }
        Ok(address)
    }

    /// Posts `message` to one subscription; `Ok` once its handler acknowledged it.
    async fn post(&self, node: &Node, topic: &str, message: &Envelope) -> Result<()> {
        let mut request = Request::post(format!("http://{}{PATH}{}", node.address, node.id))
            .header(TOPIC, topic)
            .body(Full::new(message.body.clone()))
            .map_err(|e| Error::bad_request(format!("cannot post to {}: {e}", node.address)))?;
        for (key, value) in message.headers.iter() {
            let name = HeaderName::from_bytes(format!("{HEADER_PREFIX}{key}").as_bytes())
                .map_err(|_| Error::bad_request(format!("header {key:?} cannot travel over HTTP")))?;
            let value = HeaderValue::from_bytes(value.as_bytes())
                .map_err(|_| Error::bad_request(format!("header value of {key:?} cannot travel over HTTP")))?;
            request.headers_mut().insert(name, value);
        }
        let response = self
            .inner
            .client
            .request(request)
            .await
            .map_err(|e| Error::unavailable(format!("subscriber {} at {}: {e}", node.id, node.address)))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(Error::new(
                Code::from(response.status().as_u16()),
                format!("subscriber {} answered {}", node.id, response.status()),
            ))
        }
    }
}

/// Registers every subscription again at a third of its TTL.
async fn renew(inner: std::sync::Weak<Inner>) {
    loop {
        let Some(every) = inner.upgrade().map(|i| i.config.ttl / 3) else { return };
        tokio::time::sleep(every).await;
        let Some(inner) = inner.upgrade() else { return };
        let records: Vec<registry::ServiceRecord> = lock(&inner.records).values().cloned().collect();
        for record in records {
            if let Err(e) = inner.registry.register(&record, Some(inner.config.ttl)).await {
                tracing::warn!(error = %e, "renewing a subscription's registration failed");
            }
        }
    }
}

#[async_trait]
impl Broker for HttpBroker {
    fn name(&self) -> &'static str {
        "http"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new(true, true, false)
    }

    async fn connect(&self) -> Result<()> {
        self.endpoint_address().await.map(|_| ())
    }

    async fn disconnect(&self) -> Result<()> {
        let records: Vec<registry::ServiceRecord> = lock(&self.inner.records).drain().map(|(_, r)| r).collect();
        for record in &records {
            self.inner.registry.deregister(record).await?;
        }
        lock(&self.inner.subscribers).clear();
        if let Some(renewer) = lock(&self.inner.renewer).take() {
            renewer.abort();
        }
        self.inner.endpoint.lock().await.take();
        Ok(())
    }

    async fn publish(&self, topic: &str, message: Envelope) -> Result<()> {
        let services = match self.inner.registry.get_service(BROKER_SERVICE).await {
            Ok(services) => services,
            Err(e) if e.code == Code::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut groups: HashMap<String, Vec<Node>> = HashMap::new();
        for node in services.into_iter().flat_map(|s| s.nodes) {
            if node.metadata.get("topic").map(String::as_str) != Some(topic) {
                continue;
            }
            let group = node.metadata.get("queue").cloned().unwrap_or_else(|| format!("_sub-{}", node.id));
            groups.entry(group).or_default().push(node);
        }
        let total = groups.len();
        let deliveries = groups.into_iter().map(|(group, mut members)| {
            members.shuffle(&mut rand::thread_rng());
            let message = &message;
            async move {
                let mut last = None;
                for member in &members {
                    match self.post(member, topic, message).await {
                        Ok(()) => return Ok(()),
                        Err(e) => last = Some(e),
                    }
                }
                Err((group, last.unwrap_or_else(|| Error::unavailable("no member"))))
            }
        });
        let failures: Vec<(String, Error)> = join_all(deliveries).await.into_iter().filter_map(Result::err).collect();
        if failures.is_empty() {
            return Ok(());
        }
        let each: Vec<String> = failures.iter().map(|(group, e)| format!("{group}: {e}")).collect();
        Err(Error::unavailable(format!(
            "{topic}: delivered to {} of {total} subscriber groups; failed: {}",
            total - failures.len(),
            each.join("; ")
        ))
        .with_id("rmicro.broker.http"))
    }

    async fn subscribe(
        &self,
        topic: &str,
        handler: Arc<dyn DeliveryHandler>,
        options: SubscribeOptions,
    ) -> Result<Box<dyn Subscription>> {
        let address = self.endpoint_address().await?;
        let id = format!("sub-{}", uuid::Uuid::new_v4().simple());
        let mut metadata = std::collections::BTreeMap::from([("topic".to_owned(), topic.to_owned())]);
        if let Some(queue) = &options.queue {
            metadata.insert("queue".to_owned(), queue.clone());
        }
        let record = registry::ServiceRecord {
            name: BROKER_SERVICE.to_owned(),
            version: "1".to_owned(),
            nodes: vec![Node { id: id.clone(), address, metadata }],
            ..registry::ServiceRecord::default()
        };
        lock(&self.inner.subscribers).insert(id.clone(), Subscriber { handler, ack: options.ack });
        if let Err(e) = self.inner.registry.register(&record, Some(self.inner.config.ttl)).await {
            lock(&self.inner.subscribers).remove(&id);
            return Err(e);
        }
        lock(&self.inner.records).insert(id.clone(), record);
        Ok(Box::new(HttpSubscription { id, topic: topic.to_owned(), queue: options.queue, broker: self.clone() }))
    }
}

#[derive(Debug)]
struct HttpSubscription {
    id: String,
    topic: String,
    queue: Option<String>,
    broker: HttpBroker,
}

#[async_trait]
impl Subscription for HttpSubscription {
    fn topic(&self) -> &str {
        &self.topic
    }

    fn queue(&self) -> Option<&str> {
        self.queue.as_deref()
    }

    async fn unsubscribe(self: Box<Self>) -> Result<()> {
        let inner = &self.broker.inner;
        let record = lock(&inner.records).remove(&self.id);
        if let Some(record) = record {
            inner.registry.deregister(&record).await?;
        }
        lock(&inner.subscribers).remove(&self.id);
        Ok(())
    }
}
