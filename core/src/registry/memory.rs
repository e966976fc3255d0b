//! An in-process registry with TTL expiry and watch, for tests and single-process programs.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Notify, broadcast};
use tokio::time::Instant;

use super::{Capabilities, Event, EventKind, Node, Registry, ServiceRecord, Watcher};
use crate::error::{Error, Result};
use crate::raw::{broadcast_watcher, check_registration};

const WATCH_BUFFER: usize = 1024;

/// The in-memory registry. Clones share one set of services.
#[derive(Clone, Debug)]
pub struct MemoryRegistry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    services: Mutex<HashMap<String, BTreeMap<String, Record>>>,
    events: broadcast::Sender<Event>,
    expiry_changed: Notify,
    reaper_started: std::sync::Once,
}

/// One service version: its description and its live nodes with their expiry times.
#[derive(Debug)]
struct Record {
    service: ServiceRecord,
    nodes: BTreeMap<String, (Node, Option<Instant>)>,
}

impl Record {
    fn with_nodes<'a>(&self, nodes: impl IntoIterator<Item = &'a Node>) -> ServiceRecord {
        ServiceRecord { nodes: nodes.into_iter().cloned().collect(), ..self.service.clone() }
    }

    fn live(&self, now: Instant) -> ServiceRecord {
        self.with_nodes(self.nodes.values().filter(|(_, exp)| exp.is_none_or(|e| e > now)).map(|(n, _)| n))
    }
}

impl Default for MemoryRegistry {
    fn default() -> MemoryRegistry {
        MemoryRegistry::new()
    }
}

impl MemoryRegistry {
    /// An empty registry.
    pub fn new() -> MemoryRegistry {
        MemoryRegistry {
            inner: Arc::new(Inner {
                services: Mutex::default(),
                events: broadcast::channel(WATCH_BUFFER).0,
                expiry_changed: Notify::new(),
                reaper_started: std::sync::Once::new(),
            }),
        }
    }

    /// Starts, once, the task that removes expired nodes and tells watchers; it ends with the
    /// registry.
    fn start_reaper(&self) {
        let inner = Arc::downgrade(&self.inner);
        self.inner.reaper_started.call_once(|| {
            tokio::spawn(reap(inner));
        });
    }
}

impl Inner {
    fn services(&self) -> MutexGuard<'_, HashMap<String, BTreeMap<String, Record>>> {
        self.services.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn emit(&self, kind: EventKind, service: ServiceRecord) {
        if !service.nodes.is_empty() {
            let _ = self.events.send(Event { kind, service });
        }
    }

    /// Removes nodes whose TTL has passed and returns when the next one will.
    fn expire(&self, now: Instant) -> Option<Instant> {
        let mut services = self.services();
        let mut next = None::<Instant>;
        for versions in services.values_mut() {
            for record in versions.values_mut() {
                let expired: Vec<Node> = record
                    .nodes
                    .values()
                    .filter(|(_, exp)| exp.is_some_and(|e| e <= now))
                    .map(|(n, _)| n.clone())
                    .collect();
                for node in &expired {
                    record.nodes.remove(&node.id);
                }
                self.emit(EventKind::Delete, record.with_nodes(&expired));
                for exp in record.nodes.values().filter_map(|(_, exp)| *exp) {
                    next = Some(next.map_or(exp, |n| n.min(exp)));
                }
            }
            versions.retain(|_, r| !r.nodes.is_empty());
        }
        services.retain(|_, versions| !versions.is_empty());
        next
    }
}

/// Removes expired nodes as they expire. Wakes at least once a second, so it notices (and ends
/// with) a dropped registry.
async fn reap(inner: Weak<Inner>) {
    while let Some(inner) = inner.upgrade() {
        let now = Instant::now();
        let latest = now + Duration::from_secs(1);
        let wake_at = inner.expire(now).map_or(latest, |next| next.min(latest));
        tokio::select! {
            _ = tokio::time::sleep_until(wake_at) => {}
            _ = inner.expiry_changed.notified() => {}
        }
    }
}

#[async_trait]
impl Registry for MemoryRegistry {
    fn name(&self) -> &'static str {
        "memory"
    }

    /// Registrations live in this process only.
    fn capabilities(&self) -> Capabilities {
        Capabilities { shared: false }
    }

    async fn register(&self, service: &ServiceRecord, ttl: Option<Duration>) -> Result<()> {
        check_registration(service)?;
        if ttl.is_some() {
            self.start_reaper();
        }
        let expires = ttl.map(|ttl| Instant::now() + ttl);
        let mut services = self.inner.services();
        let record = services
            .entry(service.name.clone())
            .or_default()
            .entry(service.version.clone())
            .or_insert_with(|| Record { service: ServiceRecord::default(), nodes: BTreeMap::new() });
        let described_changed = record.service != ServiceRecord { nodes: vec![], ..service.clone() };
        record.service = ServiceRecord { nodes: vec![], ..service.clone() };
        let (mut created, mut updated) = (Vec::new(), Vec::new());
        for node in &service.nodes {
            match record.nodes.insert(node.id.clone(), (node.clone(), expires)) {
                None => created.push(node),
                Some((old, _)) if described_changed || old != *node => updated.push(node),
                Some(_) => {}
            }
        }
        let (created, updated) = (record.with_nodes(created), record.with_nodes(updated));
        drop(services);
        self.inner.emit(EventKind::Create, created);
        self.inner.emit(EventKind::Update, updated);
        self.inner.expiry_changed.notify_one();
        Ok(())
    }

    async fn deregister(&self, service: &ServiceRecord) -> Result<()> {
        let mut services = self.inner.services();
        let Some(versions) = services.get_mut(&service.name) else { return Ok(()) };
        let Some(record) = versions.get_mut(&service.version) else { return Ok(()) };
        let removed: Vec<Node> =
            service.nodes.iter().filter_map(|n| record.nodes.remove(&n.id)).map(|(n, _)| n).collect();
        let event = record.with_nodes(&removed);
        if record.nodes.is_empty() {
            versions.remove(&service.version);
        }
        if versions.is_empty() {
            services.remove(&service.name);
        }
        drop(services);
        self.inner.emit(EventKind::Delete, event);
        Ok(())
    }

    async fn get_service(&self, name: &str) -> Result<Vec<ServiceRecord>> {
        let now = Instant::now();
        let found: Vec<ServiceRecord> = self
            .inner
            .services()
            .get(name)
            .into_iter()
            .flat_map(|versions| versions.values().map(|r| r.live(now)))
            .filter(|s| !s.nodes.is_empty())
            .collect();
        if found.is_empty() {
            return Err(Error::not_found(format!("service {name} not found")).with_id("rmicro.registry"));
        }
        Ok(found)
    }

    async fn list_services(&self) -> Result<Vec<ServiceRecord>> {
        let now = Instant::now();
        let services = self.inner.services();
        let mut all: Vec<ServiceRecord> = services
            .values()
            .flat_map(|versions| versions.values().map(|r| r.live(now)))
            .filter(|s| !s.nodes.is_empty())
            .collect();
        all.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
        Ok(all)
    }

    async fn watch(&self, service: Option<&str>) -> Result<Watcher> {
        Ok(broadcast_watcher(self.inner.events.subscribe(), service))
    }
}
