//! How a backend makes itself known: one [`Plugin`] descriptor per backend crate.
//!
//! A backend crate exports `pub static PLUGIN: Plugin`: the names it answers to in
//! `MICRO_TRANSPORT`, `MICRO_REGISTRY` or `MICRO_BROKER`, its default address, the settings it
//! reads, and how to build it from [`Settings`]. The `rmicro` facade lists the plugins of the
//! backends compiled in and builds the one a deployment names; it holds no code of its own per
//! backend.
//!
//! ```
//! use std::sync::Arc;
//! use rmicro_core::raw::plugin::{Build, Plugin, Settings};
//! use rmicro_core::registry::{MemoryRegistry, Registry};
//!
//! static PLUGIN: Plugin = Plugin {
//!     names: &["scratch"],
//!     about: "a registry that forgets everything",
//!     default_address: "",
//!     settings: &[],
//!     build: Build::Registry(|_settings| Box::pin(async { Ok(Arc::new(MemoryRegistry::new()) as Arc<dyn Registry>) })),
//! };
//! # let settings = Settings::new().with("registry", "scratch");
//! # let registry = tokio::runtime::Runtime::new().unwrap().block_on(PLUGIN.build_registry(settings.scoped(PLUGIN.kind()))).unwrap();
//! # assert_eq!(registry.name(), "memory");
//! ```

mod settings;

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::broker::{Broker, MemoryBroker};
use crate::error::{Error, Result};
use crate::registry::{MemoryRegistry, Registry};
use crate::transport::{MemoryTransport, Transport};

pub use settings::{Settings, normalize_key};

/// What kind of backend a plugin builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A [`Transport`].
    Transport,
    /// A [`Registry`].
    Registry,
    /// A [`Broker`].
    Broker,
}

impl Kind {
    /// The kind's name, which is also the prefix of its settings: `transport`, `registry`, `broker`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Transport => "transport",
            Kind::Registry => "registry",
            Kind::Broker => "broker",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A backend being built.
pub type Building<B> = BoxFuture<'static, Result<Arc<B>>>;

/// How a plugin builds its backend from the settings of its kind.
#[derive(Clone, Copy)]
pub enum Build {
    /// Builds a transport.
    Transport(fn(Settings) -> Building<dyn Transport>),
    /// Builds a registry.
    Registry(fn(Settings) -> Building<dyn Registry>),
    /// Builds a broker; brokers that find their subscribers through the registry get it.
    Broker(fn(Settings, Arc<dyn Registry>) -> Building<dyn Broker>),
}

impl fmt::Debug for Build {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Build::{:?}", self.kind())
    }
}

impl Build {
    fn kind(&self) -> Kind {
        match self {
            Build::Transport(_) => Kind::Transport,
            Build::Registry(_) => Kind::Registry,
            Build::Broker(_) => Kind::Broker,
        }
    }
}

/// A setting a backend reads, named without its kind's prefix (`tls_cert` is read from
/// `MICRO_TRANSPORT_TLS_CERT` or `--transport_tls_cert` for a transport).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setting {
    /// The key, e.g. `tls_cert`.
    pub key: &'static str,
    /// What it sets, for help texts.
    pub about: &'static str,
}

impl Setting {
    /// A setting `key` that does what `about` says.
    pub const fn new(key: &'static str, about: &'static str) -> Setting {
        Setting { key, about }
    }
}

/// The TLS settings every transport that offers TLS reads, as [`Settings::tls`] does.
pub const TLS_SETTINGS: &[Setting] = &[
    Setting::new("tls_cert", "PEM file of the certificate chain to serve with"),
    Setting::new("tls_key", "PEM file of the private key of tls_cert"),
    Setting::new("tls_ca", "PEM file of the CA that signed the servers' certificates (dialling with TLS)"),
    Setting::new("tls_server_name", "the name the servers' certificates are checked against (default localhost)"),
];

/// One backend as the facade sees it.
#[derive(Debug)]
pub struct Plugin {
    /// The names it answers to, e.g. `["nats", "jetstream"]`; the first is its own.
    pub names: &'static [&'static str],
    /// One line on what it is.
    pub about: &'static str,
    /// The address it uses when none is set, in its own terms; empty when it needs none.
    pub default_address: &'static str,
    /// The settings it reads besides `address`, in groups.
    pub settings: &'static [&'static [Setting]],
    /// How to build it.
    pub build: Build,
}

impl Plugin {
    /// The kind of backend it builds.
    pub fn kind(&self) -> Kind {
        self.build.kind()
    }

    /// Whether it answers to `name`, in any case.
    pub fn answers_to(&self, name: &str) -> bool {
        self.names.iter().any(|own| own.eq_ignore_ascii_case(name.trim()))
    }

    /// The settings it reads, with `address` first.
    pub fn all_settings(&self) -> impl Iterator<Item = &Setting> {
        const ADDRESS: Setting = Setting::new("address", "where the backend is, in its own terms");
        std::iter::once(&ADDRESS).chain(self.settings.iter().flat_map(|group| group.iter()))
    }

    /// Builds the transport; `settings` are scoped to transports ([`Settings::scoped`]).
    pub async fn build_transport(&self, settings: Settings) -> Result<Arc<dyn Transport>> {
        match self.build {
            Build::Transport(build) => build(settings).await,
            _ => Err(self.not_a(Kind::Transport)),
        }
    }

    /// Builds the registry; `settings` are scoped to registries.
    pub async fn build_registry(&self, settings: Settings) -> Result<Arc<dyn Registry>> {
        match self.build {
            Build::Registry(build) => build(settings).await,
            _ => Err(self.not_a(Kind::Registry)),
        }
    }

    /// Builds the broker; `settings` are scoped to brokers.
    pub async fn build_broker(&self, settings: Settings, registry: Arc<dyn Registry>) -> Result<Arc<dyn Broker>> {
        match self.build {
            Build::Broker(build) => build(settings, registry).await,
            _ => Err(self.not_a(Kind::Broker)),
        }
    }

    fn not_a(&self, kind: Kind) -> Error {
        Error::internal(format!("{} is a {}, not a {kind}", self.names.first().unwrap_or(&"?"), self.kind()))
    }
}

/// The in-memory transport, for one process.
pub static MEMORY_TRANSPORT: Plugin = Plugin {
    names: &["memory"],
    about: "in-memory transport, within one process",
    default_address: "",
    settings: &[],
    build: Build::Transport(|_| Box::pin(async { Ok(Arc::new(MemoryTransport::new()) as Arc<dyn Transport>) })),
};

/// The in-memory registry, for one process.
pub static MEMORY_REGISTRY: Plugin = Plugin {
    names: &["memory"],
    about: "in-memory registry, within one process",
    default_address: "",
    settings: &[],
    build: Build::Registry(|_| Box::pin(async { Ok(Arc::new(MemoryRegistry::new()) as Arc<dyn Registry>) })),
};

/// The in-memory broker, for one process.
pub static MEMORY_BROKER: Plugin = Plugin {
    names: &["memory"],
    about: "in-memory broker, within one process",
    default_address: "",
    settings: &[],
    build: Build::Broker(|_, _| Box::pin(async { Ok(Arc::new(MemoryBroker::new()) as Arc<dyn Broker>) })),
};
