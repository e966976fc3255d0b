//! The registry-backed selector: a cache of services kept current by the registry's watch.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;
use foldhash::HashMap;
use futures::StreamExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::breaker::{BreakerPolicy, Breakers, CircuitState, is_node_failure};
use super::{Outcome, Random, SelectOptions, Selector, Strategy, nodes_of};
use crate::error::{Code, Error, Result};
use crate::registry::{Event, EventKind, Node, Registry, ServiceRecord, Watcher};

/// How long cached services are trusted without a refresh when no watch event arrived.
const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);
/// Wait before watching again after the registry's watch failed.
const REWATCH_DELAY: Duration = Duration::from_secs(1);

/// Selects nodes from a registry through a cache fed by the registry's watch.
///
/// When the registry cannot be reached, calls go on to the nodes already known (and the error is
/// logged); the cache catches up when the registry returns.
#[derive(Clone, Debug)]
pub struct RegistrySelector {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Arc<dyn Registry>,
    strategy: Arc<dyn Strategy>,
    cache_ttl: Duration,
    cache: Mutex<HashMap<String, Cached>>,
    breakers: Breakers,
    watch_started: tokio::sync::OnceCell<()>,
    stop_watch: CancellationToken,
}

#[derive(Debug)]
struct Cached {
    known: CachedService,
    fresh_until: Instant,
}

/// A service's versions and all their nodes, shared so that a call's selection copies neither.
#[derive(Clone, Debug)]
struct CachedService {
    services: Arc<Vec<ServiceRecord>>,
    nodes: Arc<Vec<Arc<Node>>>,
}

impl CachedService {
    fn new(services: Vec<ServiceRecord>) -> CachedService {
        let nodes = Arc::new(nodes_of(&services));
        CachedService { services: Arc::new(services), nodes }
    }
}

impl RegistrySelector {
    /// A selector over `registry` picking nodes at random.
    pub fn new(registry: Arc<dyn Registry>) -> RegistrySelector {
        RegistrySelector::builder(registry).build()
    }

    /// A builder to choose the strategy, cache TTL and breaker policy.
    pub fn builder(registry: Arc<dyn Registry>) -> RegistrySelectorBuilder {
        RegistrySelectorBuilder {
            registry,
            strategy: Arc::new(Random),
            cache_ttl: DEFAULT_CACHE_TTL,
            breaker: BreakerPolicy::default(),
        }
    }
}

/// Builds a [`RegistrySelector`].
#[derive(Debug)]
pub struct RegistrySelectorBuilder {
    registry: Arc<dyn Registry>,
    strategy: Arc<dyn Strategy>,
    cache_ttl: Duration,
    breaker: BreakerPolicy,
}

impl RegistrySelectorBuilder {
    /// How a node is picked among the candidates (default [`Random`]).
    pub fn strategy(mut self, strategy: impl Strategy) -> RegistrySelectorBuilder {
        self.strategy = Arc::new(strategy);
        self
    }

    /// How long cached services are used before being read again (default 60 s).
    pub fn cache_ttl(mut self, ttl: Duration) -> RegistrySelectorBuilder {
        self.cache_ttl = ttl;
        self
    }

    /// When a failing node's circuit opens and for how long.
    pub fn breaker(mut self, policy: BreakerPolicy) -> RegistrySelectorBuilder {
        self.breaker = policy;
        self
    }

    /// The selector.
    pub fn build(self) -> RegistrySelector {
        RegistrySelector {
            inner: Arc::new(Inner {
                registry: self.registry,
                strategy: self.strategy,
                cache_ttl: self.cache_ttl,
                cache: Mutex::default(),
                breakers: Breakers::new(self.breaker),
                watch_started: tokio::sync::OnceCell::new(),
                stop_watch: CancellationToken::new(),
            }),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop_watch.cancel();
    }
}

impl Inner {
    fn cache(&self) -> MutexGuard<'_, HashMap<String, Cached>> {
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn services(&self, name: &str) -> Result<CachedService> {
        if let Some(cached) = self.cache().get(name).filter(|c| c.fresh_until > Instant::now()) {
            return Ok(cached.known.clone());
        }
        match self.registry.get_service(name).await {
            Ok(services) => {
                let (known, fresh_until) = (CachedService::new(services), Instant::now() + self.cache_ttl);
                self.cache().insert(name.to_owned(), Cached { known: known.clone(), fresh_until });
                Ok(known)
            }
            Err(e) if e.code == Code::NotFound => {
                self.cache().remove(name);
                Err(no_nodes(name, "not registered"))
            }
            Err(e) => match self.cache().get(name) {
                Some(stale) => {
                    tracing::warn!(service = name, error = %e, "registry unreachable; using the nodes already known");
                    Ok(stale.known.clone())
                }
                None => {
                    Err(Error::unavailable(format!("service {name}: registry error: {e}")).with_id("rmicro.selector"))
                }
            },
        }
    }

    /// Applies a watch event to the cached services it concerns. A service left with no node is
    /// dropped from the cache rather than cached empty: its next call reads the registry, which
    /// may already hold the node again (etcd restarted empty and the server re-registered) while
    /// this watch has yet to report it.
    fn apply(&self, event: Event) {
        let mut cache = self.cache();
        let Some(cached) = cache.get_mut(&event.service.name) else { return };
        let changed = event.service;
        let services = Arc::make_mut(&mut cached.known.services);
        let position = services.iter().position(|s| s.version == changed.version);
        match (event.kind, position) {
            (EventKind::Create | EventKind::Update, Some(i)) => {
                let service = &mut services[i];
                for node in &changed.nodes {
                    service.nodes.retain(|n| n.id != node.id);
                    service.nodes.push(node.clone());
                }
                service.metadata = changed.metadata;
                service.endpoints = changed.endpoints;
            }
            (EventKind::Create | EventKind::Update, None) => services.push(changed),
            (EventKind::Delete, Some(i)) => {
                services[i].nodes.retain(|n| !changed.nodes.iter().any(|gone| gone.id == n.id));
                services.retain(|s| !s.nodes.is_empty());
                if services.is_empty() {
                    cache.remove(&changed.name);
                    return;
                }
            }
            (EventKind::Delete, None) => {}
        }
        cached.known.nodes = Arc::new(nodes_of(services));
    }

    /// After a broken watch the cache may be missing changes: read the registry on next use,
    /// but keep the entries as a fallback should it be unreachable.
    fn mark_stale(&self) {
        let now = Instant::now();
        for cached in self.cache().values_mut() {
            cached.fresh_until = now;
        }
    }
}

fn no_nodes(service: &str, why: &str) -> Error {
    Error::unavailable(format!("service {service}: no node available ({why})")).with_id("rmicro.selector").unsent()
}

/// Applies the registry's changes to the cache until the selector is dropped, watching again
/// whenever the watch breaks. `first` is the watch opened before the first read of the registry,
/// so no change between that read and the watch is missed.
async fn keep_watching(inner: Weak<Inner>, stop: CancellationToken, first: Result<Watcher>) {
    let mut next_watch = Some(first);
    loop {
        let Some(registry) = inner.upgrade().map(|i| i.registry.clone()) else { return };
        let watched = match next_watch.take() {
            Some(first) => first,
            None => tokio::select! {
                _ = stop.cancelled() => return,
                watched = registry.watch(None) => watched,
            },
        };
        match watched {
            Ok(mut events) => loop {
                let item = tokio::select! {
                    _ = stop.cancelled() => return,
                    item = events.next() => item,
                };
                let Some(inner) = inner.upgrade() else { return };
                match item {
                    Some(Ok(event)) => inner.apply(event),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "registry watch reported missed changes");
                        inner.mark_stale();
                    }
                    None => break,
                }
            },
            Err(e) => tracing::warn!(error = %e, registry = registry.name(), "cannot watch the registry"),
        }
        if let Some(inner) = inner.upgrade() {
            inner.mark_stale();
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(REWATCH_DELAY) => {}
        }
    }
}

impl RegistrySelector {
    /// The state of `node`'s circuit.
    pub fn circuit(&self, service: &str, node: &str) -> CircuitState {
        self.inner.breakers.state(service, node)
    }

    /// The nodes a call may go to: filtered, circuits admitting, untried where possible. In the
    /// common case (no filters, every circuit closed, nothing tried yet) that is the cached list
    /// itself, shared, not copied.
    async fn candidates(&self, service: &str, options: &SelectOptions) -> Result<Arc<Vec<Arc<Node>>>> {
        let inner = &self.inner;
        inner
            .watch_started
            .get_or_init(|| async {
                let first = inner.registry.watch(None).await;
                tokio::spawn(keep_watching(Arc::downgrade(inner), inner.stop_watch.clone(), first));
            })
            .await;
        let known = inner.services(service).await?;
        let matching = if options.filters.is_empty() {
            known.nodes
        } else {
            let mut services = known.services.as_ref().clone();
            for filter in &options.filters {
                services = filter.apply(services);
            }
            Arc::new(nodes_of(&services))
        };
        if matching.is_empty() {
            return Err(no_nodes(service, "none matches the filters"));
        }
        let admits = |n: &Arc<Node>| inner.breakers.admits(service, &n.id);
        if options.tried.is_empty() && matching.iter().all(admits) {
            return Ok(matching);
        }
        let admitted: Vec<Arc<Node>> = matching.iter().filter(|n| admits(n)).cloned().collect();
        if admitted.is_empty() {
            return Err(no_nodes(service, "every node's circuit is open"));
        }
        let untried: Vec<Arc<Node>> = admitted.iter().filter(|n| !options.tried.contains(&n.id)).cloned().collect();
        Ok(Arc::new(if untried.is_empty() { admitted } else { untried }))
    }
}

#[async_trait]
impl Selector for RegistrySelector {
    async fn select(&self, service: &str, options: &SelectOptions) -> Result<Arc<Node>> {
        let candidates = self.candidates(service, options).await?;
        let node = self.inner.strategy.pick(service, &candidates, options);
        self.inner.breakers.on_pick(service, &node.id);
        Ok(node.clone())
    }

    async fn select_all(&self, service: &str, options: &SelectOptions) -> Result<Vec<Arc<Node>>> {
        let candidates = self.candidates(service, options).await?;
        for node in candidates.iter() {
            self.inner.breakers.on_pick(service, &node.id);
        }
        Ok(candidates.as_ref().clone())
    }

    fn mark(&self, service: &str, node: &Node, outcome: &Outcome) {
        let failed = outcome.result.as_ref().map(|r| r.as_ref().err().is_some_and(is_node_failure));
        self.inner.breakers.record(service, &node.id, failed);
        self.inner.strategy.observe(service, node, outcome);
    }

    fn reset(&self, service: &str) {
        self.inner.cache().remove(service);
        self.inner.breakers.reset(service);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::MemoryRegistry;

    #[tokio::test]
    async fn a_service_whose_last_node_was_reported_gone_is_read_again_from_the_registry() {
        let registry = Arc::new(MemoryRegistry::new());
        let node = Node { id: "pinger-1".into(), address: "127.0.0.1:9".into(), ..Node::default() };
        let service = ServiceRecord { name: "pinger".into(), nodes: vec![node], ..ServiceRecord::default() };
        registry.register(&service, None).await.unwrap();
        let selector = RegistrySelector::new(registry.clone());
        selector.select("pinger", &SelectOptions::default()).await.unwrap();

        selector.inner.apply(Event { kind: EventKind::Delete, service: service.clone() });

        let picked = selector.select("pinger", &SelectOptions::default()).await;
        assert_eq!(picked.expect("the registry still holds the node").id, "pinger-1");
    }

    #[tokio::test]
    async fn calls_share_the_cached_node_rather_than_copy_its_labels() {
        let registry = Arc::new(MemoryRegistry::new());
        let labels = [("transport", "tcp"), ("zone", "eu-1")].map(|(k, v)| (k.to_owned(), v.to_owned()));
        let node = Node { id: "labelled-1".into(), address: "127.0.0.1:9".into(), metadata: labels.into() };
        let service = ServiceRecord { name: "labelled".into(), nodes: vec![node.clone()], ..ServiceRecord::default() };
        registry.register(&service, None).await.unwrap();
        let selector = RegistrySelector::new(registry);

        let first = selector.select("labelled", &SelectOptions::default()).await.unwrap();
        let second = selector.select("labelled", &SelectOptions::default()).await.unwrap();

        assert_eq!(*first, node);
        assert!(Arc::ptr_eq(&first, &second), "both calls got the cached node itself");
    }
}
