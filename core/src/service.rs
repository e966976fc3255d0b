//! A service: one server and one client sharing transport, registry and broker, with a run loop
//! that stops gracefully on SIGINT or SIGTERM and start/stop hooks.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::broker::{Broker, MemoryBroker};
use crate::client::{Client, ClientBuilder};
use crate::codec::Codecs;
use crate::error::Result;
use crate::registry::{MemoryRegistry, Registry};
use crate::server::{Server, ServerBuilder};
use crate::transport::{MemoryTransport, Transport};

type Hook = Box<dyn Fn() -> BoxFuture<'static, Result<()>> + Send + Sync>;

/// A microservice: serves its endpoints and subscribers, and calls others.
///
/// ```
/// # use rmicro_core::prelude::*;
/// # async fn demo() -> Result<(), Error> {
/// let service = Service::builder("greeter").version("1.0.0").build();
/// service.server().handle("Greeter.Hello", |_ctx, name: Json<String>| async move {
///     Ok(Json(format!("hello {}", name.0)))
/// });
/// service.start().await?;
/// let reply: Response<Json<String>> = service
///     .client()
///     .call(Call::new("greeter", "Greeter.Hello").content_type("application/json"), &Json("ada".to_owned()))
///     .await?;
/// assert_eq!(reply.into_inner().0, "hello ada");
/// service.stop().await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
pub struct Service {
    server: Server,
    client: Client,
    before_start: Vec<Hook>,
    after_start: Vec<Hook>,
    before_stop: Vec<Hook>,
    after_stop: Vec<Hook>,
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service").field("server", &self.server).field("client", &self.client).finish_non_exhaustive()
    }
}

impl Service {
    /// A builder for the service `name`; every backend not set is the in-memory one.
    pub fn builder(name: impl Into<String>) -> ServiceBuilder {
        ServiceBuilder::new(name.into())
    }

    /// The service's server, to add handlers and subscribers.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// The service's client, to call other services and publish.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Runs the before-start hooks, starts the server, runs the after-start hooks.
    pub async fn start(&self) -> Result<()> {
        run_hooks(&self.before_start).await?;
        self.server.start().await?;
        run_hooks(&self.after_start).await
    }

    /// Runs the before-stop hooks, stops the server gracefully, runs the after-stop hooks.
    pub async fn stop(&self) -> Result<()> {
        let before = run_hooks(&self.before_stop).await;
        let stopped = self.server.stop().await;
        let after = run_hooks(&self.after_stop).await;
        before.and(stopped).and(after)
    }

    /// Starts, waits for SIGINT or SIGTERM, then stops gracefully.
    pub async fn run(&self) -> Result<()> {
        let signalled = shutdown_signal();
        self.run_until(signalled).await
    }

    /// Starts, waits for `shutdown` to complete, then stops gracefully.
    pub async fn run_until(&self, shutdown: impl Future<Output = ()>) -> Result<()> {
        self.start().await?;
        shutdown.await;
        self.stop().await
    }
}

async fn run_hooks(hooks: &[Hook]) -> Result<()> {
    for hook in hooks {
        hook().await?;
    }
    Ok(())
}

/// A future that completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
///
/// The signal handlers are installed when this is called, not when the future is first polled,
/// so a signal that arrives while the service is still starting is not lost (and does not kill
/// the process). Call it from within a Tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            let (mut interrupt, mut terminate) = match (interrupt, terminate) {
                (Ok(i), Ok(t)) => (i, t),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!(error = %e, "cannot listen for SIGINT/SIGTERM; stop the service another way");
                    return std::future::pending().await;
                }
            };
            tokio::select! {
                _ = interrupt.recv() => tracing::info!("received SIGINT"),
                _ = terminate.recv() => tracing::info!("received SIGTERM"),
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        tracing::info!("received Ctrl-C");
    }
}

/// Builds a [`Service`].
pub struct ServiceBuilder {
    server: ServerBuilder,
    client: ClientBuilder,
    transport: Option<Arc<dyn Transport>>,
    registry: Option<Arc<dyn Registry>>,
    broker: Option<Arc<dyn Broker>>,
    codecs: Option<Codecs>,
    before_start: Vec<Hook>,
    after_start: Vec<Hook>,
    before_stop: Vec<Hook>,
    after_stop: Vec<Hook>,
}

impl fmt::Debug for ServiceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceBuilder").field("server", &self.server).finish_non_exhaustive()
    }
}

fn hook<F, Fut>(f: F) -> Hook
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    Box::new(move || Box::pin(f()))
}

impl ServiceBuilder {
    fn new(name: String) -> ServiceBuilder {
        ServiceBuilder {
            server: Server::builder(name),
            client: Client::builder(),
            transport: None,
            registry: None,
            broker: None,
            codecs: None,
            before_start: Vec::new(),
            after_start: Vec::new(),
            before_stop: Vec::new(),
            after_stop: Vec::new(),
        }
    }

    /// The version advertised in the registry.
    pub fn version(mut self, version: impl Into<String>) -> ServiceBuilder {
        self.server = self.server.version(version);
        self
    }

    /// The address the server listens on.
    pub fn address(mut self, address: impl Into<String>) -> ServiceBuilder {
        self.server = self.server.address(address);
        self
    }

    /// Adds a label advertised with the service.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> ServiceBuilder {
        self.server = self.server.metadata(key, value);
        self
    }

    /// The transport for both server and client.
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> ServiceBuilder {
        self.transport = Some(transport);
        self
    }

    /// The registry for both server and client.
    pub fn registry(mut self, registry: Arc<dyn Registry>) -> ServiceBuilder {
        self.registry = Some(registry);
        self
    }

    /// The broker for both server and client.
    pub fn broker(mut self, broker: Arc<dyn Broker>) -> ServiceBuilder {
        self.broker = Some(broker);
        self
    }

    /// The codecs for both server and client.
    pub fn codecs(mut self, codecs: Codecs) -> ServiceBuilder {
        self.codecs = Some(codecs);
        self
    }

    /// Sets server options not covered here (TTL, layers, ...).
    pub fn server(mut self, configure: impl FnOnce(ServerBuilder) -> ServerBuilder) -> ServiceBuilder {
        self.server = configure(self.server);
        self
    }

    /// Sets client options not covered here (timeout, retries, layers, ...).
    pub fn client(mut self, configure: impl FnOnce(ClientBuilder) -> ClientBuilder) -> ServiceBuilder {
        self.client = configure(self.client);
        self
    }

    /// Runs `f` before the server starts; an error aborts the start.
    pub fn before_start<F, Fut>(mut self, f: F) -> ServiceBuilder
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        self.before_start.push(hook(f));
        self
    }

    /// Runs `f` once the server has started and registered.
    pub fn after_start<F, Fut>(mut self, f: F) -> ServiceBuilder
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        self.after_start.push(hook(f));
        self
    }

    /// Runs `f` before the server stops.
    pub fn before_stop<F, Fut>(mut self, f: F) -> ServiceBuilder
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        self.before_stop.push(hook(f));
        self
    }

    /// Runs `f` after the server stopped.
    pub fn after_stop<F, Fut>(mut self, f: F) -> ServiceBuilder
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        self.after_stop.push(hook(f));
        self
    }

    /// The service.
    pub fn build(self) -> Service {
        let transport = self.transport.unwrap_or_else(|| Arc::new(MemoryTransport::new()));
        let registry = self.registry.unwrap_or_else(|| Arc::new(MemoryRegistry::new()));
        let broker = self.broker.unwrap_or_else(|| Arc::new(MemoryBroker::new()));
        let codecs = self.codecs.unwrap_or_default();
        let server = self
            .server
            .transport(transport.clone())
            .registry(registry.clone())
            .broker(broker.clone())
            .codecs(codecs.clone())
            .build();
        let client = self.client.transport(transport).registry(registry).broker(broker).codecs(codecs).build();
        Service {
            server,
            client,
            before_start: self.before_start,
            after_start: self.after_start,
            before_stop: self.before_stop,
            after_stop: self.after_stop,
        }
    }
}
