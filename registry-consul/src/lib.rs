//! An rmicro registry on Consul, through the local agent's HTTP API.
//!
//! Each node is registered with `PUT /v1/agent/service/register` as a service instance (ID: the
//! node id) carrying a TTL health check; registering again passes the check
//! (`PUT /v1/agent/check/pass/service:<id>`) instead of re-registering, so a node that stops
//! being registered again turns critical after its TTL and leaves every lookup, and Consul
//! removes it after `deregister_critical_after`. `get_service` returns passing nodes only
//! (`GET /v1/health/service/:name?passing=true`), `list_services` reads `/v1/catalog/services`,
//! and `watch` uses blocking queries (`index` from `X-Consul-Index`, `wait`).
//!
//! consulrs (0.1.0, the last release) has no `/v1/health` endpoints and no blocking-query
//! parameters, both of which this registry needs, so it speaks the HTTP API directly with hyper.
//!
//! # Example
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use rmicro_core::prelude::*;
//! use rmicro_registry_consul::{ConsulConfig, ConsulRegistry};
//!
//! # async fn demo() -> Result<(), Error> {
//! let registry = ConsulRegistry::connect(ConsulConfig::default().with_token("acl-token")).await?;
//! let service = Service::builder("greeter").registry(Arc::new(registry)).build();
//! # Ok(()) }
//! ```
//!
//! # Configuration
//!
//! [`ConsulConfig`], in code or from settings ([`ConsulConfig::from_env`],
//! [`ConsulConfig::from_settings`]); the `rmicro` facade builds the registry through [`PLUGIN`]
//! with `MICRO_REGISTRY=consul`.
//!
//! | Field | Environment | Default | |
//! |---|---|---|---|
//! | [`address`](ConsulConfig::address) | `MICRO_REGISTRY_ADDRESS` | `127.0.0.1:8500` | the agent's HTTP address (`https://` for TLS) |
//! | [`token`](ConsulConfig::token) | `MICRO_REGISTRY_TOKEN` | none | ACL token (`X-Consul-Token`) |
//! | [`ca_file`](ConsulConfig::ca_file) | `MICRO_REGISTRY_TLS_CA` | none | PEM file of the agent's CA, for `https://` |
//! | [`watch_wait`](ConsulConfig::watch_wait) | `MICRO_REGISTRY_WATCH_WAIT` | 30 s | the longest wait of a blocking query (`1.5`, `250ms`, `2s`, `1m`) |
//! | [`deregister_critical_after`](ConsulConfig::deregister_critical_after) | `MICRO_REGISTRY_DEREGISTER_CRITICAL_AFTER` | 1 m | how long a node whose check turned critical stays registered |
//!
//! # Capabilities
//!
//! - [x] register with a TTL check kept passing by re-registration, deregister
//! - [x] get (passing nodes only), list, watch by blocking queries
//! - [x] metadata and endpoints round-trip (in a tag, as Consul's `Meta` limits keys and values)
//! - [x] ACL token, TLS (rustls)
//!
//! # Tests
//!
//! No Consul server can be installed where this crate is developed. `tests/conformance.rs`
//! therefore runs the core registry suite against an in-test HTTP server that implements the
//! endpoints above as Consul's HTTP API documentation describes them (TTL checks turning
//! critical, `passing` filtering, `X-Consul-Index` and blocking queries, ACL tokens) — and
//! against a real agent instead when `MICRO_TEST_CONSUL_ADDR` is set.

mod api;
mod config;
mod watch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use http::Method;
use rmicro_core::raw::check_registration;
use rmicro_core::raw::plugin::{Build, Plugin, Setting};
use rmicro_core::registry::{Registry, ServiceRecord, Watcher};
use rmicro_core::{Code, Error, Result};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

pub use config::ConsulConfig;

/// The Consul registry as the `rmicro` facade builds it: `MICRO_REGISTRY=consul`, configured by
/// [`ConsulConfig::from_settings`].
pub static PLUGIN: Plugin = Plugin {
    names: &["consul"],
    about: "Consul through the local agent: TTL health checks, blocking-query watch",
    default_address: "127.0.0.1:8500",
    settings: &[&[
        Setting::new("token", "ACL token, sent as X-Consul-Token"),
        Setting::new("tls_ca", "PEM file of the CA that signed the agent's certificate (for https://)"),
        Setting::new("watch_wait", "the longest wait of a blocking query (default 30s)"),
        Setting::new(
            "deregister_critical_after",
            "how long a node whose check turned critical stays registered (default 1m)",
        ),
    ]],
    build: Build::Registry(|settings| {
        Box::pin(async move {
            Ok(Arc::new(ConsulRegistry::connect(ConsulConfig::from_settings(&settings)?).await?) as Arc<dyn Registry>)
        })
    }),
};

use api::{Api, check_id, registration};

const WATCH_BUFFER: usize = 256;

/// The Consul registry.
#[derive(Clone, Debug)]
pub struct ConsulRegistry {
    api: Api,
    watch_wait: Duration,
    deregister_after: Duration,
    registered: Arc<Mutex<HashMap<String, api::Registration>>>,
}

impl ConsulRegistry {
    /// A registry talking to the agent in `config`; nothing is sent until it is used, so an
    /// agent that is not up yet is no error here.
    pub async fn connect(config: ConsulConfig) -> Result<ConsulRegistry> {
        Ok(ConsulRegistry {
            api: Api::new(&config)?,
            watch_wait: config.watch_wait,
            deregister_after: config.deregister_critical_after,
            registered: Arc::default(),
        })
    }

    fn registered(&self) -> std::sync::MutexGuard<'_, HashMap<String, api::Registration>> {
        self.registered.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn register_node(&self, registration: api::Registration) -> Result<()> {
        let id = registration.id.clone();
        let same = self.registered().get(&id) == Some(&registration);
        if same && registration.check.is_some() {
            match self.api.call(Method::PUT, &format!("/v1/agent/check/pass/{}", check_id(&id)), None).await {
                Ok(_) => return Ok(()),
                Err(e) if e.code == Code::NotFound => {
                    tracing::info!(node = %id, "the agent forgot the node; registering it again");
                }
                Err(e) => return Err(e),
            }
        }
        let body = serde_json::to_vec(&registration).map_err(|e| Error::internal(format!("encoding {id}: {e}")))?;
        self.api.call(Method::PUT, "/v1/agent/service/register", Some(body)).await?;
        if registration.check.is_some() {
            self.api.call(Method::PUT, &format!("/v1/agent/check/pass/{}", check_id(&id)), None).await?;
        }
        self.registered().insert(id, registration);
        Ok(())
    }
}

#[async_trait]
impl Registry for ConsulRegistry {
    fn name(&self) -> &'static str {
        "consul"
    }

    async fn register(&self, service: &ServiceRecord, ttl: Option<Duration>) -> Result<()> {
        check_registration(service)?;
        for node in &service.nodes {
            self.register_node(registration(service, node, ttl, self.deregister_after)?).await?;
        }
        Ok(())
    }

    async fn deregister(&self, service: &ServiceRecord) -> Result<()> {
        for node in &service.nodes {
            match self.api.call(Method::PUT, &format!("/v1/agent/service/deregister/{}", node.id), None).await {
                Ok(_) => {}
                Err(e) if e.code == Code::NotFound => {}
                Err(e) => return Err(e),
            }
            self.registered().remove(&node.id);
        }
        Ok(())
    }

    async fn get_service(&self, name: &str) -> Result<Vec<ServiceRecord>> {
        let (nodes, _) = watch::passing(&self.api, name, 0, self.watch_wait).await?;
        let mut by_version: std::collections::BTreeMap<String, ServiceRecord> = std::collections::BTreeMap::new();
        for one in nodes.into_values() {
            let entry = by_version
                .entry(one.version.clone())
                .or_insert_with(|| ServiceRecord { nodes: Vec::new(), ..one.clone() });
            entry.nodes.extend(one.nodes);
        }
        if by_version.is_empty() {
            return Err(Error::not_found(format!("service {name} not found")).with_id("rmicro.registry.consul"));
        }
        Ok(by_version.into_values().collect())
    }

    async fn list_services(&self) -> Result<Vec<ServiceRecord>> {
        let (names, _) = watch::catalog(&self.api, 0, self.watch_wait).await?;
        let mut all = Vec::new();
        for name in names {
            match self.get_service(&name).await {
                Ok(services) => all.extend(services),
                Err(e) if e.code == Code::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        all.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
        Ok(all)
    }

    async fn watch(&self, service: Option<&str>) -> Result<Watcher> {
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        match service {
            Some(name) => {
                let (known, index) = watch::passing(&self.api, name, 0, self.watch_wait).await?;
                tokio::spawn(watch::service(self.api.clone(), name.to_owned(), self.watch_wait, tx, known, index));
            }
            None => {
                let (names, index) = watch::catalog(&self.api, 0, self.watch_wait).await?;
                let mut initial = Vec::new();
                for name in names {
                    let (known, at) = watch::passing(&self.api, &name, 0, self.watch_wait).await?;
                    initial.push((name, known, at));
                }
                tokio::spawn(watch::all(self.api.clone(), self.watch_wait, tx, initial, index));
            }
        }
        Ok(ReceiverStream::new(rx).boxed())
    }
}
