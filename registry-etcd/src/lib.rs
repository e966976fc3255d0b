//! An rmicro registry on etcd (v3 API, through etcd-client).
//!
//! Each node is one key, `<prefix><service>/<node-id>` (default prefix `/micro/registry/`, the
//! layout go-micro uses), whose value is the service with that node as JSON. A registration with
//! a TTL puts the key under a lease of that TTL; registering again keeps the lease alive, and
//! when the lease is gone (it lapsed, or etcd lost it) grants a new one and puts the key again,
//! so a server that keeps re-registering comes back by itself after etcd restarts. A node whose
//! process dies disappears when its lease expires.
//!
//! `watch` watches the prefix and turns etcd events into registry events; when the watch breaks
//! (etcd restarted, history compacted) it reconnects, lists the prefix again and reports the
//! difference, so no change is missed.
//!
//! # Example
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use rmicro_core::prelude::*;
//! use rmicro_registry_etcd::{EtcdConfig, EtcdRegistry};
//!
//! # async fn demo() -> Result<(), Error> {
//! let config = EtcdConfig::default().with_endpoints(["10.0.0.1:2379", "10.0.0.2:2379"]);
//! let registry = EtcdRegistry::connect(config).await?;
//! let service = Service::builder("greeter").registry(Arc::new(registry)).build();
//! # Ok(()) }
//! ```
//!
//! # Configuration
//!
//! [`EtcdConfig`], in code or from settings ([`EtcdConfig::from_env`], [`EtcdConfig::from_settings`]);
//! the `rmicro` facade builds the registry through [`PLUGIN`] with `MICRO_REGISTRY=etcd`.
//!
//! | Field | Environment | Default | |
//! |---|---|---|---|
//! | [`endpoints`](EtcdConfig::endpoints) | `MICRO_REGISTRY_ADDRESS` | `127.0.0.1:2379` | etcd endpoints, comma-separated |
//! | [`prefix`](EtcdConfig::prefix) | `MICRO_REGISTRY_PREFIX` | `/micro/registry/` | where the nodes' keys go |
//! | [`username`](EtcdConfig::username), [`password`](EtcdConfig::password) | `MICRO_REGISTRY_USERNAME`, `MICRO_REGISTRY_PASSWORD` | none | etcd auth |
//! | [`timeout`](EtcdConfig::timeout) | `MICRO_REGISTRY_TIMEOUT` | 5 s | how long a request may take (`1.5`, `250ms`, `2s`) |
//! | [`tls`](EtcdConfig::tls) | `MICRO_REGISTRY_TLS_CA`, `MICRO_REGISTRY_TLS_CERT`, `MICRO_REGISTRY_TLS_KEY` | none | PEM files: the CA, and a client certificate and key; crate feature `tls` (rustls) |
//!
//! # Capabilities
//!
//! - [x] register with TTL (lease + keep-alive on re-register), deregister, get, list
//! - [x] prefix watch with create/update/delete, resumed after disconnects without missing changes
//! - [x] re-registration after etcd restarts or loses the lease
//! - [x] auth (user/password) and TLS (feature `tls`)
//!
//! # Building
//!
//! etcd-client generates its gRPC code at build time with `protoc`, so building this crate
//! needs `protoc` (Debian: `protobuf-compiler`). No other rmicro crate does.
//!
//! # Tests
//!
//! `tests/conformance.rs` runs the core registry suite against a real etcd at
//! `MICRO_TEST_ETCD_ADDR` (default `127.0.0.1:2379`), which the project's test script starts
//! (Debian `etcd-server`) when none runs; `tests/restart.rs` starts its own etcd on other ports
//! to stop and restart it.

mod config;
mod watch;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{Client, ConnectOptions, GetOptions, PutOptions};
use rmicro_core::raw::check_registration;
use rmicro_core::raw::plugin::{Build, Plugin, Setting};
use rmicro_core::registry::{Registry, ServiceRecord, Watcher};
use rmicro_core::{Code, Error, Result};

pub use config::{DEFAULT_PREFIX, EtcdConfig, TlsFiles};

/// The etcd registry as the `rmicro` facade builds it: `MICRO_REGISTRY=etcd`, configured by
/// [`EtcdConfig::from_settings`].
pub static PLUGIN: Plugin = Plugin {
    names: &["etcd"],
    about: "etcd v3: leases for TTL, a prefix watch that survives etcd restarts",
    default_address: "127.0.0.1:2379",
    settings: &[
        &[
            Setting::new("prefix", "the key prefix (default /micro/registry/)"),
            Setting::new("username", "user name for etcd auth, with password"),
            Setting::new("password", "password for etcd auth"),
            Setting::new("timeout", "how long a request to etcd may take (default 5s)"),
        ],
        &[
            Setting::new("tls_ca", "PEM file of the CA that signed etcd's certificate (crate feature tls)"),
            Setting::new("tls_cert", "PEM file of the client certificate, with tls_key"),
            Setting::new("tls_key", "PEM file of the private key of tls_cert"),
        ],
    ],
    build: Build::Registry(|settings| {
        Box::pin(async move {
            Ok(Arc::new(EtcdRegistry::connect(EtcdConfig::from_settings(&settings)?).await?) as Arc<dyn Registry>)
        })
    }),
};

/// The etcd registry.
#[derive(Clone)]
pub struct EtcdRegistry {
    client: Client,
    prefix: String,
    timeout: Duration,
    registrations: Arc<Mutex<HashMap<String, Registration>>>,
}

impl std::fmt::Debug for EtcdRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdRegistry").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

/// What this registry put for one node, to keep its lease alive instead of putting it again.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Registration {
    value: Vec<u8>,
    ttl: Option<Duration>,
    lease: i64,
}

/// Turns an etcd-client error into the core error, naming etcd and what was being done.
pub(crate) fn etcd_error(doing: &str, error: etcd_client::Error) -> Error {
    let code = match &error {
        etcd_client::Error::InvalidArgs(_) | etcd_client::Error::InvalidUri(_) => Code::BadRequest,
        etcd_client::Error::GRpcStatus(status) => Code::from_grpc_status(status.code() as i32),
        _ => Code::Unavailable,
    };
    Error::new(code, format!("etcd: {doing}: {error}")).with_id("rmicro.registry.etcd")
}

fn ttl_seconds(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0)).unwrap_or(i64::MAX).max(1)
}

impl EtcdRegistry {
    /// Connects to etcd, within the configured timeout.
    pub async fn connect(config: EtcdConfig) -> Result<EtcdRegistry> {
        let mut options = ConnectOptions::new().with_timeout(config.timeout).with_connect_timeout(config.timeout);
        if let (Some(user), Some(password)) = (&config.username, &config.password) {
            options = options.with_user(user.clone(), password.clone());
        }
        if let Some(files) = &config.tls {
            options = tls(options, files)?;
        }
        let client = Client::connect(&config.endpoints, Some(options))
            .await
            .map_err(|e| etcd_error(&format!("connecting to {:?}", config.endpoints), e))?;
        Ok(EtcdRegistry { client, prefix: config.prefix, timeout: config.timeout, registrations: Arc::default() })
    }

    /// Runs one etcd request, bounded by the configured timeout: a request to an etcd that is
    /// coming back can otherwise wait on the connection indefinitely.
    async fn within<T>(
        &self,
        doing: &str,
        request: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.timeout, request).await {
            Ok(result) => result.map_err(|e| etcd_error(doing, e)),
            Err(_) => Err(Error::unavailable(format!("etcd: {doing}: no answer within {:?}", self.timeout))
                .with_id("rmicro.registry.etcd")),
        }
    }

    fn key(&self, service: &str, node: &str) -> String {
        format!("{}{service}/{node}", self.prefix)
    }

    fn registrations(&self) -> std::sync::MutexGuard<'_, HashMap<String, Registration>> {
        self.registrations.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps `lease` alive once; `false` when etcd no longer knows it.
    async fn keep_alive(&self, lease: i64) -> Result<bool> {
        let mut client = self.client.clone();
        let doing = "keeping a lease alive";
        self.within(doing, async move {
            let (mut keeper, mut responses) = client.lease_keep_alive(lease).await?;
            keeper.keep_alive().await?;
            Ok(responses.message().await?.is_some_and(|r| r.ttl() > 0))
        })
        .await
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        let mut client = self.client.clone();
        let found = self.within("reading a node", client.get(key, Some(GetOptions::new().with_count_only()))).await?;
        Ok(found.count() > 0)
    }

    /// Registers one node: refreshes the lease if the same record is already there, otherwise
    /// (or if the lease or key is gone) puts the record under a new lease.
    async fn register_node(&self, key: String, value: Vec<u8>, ttl: Option<Duration>) -> Result<()> {
        let previous = self.registrations().get(&key).cloned();
        if let Some(previous) = previous.filter(|p| p.value == value && p.ttl == ttl) {
            let alive = match ttl {
                Some(_) => matches!(self.keep_alive(previous.lease).await, Ok(true)),
                None => true,
            };
            if alive && matches!(self.exists(&key).await, Ok(true)) {
                return Ok(());
            }
            tracing::info!(%key, "the node's lease or key is gone (or etcd did not answer); registering it again");
        }
        let mut client = self.client.clone();
        let lease = match ttl {
            Some(ttl) => {
                client.lease_grant(ttl_seconds(ttl), None).await.map_err(|e| etcd_error("granting a lease", e))?.id()
            }
            None => 0,
        };
        let options = (lease != 0).then(|| PutOptions::new().with_lease(lease));
        client.put(key.clone(), value.clone(), options).await.map_err(|e| etcd_error("putting a node", e))?;
        let replaced = self.registrations().insert(key, Registration { value, ttl, lease });
        if let Some(old) = replaced.filter(|old| old.lease != 0 && old.lease != lease) {
            let _ = client.lease_revoke(old.lease).await;
        }
        Ok(())
    }

    async fn read(&self, prefix: String) -> Result<Vec<ServiceRecord>> {
        let mut client = self.client.clone();
        let found = client
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| etcd_error("listing nodes", e))?;
        let mut grouped: BTreeMap<(String, String), ServiceRecord> = BTreeMap::new();
        for kv in found.kvs() {
            let Ok(one) = serde_json::from_slice::<ServiceRecord>(kv.value()) else {
                tracing::warn!(key = %String::from_utf8_lossy(kv.key()), "skipping a registry entry that is not a service record");
                continue;
            };
            let entry = grouped
                .entry((one.name.clone(), one.version.clone()))
                .or_insert_with(|| ServiceRecord { nodes: Vec::new(), ..one.clone() });
            entry.nodes.extend(one.nodes);
        }
        Ok(grouped.into_values().collect())
    }
}

#[cfg(feature = "tls")]
fn tls(options: ConnectOptions, files: &TlsFiles) -> Result<ConnectOptions> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| Error::bad_request(format!("etcd TLS file {}: {e}", path.display())))
    };
    let mut tls = etcd_client::TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(read(&files.ca)?));
    if let (Some(cert), Some(key)) = (&files.cert, &files.key) {
        tls = tls.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(options.with_tls(tls))
}

#[cfg(not(feature = "tls"))]
fn tls(_: ConnectOptions, _: &TlsFiles) -> Result<ConnectOptions> {
    Err(Error::bad_request("etcd TLS needs the rmicro-registry-etcd feature \"tls\"").with_id("rmicro.registry.etcd"))
}

#[async_trait]
impl Registry for EtcdRegistry {
    fn name(&self) -> &'static str {
        "etcd"
    }

    async fn register(&self, service: &ServiceRecord, ttl: Option<Duration>) -> Result<()> {
        check_registration(service)?;
        for node in &service.nodes {
            let one = ServiceRecord { nodes: vec![node.clone()], ..service.clone() };
            let value =
                serde_json::to_vec(&one).map_err(|e| Error::internal(format!("encoding {}: {e}", service.name)))?;
            self.register_node(self.key(&service.name, &node.id), value, ttl).await?;
        }
        Ok(())
    }

    async fn deregister(&self, service: &ServiceRecord) -> Result<()> {
        let mut client = self.client.clone();
        for node in &service.nodes {
            let key = self.key(&service.name, &node.id);
            self.within("deleting a node", client.delete(key.clone(), None)).await?;
            let registration = self.registrations().remove(&key);
            if let Some(lease) = registration.map(|r| r.lease).filter(|l| *l != 0) {
                let _ = client.lease_revoke(lease).await;
            }
        }
        Ok(())
    }

    async fn get_service(&self, name: &str) -> Result<Vec<ServiceRecord>> {
        let found: Vec<ServiceRecord> =
            self.read(format!("{}{name}/", self.prefix)).await?.into_iter().filter(|s| s.name == name).collect();
        if found.is_empty() {
            return Err(Error::not_found(format!("service {name} not found")).with_id("rmicro.registry.etcd"));
        }
        Ok(found)
    }

    async fn list_services(&self) -> Result<Vec<ServiceRecord>> {
        self.read(self.prefix.clone()).await
    }

    async fn watch(&self, service: Option<&str>) -> Result<Watcher> {
        let prefix = match service {
            Some(name) => format!("{}{name}/", self.prefix),
            None => self.prefix.clone(),
        };
        watch::start(self.client.clone(), prefix, self.timeout).await
    }
}
