//! The server: serves endpoints and subscribers, keeps its node registered, stops gracefully.
//!
//! # Lifecycle
//!
//! [`Server::start`] listens, connects the broker, subscribes, starts accepting calls, then
//! registers the node (with a TTL) and re-registers it on an interval. If any step fails, the
//! steps before it are undone, so no half-registered node is left behind.
//!
//! [`Server::stop`] deregisters first (clients stop choosing the node), stops accepting calls
//! (new ones are refused as unavailable), lets in-flight calls finish within the shutdown
//! timeout (then cancels them), closes the transport's connections once their replies are
//! delivered, and last unsubscribes and disconnects the broker.
//!
//! # Layers
//!
//! Unary calls pass through the layers added with [`ServerBuilder::layer`] (first added is
//! outermost), then the router that decodes the request and calls the handler. Streaming calls go
//! to their handler directly.

mod bounded_call;
mod builder;
mod handler;
mod router;
mod serve;
mod subscriber;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::util::BoxCloneSyncService;

use crate::broker::{self, Broker, SubscribeOptions, Subscription};
use crate::codec::{Codecs, Message};
use crate::context::Context;
use crate::error::{Code, Error, Result};
use crate::registry::{self, Node, Registry};
use crate::transport::Transport;

pub use crate::transport::EncodedResponse;
pub use builder::ServerBuilder;
pub use handler::ServerStream;
pub use router::ServerRequest;

use router::{Endpoints, Router};
use subscriber::Subscriber;

/// The type-erased service server layers wrap.
pub type ServerService = BoxCloneSyncService<ServerRequest, EncodedResponse, Error>;

/// How long a registration lives without being renewed (go-micro's default).
pub const DEFAULT_REGISTER_TTL: Duration = Duration::from_secs(90);
/// How often the registration is renewed (go-micro's default).
pub const DEFAULT_REGISTER_INTERVAL: Duration = Duration::from_secs(30);
/// How long in-flight calls may run on after a stop began.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves endpoints and subscribers. Cheap to clone; clones are the same server.
#[derive(Clone, Debug)]
pub struct Server {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Options {
    name: String,
    version: String,
    id: String,
    address: String,
    metadata: BTreeMap<String, String>,
    register_ttl: Duration,
    register_interval: Duration,
    shutdown_timeout: Duration,
    content_type: String,
}

#[derive(Debug)]
pub(crate) struct Inner {
    options: Options,
    transport: Arc<dyn Transport>,
    registry: Arc<dyn Registry>,
    broker: Arc<dyn Broker>,
    codecs: Codecs,
    endpoints: Endpoints,
    subscribers: Mutex<Vec<Subscriber>>,
    router: Router,
    /// The layers added with [`ServerBuilder::layer`] over the router; `None` when none were.
    layers: Option<ServerService>,
    accepting: AtomicBool,
    force_stop: CancellationToken,
    running: tokio::sync::Mutex<Option<Running>>,
}

#[derive(Debug)]
struct Running {
    address: String,
    stop_accepting: CancellationToken,
    acceptor: JoinHandle<Box<dyn crate::transport::Listener>>,
    calls: TaskTracker,
    renewer: JoinHandle<()>,
    subscriptions: Vec<Box<dyn Subscription>>,
}

impl Inner {
    /// Names this server as the source of an error that has no source yet.
    fn attributed(&self, error: Error) -> Error {
        if error.id.is_empty() { error.with_id(self.options.name.clone()) } else { error }
    }

    /// The registry record of this server's node at `address`.
    fn describe(&self, address: &str) -> registry::ServiceRecord {
        let mut metadata = self.options.metadata.clone();
        for (key, value) in [
            ("server", "rmicro"),
            ("transport", self.transport.name()),
            ("registry", self.registry.name()),
            ("broker", self.broker.name()),
            ("protocol", "rmicro"),
        ] {
            metadata.entry(key.to_owned()).or_insert_with(|| value.to_owned());
        }
        let endpoints = self
            .endpoints
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .values()
            .map(|e| e.description.clone())
            .collect();
        registry::ServiceRecord {
            name: self.options.name.clone(),
            version: self.options.version.clone(),
            metadata: self.options.metadata.clone(),
            endpoints,
            nodes: vec![Node { id: self.options.id.clone(), address: address.to_owned(), metadata }],
        }
    }

    fn subscribers(&self) -> std::sync::MutexGuard<'_, Vec<Subscriber>> {
        self.subscribers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Server {
    /// A builder for a server of the service `name`.
    pub fn builder(name: impl Into<String>) -> ServerBuilder {
        ServerBuilder::new(name.into())
    }

    /// The service name.
    pub fn name(&self) -> &str {
        &self.inner.options.name
    }

    /// This node's id in the registry.
    pub fn id(&self) -> &str {
        &self.inner.options.id
    }

    /// The codecs the server speaks.
    pub fn codecs(&self) -> &Codecs {
        &self.inner.codecs
    }

    /// Serves the unary endpoint `name` (e.g. `Greeter.Hello`) with `handler`. Requests are
    /// decoded with the codec of the call's content type and responses encoded with the same one.
    pub fn handle<Req, Resp, F, Fut>(&self, name: &str, handler: F) -> &Server
    where
        Req: Message + Default,
        Resp: Message,
        F: Fn(Context, Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp>> + Send + 'static,
    {
        self.insert(name, handler::unary(name, handler))
    }

    /// Serves the streaming endpoint `name` with `handler`, which reads requests and sends
    /// responses on the [`ServerStream`] until it returns the stream's status.
    pub fn handle_stream<Req, Resp, F, Fut>(&self, name: &str, handler: F) -> &Server
    where
        Req: Message + Default,
        Resp: Message,
        F: Fn(Context, ServerStream<Req, Resp>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        self.insert(name, handler::stream(name, handler))
    }

    fn insert(&self, name: &str, endpoint: handler::Endpoint) -> &Server {
        self.inner
            .endpoints
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(name.to_owned(), Arc::new(endpoint));
        self
    }

    /// Subscribes `handler` to `topic` when the server starts; messages are decoded as `M`
    /// through the codec named by their `content-type` header, and acknowledged when the handler
    /// returns `Ok`.
    pub fn subscribe<M, F, Fut>(&self, topic: &str, options: SubscribeOptions, handler: F) -> &Server
    where
        M: Message + Default,
        F: Fn(Context, M) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        let handler =
            subscriber::typed(topic, self.inner.codecs.clone(), self.inner.options.content_type.clone(), handler);
        self.subscribe_raw(topic, options, handler)
    }

    /// Subscribes a broker handler as it is, for raw bodies or manual acknowledgement.
    pub fn subscribe_raw(
        &self,
        topic: &str,
        options: SubscribeOptions,
        handler: Arc<dyn broker::DeliveryHandler>,
    ) -> &Server {
        self.inner.subscribers().push(Subscriber { topic: topic.to_owned(), options, handler });
        self
    }

    /// The address the server listens on, once started.
    pub async fn address(&self) -> Option<String> {
        self.inner.running.lock().await.as_ref().map(|r| r.address.clone())
    }

    /// Starts serving: listen, subscribe, accept, register. Undoes what it did if a step fails.
    pub async fn start(&self) -> Result<()> {
        let inner = &self.inner;
        let mut running = inner.running.lock().await;
        if running.is_some() {
            return Err(Error::new(Code::Conflict, "server is already running"));
        }
        let listener = inner.transport.listen(&inner.options.address).await?;
        let address = listener.address();
        inner.broker.connect().await?;
        let subscriptions = self.subscribe_all().await?;
        inner.accepting.store(true, Ordering::SeqCst);
        let stop_accepting = CancellationToken::new();
        let calls = TaskTracker::new();
        let acceptor = tokio::spawn(serve::accept(inner.clone(), listener, stop_accepting.clone(), calls.clone()));
        if let Err(e) = inner.registry.register(&inner.describe(&address), Some(inner.options.register_ttl)).await {
            inner.accepting.store(false, Ordering::SeqCst);
            stop_accepting.cancel();
            if let Ok(listener) = acceptor.await {
                listener.shutdown().await;
            }
            unsubscribe_all(subscriptions).await;
            return Err(e);
        }
        let renewer = tokio::spawn(renew(Arc::downgrade(inner), address.clone()));
        tracing::info!(server = %inner.options.name, id = %inner.options.id, %address,
            transport = inner.transport.name(), registry = inner.registry.name(), "server started");
        *running = Some(Running { address, stop_accepting, acceptor, calls, renewer, subscriptions });
        Ok(())
    }

    async fn subscribe_all(&self) -> Result<Vec<Box<dyn Subscription>>> {
        let subscribers = self.inner.subscribers().clone();
        let mut subscriptions = Vec::with_capacity(subscribers.len());
        for s in subscribers {
            match self.inner.broker.subscribe(&s.topic, s.handler, s.options).await {
                Ok(subscription) => subscriptions.push(subscription),
                Err(e) => {
                    unsubscribe_all(subscriptions).await;
                    return Err(e);
                }
            }
        }
        Ok(subscriptions)
    }

    /// Stops gracefully: deregister, stop accepting, drain in-flight calls within the shutdown
    /// timeout, then unsubscribe and disconnect the broker. Stopping a stopped server does nothing.
    pub async fn stop(&self) -> Result<()> {
        let inner = &self.inner;
        let Some(running) = inner.running.lock().await.take() else { return Ok(()) };
        running.renewer.abort();
        let deregistered = inner.registry.deregister(&inner.describe(&running.address)).await;
        if let Err(e) = &deregistered {
            tracing::error!(server = %inner.options.name, error = %e, "deregistering failed; the node expires with its TTL");
        }
        // The accept loop keeps running while in-flight calls drain, so that calls arriving now are
        // refused at once (unavailable) rather than left waiting in the listener.
        inner.accepting.store(false, Ordering::SeqCst);
        running.calls.close();
        if tokio::time::timeout(inner.options.shutdown_timeout, running.calls.wait()).await.is_err() {
            tracing::warn!(server = %inner.options.name, "in-flight calls outlived the shutdown timeout; cancelling them");
            inner.force_stop.cancel();
            running.calls.wait().await;
        }
        running.stop_accepting.cancel();
        if let Ok(listener) = running.acceptor.await {
            listener.shutdown().await;
        }
        unsubscribe_all(running.subscriptions).await;
        let disconnected = inner.broker.disconnect().await;
        tracing::info!(server = %inner.options.name, id = %inner.options.id, "server stopped");
        deregistered.and(disconnected)
    }
}

async fn unsubscribe_all(subscriptions: Vec<Box<dyn Subscription>>) {
    for subscription in subscriptions {
        let topic = subscription.topic().to_owned();
        if let Err(e) = subscription.unsubscribe().await {
            tracing::warn!(%topic, error = %e, "unsubscribing failed");
        }
    }
}

/// Registers the node again every interval so its TTL never lapses while it runs.
async fn renew(server: std::sync::Weak<Inner>, address: String) {
    let Some(interval) = server.upgrade().map(|s| s.options.register_interval) else { return };
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    loop {
        ticks.tick().await;
        let Some(server) = server.upgrade() else { return };
        let service = server.describe(&address);
        if let Err(e) = server.registry.register(&service, Some(server.options.register_ttl)).await {
            tracing::warn!(server = %server.options.name, error = %e, "re-registering failed; will retry");
        }
    }
}
