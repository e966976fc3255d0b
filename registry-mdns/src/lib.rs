//! Zero-configuration service discovery over multicast DNS (DNS-SD), rmicro's default registry:
//! services find each other with no server to run.
//!
//! Each node is announced as an instance of `_micro._tcp.local` whose TXT record carries the
//! service record (name, version, metadata, endpoints, node id, address and labels). Every
//! registry listens to announcements, keeps a cache, and reports changes to watchers; a node
//! that is not announced again within its TTL (its process died without deregistering) leaves
//! every cache when the TTL lapses. Deregistering sends a goodbye (TTL 0).
//!
//! Multicast goes only out of the interfaces you choose, identified by their IPv4 address:
//! by default the loopback interface alone, so nothing leaves the machine. The socket joins the
//! mDNS group only on those interfaces, and every datagram is sent with the outgoing interface
//! set to one of them.
//!
//! # Example
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use rmicro_core::prelude::*;
//! use rmicro_registry_mdns::{MdnsConfig, MdnsRegistry};
//!
//! # async fn demo() -> Result<(), Error> {
//! let registry = MdnsRegistry::connect(MdnsConfig::default()).await?; // loopback only
//! let service = Service::builder("greeter").registry(Arc::new(registry)).build();
//! # Ok(()) }
//! ```
//!
//! # Configuration
//!
//! [`MdnsConfig`], in code or from settings ([`MdnsConfig::from_env`], [`MdnsConfig::from_settings`]);
//! the `rmicro` facade builds the registry through [`PLUGIN`] with `MICRO_REGISTRY=mdns`.
//!
//! | Field | Environment | Default | |
//! |---|---|---|---|
//! | [`interfaces`](MdnsConfig::interfaces) | `MICRO_REGISTRY_ADDRESS` | `127.0.0.1` | IPv4 addresses of the interfaces to use, comma-separated |
//! | [`port`](MdnsConfig::port) | `MICRO_REGISTRY_PORT` | 5353 | the mDNS port |
//! | [`query_wait`](MdnsConfig::query_wait) | `MICRO_REGISTRY_QUERY_WAIT` | 300 ms | how long the first lookup waits for answers (`1.5`, `250ms`, `2s`) |
//!
//! On Linux the loopback interface does not do multicast until told to:
//! `ip link set lo multicast on`.
//!
//! # Capabilities
//!
//! - [x] register with TTL, deregister (goodbye), get, list, watch (create/update/delete)
//! - [x] TTL expiry of nodes that vanish, in every cache
//! - [x] interface choice, loopback only by default
//! - [ ] IPv6 (not yet)
//!
//! # Tests
//!
//! `tests/conformance.rs` runs the core registry suite. The project's test script runs it inside
//! a private network namespace (`unshare -rn`, with `lo` up and multicast on), so no multicast
//! leaves the test even by mistake.

mod config;
mod records;
mod socket;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;
use rmicro_core::raw::plugin::{Build, Plugin, Setting};
use rmicro_core::raw::{broadcast_watcher, check_registration};
use rmicro_core::registry::{Event, EventKind, Registry, ServiceRecord, Watcher};
use rmicro_core::{Error, Result};
use tokio::sync::{OnceCell, broadcast};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use records::{announcement, instance_name, parse, query};
use socket::MulticastSocket;

pub use config::MdnsConfig;

/// The mDNS registry as the `rmicro` facade builds it: `MICRO_REGISTRY=mdns`, configured by
/// [`MdnsConfig::from_settings`].
pub static PLUGIN: Plugin = Plugin {
    names: &["mdns"],
    about: "multicast DNS (DNS-SD) discovery with no server, on the chosen interfaces (loopback by default)",
    default_address: "127.0.0.1",
    settings: &[&[
        Setting::new("port", "the UDP port (default 5353)"),
        Setting::new("query_wait", "how long the first lookup waits for answers (default 300ms)"),
    ]],
    build: Build::Registry(|settings| {
        Box::pin(async move {
            Ok(Arc::new(MdnsRegistry::connect(MdnsConfig::from_settings(&settings)?).await?) as Arc<dyn Registry>)
        })
    }),
};

/// The TTL announced for nodes registered without one; they are announced again at half of it.
const DEFAULT_TTL: Duration = Duration::from_secs(120);
const WATCH_BUFFER: usize = 1024;
const TICK: Duration = Duration::from_millis(100);

/// The mDNS registry.
#[derive(Clone, Debug)]
pub struct MdnsRegistry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    socket: MulticastSocket,
    query_wait: Duration,
    /// Nodes this registry announces: instance -> (service with one node, TTL, expiry or next re-announcement).
    local: Mutex<HashMap<String, Local>>,
    /// Nodes heard of: instance -> (service with one node, expiry).
    cache: Mutex<HashMap<String, (ServiceRecord, Instant)>>,
    events: broadcast::Sender<Event>,
    primed: OnceCell<()>,
    stop: CancellationToken,
}

#[derive(Debug, Clone)]
struct Local {
    service: ServiceRecord,
    ttl: Option<Duration>,
    /// When a node with a TTL lapses, or when a node without one is announced again.
    due: Instant,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl MdnsRegistry {
    /// Opens the socket on the configured interfaces and starts listening; nothing is sent
    /// until the registry is used.
    pub async fn connect(config: MdnsConfig) -> Result<MdnsRegistry> {
        if config.interfaces.is_empty() {
            return Err(Error::bad_request("mDNS needs at least one interface"));
        }
        let socket = MulticastSocket::bind(config.interfaces.clone(), config.port).map_err(|e| {
            Error::unavailable(format!("mDNS socket on {:?} port {}: {e}", config.interfaces, config.port))
                .with_id("rmicro.registry.mdns")
        })?;
        let inner = Arc::new(Inner {
            socket,
            query_wait: config.query_wait,
            local: Mutex::default(),
            cache: Mutex::default(),
            events: broadcast::channel(WATCH_BUFFER).0,
            primed: OnceCell::new(),
            stop: CancellationToken::new(),
        });
        tokio::spawn(listen(Arc::downgrade(&inner), inner.stop.clone()));
        tokio::spawn(tick(Arc::downgrade(&inner), inner.stop.clone()));
        Ok(MdnsRegistry { inner })
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Inner {
    fn emit(&self, kind: EventKind, service: ServiceRecord) {
        let _ = self.events.send(Event { kind, service });
    }

    /// Records what was heard of `instance`; `None` or a zero TTL means it is gone.
    fn heard(&self, instance: String, service: Option<ServiceRecord>, ttl: Duration) {
        let mut cache = lock(&self.cache);
        match service.filter(|_| !ttl.is_zero()) {
            Some(service) => {
                let expires = Instant::now() + ttl;
                match cache.insert(instance, (service.clone(), expires)) {
                    None => {
                        drop(cache);
                        self.emit(EventKind::Create, service);
                    }
                    Some((old, _)) if old != service => {
                        drop(cache);
                        self.emit(EventKind::Update, service);
                    }
                    Some(_) => {}
                }
            }
            None => {
                if let Some((gone, _)) = cache.remove(&instance) {
                    drop(cache);
                    self.emit(EventKind::Delete, gone);
                }
            }
        }
    }

    async fn announce(&self, entries: &[(String, ServiceRecord)], ttl: Duration) {
        match announcement(entries, ttl) {
            Some(datagram) => self.socket.send(&datagram).await,
            None => tracing::warn!("cannot encode an mDNS announcement"),
        }
    }

    /// Answers a query with every node this registry announces.
    async fn answer(&self) {
        let now = Instant::now();
        let entries: Vec<(String, ServiceRecord, Duration)> = lock(&self.local)
            .iter()
            .filter(|(_, l)| l.ttl.is_none() || l.due > now)
            .map(|(i, l)| (i.clone(), l.service.clone(), l.ttl.map_or(DEFAULT_TTL, |_| l.due - now)))
            .collect();
        for (instance, service, ttl) in entries {
            self.announce(&[(instance, service)], ttl.max(Duration::from_secs(1))).await;
        }
    }

    /// Sends one query and waits for answers, once per registry: later lookups read the cache,
    /// which announcements keep current.
    async fn prime(&self) {
        self.primed
            .get_or_init(|| async {
                if let Some(datagram) = query() {
                    self.socket.send(&datagram).await;
                }
                tokio::time::sleep(self.query_wait).await;
            })
            .await;
    }

    fn services(&self, name: Option<&str>) -> Vec<ServiceRecord> {
        let now = Instant::now();
        let mut by_version: BTreeMap<(String, String), ServiceRecord> = BTreeMap::new();
        for (service, expires) in lock(&self.cache).values() {
            if *expires <= now || name.is_some_and(|n| n != service.name) {
                continue;
            }
            let entry = by_version
                .entry((service.name.clone(), service.version.clone()))
                .or_insert_with(|| ServiceRecord { nodes: Vec::new(), ..service.clone() });
            entry.nodes.extend(service.nodes.iter().cloned());
        }
        by_version.into_values().collect()
    }
}

/// Reads datagrams: answers queries, learns announcements.
async fn listen(inner: Weak<Inner>, stop: CancellationToken) {
    let mut buf = vec![0u8; 65536];
    loop {
        let Some(strong) = inner.upgrade() else { return };
        let received = tokio::select! {
            _ = stop.cancelled() => return,
            received = strong.socket.recv(&mut buf) => received,
        };
        let n = match received {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "mDNS receive failed");
                tokio::time::sleep(TICK).await;
                continue;
            }
        };
        let Some(packet) = parse(&buf[..n]) else { continue };
        if packet.asks {
            strong.answer().await;
        }
        for (instance, service, ttl) in packet.announced {
            strong.heard(instance, service, ttl);
        }
    }
}

/// Expires what lapsed, locally and in the cache, and re-announces nodes registered without a TTL.
async fn tick(inner: Weak<Inner>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(TICK) => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        let now = Instant::now();
        let mut renew = Vec::new();
        lock(&inner.local).retain(|instance, local| match local.ttl {
            Some(_) => local.due > now,
            None => {
                if local.due <= now {
                    local.due = now + DEFAULT_TTL / 2;
                    renew.push((instance.clone(), local.service.clone()));
                }
                true
            }
        });
        if !renew.is_empty() {
            inner.announce(&renew, DEFAULT_TTL).await;
        }
        let expired: Vec<String> =
            lock(&inner.cache).iter().filter(|(_, (_, expires))| *expires <= now).map(|(i, _)| i.clone()).collect();
        for instance in expired {
            inner.heard(instance, None, Duration::ZERO);
        }
    }
}

/// The service split into one record per node.
fn per_node(service: &ServiceRecord) -> Vec<(String, ServiceRecord)> {
    service
        .nodes
        .iter()
        .map(|node| {
            let one = ServiceRecord { nodes: vec![node.clone()], ..service.clone() };
            (instance_name(&one), one)
        })
        .collect()
}

#[async_trait]
impl Registry for MdnsRegistry {
    fn name(&self) -> &'static str {
        "mdns"
    }

    async fn register(&self, service: &ServiceRecord, ttl: Option<Duration>) -> Result<()> {
        check_registration(service)?;
        let entries = per_node(service);
        let now = Instant::now();
        let due = now + ttl.unwrap_or(DEFAULT_TTL / 2);
        {
            let mut local = lock(&self.inner.local);
            for (instance, one) in &entries {
                local.insert(instance.clone(), Local { service: one.clone(), ttl, due });
            }
        }
        let announced_ttl = ttl.unwrap_or(DEFAULT_TTL);
        for (instance, one) in &entries {
            self.inner.heard(instance.clone(), Some(one.clone()), announced_ttl);
        }
        self.inner.announce(&entries, announced_ttl).await;
        Ok(())
    }

    async fn deregister(&self, service: &ServiceRecord) -> Result<()> {
        let entries = per_node(service);
        {
            let mut local = lock(&self.inner.local);
            for (instance, _) in &entries {
                local.remove(instance);
            }
        }
        for (instance, _) in &entries {
            self.inner.heard(instance.clone(), None, Duration::ZERO);
        }
        self.inner.announce(&entries, Duration::ZERO).await;
        Ok(())
    }

    async fn get_service(&self, name: &str) -> Result<Vec<ServiceRecord>> {
        self.inner.prime().await;
        let found = self.inner.services(Some(name));
        if found.is_empty() {
            return Err(Error::not_found(format!("service {name} not found")).with_id("rmicro.registry.mdns"));
        }
        Ok(found)
    }

    async fn list_services(&self) -> Result<Vec<ServiceRecord>> {
        self.inner.prime().await;
        Ok(self.inner.services(None))
    }

    async fn watch(&self, service: Option<&str>) -> Result<Watcher> {
        Ok(broadcast_watcher(self.inner.events.subscribe(), service))
    }
}
