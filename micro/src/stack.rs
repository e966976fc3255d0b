//! A service on the backends this build and its deployment choose, as go-micro's
//! `micro.NewService(micro.Name(..))` followed by `service.Init()`.

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;

use rmicro_core::broker::Broker;
use rmicro_core::client::ClientBuilder;
use rmicro_core::codec::Codecs;
use rmicro_core::raw::plugin::Settings;
use rmicro_core::registry::Registry;
use rmicro_core::server::ServerBuilder;
use rmicro_core::service::ServiceBuilder as CoreBuilder;
use rmicro_core::transport::Transport;
use rmicro_core::{Result, service};

use crate::config::Options;

/// A microservice: serves its endpoints and subscribers, and calls others. It derefs to
/// [`rmicro_core::service::Service`], where `server()`, `client()`, `start()`, `run()` and
/// `stop()` are.
///
/// ```
/// use rmicro::prelude::*;
///
/// # async fn demo() -> Result<(), Error> {
/// let service = Service::builder("pinger").in_memory().build().await?;
/// service.server().handle("Pinger.Ping", |_ctx, n: Json<u32>| async move { Ok(Json(n.0 + 1)) });
/// service.start().await?;
/// # service.stop().await
/// # }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
pub struct Service {
    inner: service::Service,
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl Deref for Service {
    type Target = service::Service;

    fn deref(&self) -> &service::Service {
        &self.inner
    }
}

impl Service {
    /// A builder for the service `name`, on the default stack compiled in (the HTTP transport,
    /// the mDNS registry and the HTTP broker with rmicro's default features) unless the
    /// environment or the command line choose others (see [`config`](crate::config)).
    pub fn builder(name: impl Into<String>) -> ServiceBuilder {
        ServiceBuilder {
            name: name.into(),
            configure: Box::new(|builder| builder),
            transport: None,
            registry: None,
            broker: None,
            settings: Settings::new(),
            args: None,
            in_memory: false,
        }
    }

    /// The core service, for APIs that take one.
    pub fn into_inner(self) -> service::Service {
        self.inner
    }
}

type Configure = Box<dyn FnOnce(CoreBuilder) -> CoreBuilder + Send>;

/// Builds a [`Service`]: what the code sets, then the deployment's `MICRO_*` variables and flags
/// over it (as go-micro's `Init` parses flags after the options in code); backends set here in
/// code are kept.
pub struct ServiceBuilder {
    name: String,
    configure: Configure,
    transport: Option<Arc<dyn Transport>>,
    registry: Option<Arc<dyn Registry>>,
    broker: Option<Arc<dyn Broker>>,
    settings: Settings,
    args: Option<Vec<String>>,
    in_memory: bool,
}

impl fmt::Debug for ServiceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceBuilder")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .field("in_memory", &self.in_memory)
            .finish_non_exhaustive()
    }
}

impl ServiceBuilder {
    fn then(mut self, step: impl FnOnce(CoreBuilder) -> CoreBuilder + Send + 'static) -> ServiceBuilder {
        let before = self.configure;
        self.configure = Box::new(move |builder| step(before(builder)));
        self
    }

    /// The version advertised in the registry.
    pub fn version(self, version: impl Into<String>) -> ServiceBuilder {
        let version = version.into();
        self.then(move |b| b.version(version))
    }

    /// The address the server listens on.
    pub fn address(self, address: impl Into<String>) -> ServiceBuilder {
        let address = address.into();
        self.then(move |b| b.address(address))
    }

    /// Adds a label advertised with the service.
    pub fn metadata(self, key: impl Into<String>, value: impl Into<String>) -> ServiceBuilder {
        let (key, value) = (key.into(), value.into());
        self.then(move |b| b.metadata(key, value))
    }

    /// The codecs for both server and client.
    pub fn codecs(self, codecs: Codecs) -> ServiceBuilder {
        self.then(move |b| b.codecs(codecs))
    }

    /// Sets server options not covered here (layers, ...).
    pub fn server(self, configure: impl FnOnce(ServerBuilder) -> ServerBuilder + Send + 'static) -> ServiceBuilder {
        self.then(move |b| b.server(configure))
    }

    /// Sets client options not covered here (layers, idempotent endpoints, ...).
    pub fn client(self, configure: impl FnOnce(ClientBuilder) -> ClientBuilder + Send + 'static) -> ServiceBuilder {
        self.then(move |b| b.client(configure))
    }

    /// Runs `f` before the server starts; an error aborts the start.
    pub fn before_start<F, Fut>(self, f: F) -> ServiceBuilder
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        self.then(move |b| b.before_start(f))
    }

    /// Runs `f` once the server has started and registered.
    pub fn after_start<F, Fut>(self, f: F) -> ServiceBuilder
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        self.then(move |b| b.after_start(f))
    }

    /// Runs `f` before the server stops.
    pub fn before_stop<F, Fut>(self, f: F) -> ServiceBuilder
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        self.then(move |b| b.before_stop(f))
    }

    /// Runs `f` after the server stopped.
    pub fn after_stop<F, Fut>(self, f: F) -> ServiceBuilder
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        self.then(move |b| b.after_stop(f))
    }

    /// The transport, instead of the one the settings choose.
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> ServiceBuilder {
        self.transport = Some(transport);
        self
    }

    /// The registry, instead of the one the settings choose.
    pub fn registry(mut self, registry: Arc<dyn Registry>) -> ServiceBuilder {
        self.registry = Some(registry);
        self
    }

    /// The broker, instead of the one the settings choose.
    pub fn broker(mut self, broker: Arc<dyn Broker>) -> ServiceBuilder {
        self.broker = Some(broker);
        self
    }

    /// Sets `key` as a `MICRO_*` variable would, under the environment and flags.
    pub fn setting(mut self, key: &str, value: impl Into<String>) -> ServiceBuilder {
        self.settings.set(key, value);
        self
    }

    /// Runs on the in-memory backends of one process, whatever the settings say, and reads no
    /// command line unless [`args`](ServiceBuilder::args) gives one: for tests, whose command
    /// line is the test harness's.
    pub fn in_memory(mut self) -> ServiceBuilder {
        self.in_memory = true;
        self
    }

    /// The flags to read instead of the program's command line (an empty list reads none).
    pub fn args(mut self, args: impl IntoIterator<Item = String>) -> ServiceBuilder {
        self.args = Some(args.into_iter().collect());
        self
    }

    /// Reads the settings, connects the backends they choose, and builds the service; a flag no
    /// setting answers to, a backend not compiled in or one that cannot be reached is an error.
    pub async fn build(self) -> Result<Service> {
        let args = match self.args {
            Some(args) => args,
            None if self.in_memory => Vec::new(),
            None => std::env::args().skip(1).collect(),
        };
        let mut options = Options::from_env_and_args(args)?;
        options = Options::from_settings(self.settings.overlaid(options.settings()))?;
        if self.in_memory {
            options = options.with("transport", "memory").with("registry", "memory").with("broker", "memory");
        }
        let transport = match self.transport {
            Some(transport) => transport,
            None => options.transport().await?,
        };
        let registry = match self.registry {
            Some(registry) => registry,
            None => options.registry().await?,
        };
        let broker = match self.broker {
            Some(broker) => broker,
            None => options.broker(&registry).await?,
        };
        let name = options.settings().get("server_name").unwrap_or(&self.name).to_owned();
        let server = options.server_settings()?;
        let client = options.client_settings(registry.clone())?;
        let builder = (self.configure)(service::Service::builder(name));
        let inner =
            builder.transport(transport).registry(registry).broker(broker).server(server).client(client).build();
        Ok(Service { inner })
    }
}
