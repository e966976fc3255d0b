//! The registry suite. The factory returns an `Arc<dyn Registry>`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::{eventually, unique};
use crate::error::Code;
use crate::registry::{Endpoint, Event, EventKind, Node, Registry, ServiceRecord, Watcher};

/// How long a registry may take to show a change (mDNS and TTL-based backends are not instant).
const SETTLE: Duration = Duration::from_secs(10);
/// The TTL the expiry checks register with.
const SHORT_TTL: Duration = Duration::from_secs(2);

/// Expands to one `#[tokio::test]` per registry check, each calling `$factory().await` for a
/// fresh `Arc<dyn Registry>`.
#[macro_export]
macro_rules! registry_conformance {
    ($factory:expr) => {
        $crate::__conformance_tests!(
            registry,
            $factory,
            register_then_get,
            list_includes_registered,
            deregister_removes,
            get_unknown_is_not_found,
            metadata_and_endpoints_round_trip,
            nodes_are_kept_apart,
            versions_are_kept_apart,
            watch_sees_register,
            watch_sees_deregister,
            watch_filters_by_service,
            ttl_lapse_removes_node,
            watch_sees_expiry,
            renewal_keeps_node_alive,
            invalid_registration_registers_nothing
        );
    };
}

fn service(name: &str, version: &str, node: &str) -> ServiceRecord {
    ServiceRecord {
        name: name.to_owned(),
        version: version.to_owned(),
        nodes: vec![Node {
            id: node.to_owned(),
            address: format!("127.0.0.1:{}", 10000 + node.len()),
            metadata: BTreeMap::new(),
        }],
        ..ServiceRecord::default()
    }
}

async fn node_ids(registry: &dyn Registry, name: &str) -> Vec<String> {
    let mut ids: Vec<String> = match registry.get_service(name).await {
        Ok(services) => services.iter().flat_map(|s| s.nodes.iter().map(|n| n.id.clone())).collect(),
        Err(_) => Vec::new(),
    };
    ids.sort();
    ids
}

async fn next_event(watcher: &mut Watcher, wanted: impl Fn(&Event) -> bool) -> Event {
    tokio::time::timeout(SETTLE, async {
        loop {
            match watcher.next().await {
                Some(Ok(event)) if wanted(&event) => return event,
                Some(_) => continue,
                None => panic!("the watch ended"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no matching watch event within {SETTLE:?}"))
}

/// A registered node is returned by `get_service` with its address.
pub async fn register_then_get(registry: Arc<dyn Registry>) {
    let name = unique("reg-get");
    let svc = service(&name, "1.0.0", &unique("node"));
    registry.register(&svc, None).await.unwrap();
    eventually(SETTLE, "registered node visible", || async {
        registry
            .get_service(&name)
            .await
            .is_ok_and(|found| found.len() == 1 && found[0].version == "1.0.0" && found[0].nodes == svc.nodes)
    })
    .await;
    registry.deregister(&svc).await.unwrap();
}

/// `list_services` includes a registered service.
pub async fn list_includes_registered(registry: Arc<dyn Registry>) {
    let name = unique("reg-list");
    let svc = service(&name, "1.0.0", &unique("node"));
    registry.register(&svc, None).await.unwrap();
    eventually(SETTLE, "service listed", || async {
        registry.list_services().await.unwrap().iter().any(|s| s.name == name)
    })
    .await;
    registry.deregister(&svc).await.unwrap();
}

/// After `deregister` the service is gone, and deregistering again is not an error.
pub async fn deregister_removes(registry: Arc<dyn Registry>) {
    let name = unique("reg-dereg");
    let svc = service(&name, "1.0.0", &unique("node"));
    registry.register(&svc, None).await.unwrap();
    eventually(SETTLE, "registered", || async { !node_ids(&*registry, &name).await.is_empty() }).await;
    registry.deregister(&svc).await.unwrap();
    eventually(SETTLE, "deregistered service not found", || async {
        registry.get_service(&name).await.is_err_and(|e| e.code == Code::NotFound)
    })
    .await;
    registry.deregister(&svc).await.unwrap();
}

/// An unknown service is a `NotFound` error.
pub async fn get_unknown_is_not_found(registry: Arc<dyn Registry>) {
    let err = registry.get_service(&unique("never-registered")).await.unwrap_err();
    assert_eq!(err.code, Code::NotFound, "{err}");
}

/// Service and node metadata and the endpoints survive the registry.
pub async fn metadata_and_endpoints_round_trip(registry: Arc<dyn Registry>) {
    let name = unique("reg-meta");
    let mut svc = service(&name, "2.1.0", &unique("node"));
    svc.metadata.insert("team".into(), "payments".into());
    svc.nodes[0].metadata.insert("zone".into(), "eu-1".into());
    svc.endpoints = vec![Endpoint {
        name: "Pay.Charge".into(),
        request: "ChargeRequest".into(),
        response: "ChargeReply".into(),
        metadata: [("stream".to_owned(), "true".to_owned())].into(),
    }];
    registry.register(&svc, None).await.unwrap();
    eventually(SETTLE, "service with metadata and endpoints", || async {
        registry.get_service(&name).await.is_ok_and(|found| found == vec![svc.clone()])
    })
    .await;
    registry.deregister(&svc).await.unwrap();
}

/// Two nodes of one service are both returned; deregistering one leaves the other.
pub async fn nodes_are_kept_apart(registry: Arc<dyn Registry>) {
    let name = unique("reg-nodes");
    let (a, b) = (service(&name, "1.0.0", &unique("a")), service(&name, "1.0.0", &unique("bb")));
    registry.register(&a, None).await.unwrap();
    registry.register(&b, None).await.unwrap();
    let mut both = vec![a.nodes[0].id.clone(), b.nodes[0].id.clone()];
    both.sort();
    eventually(SETTLE, "both nodes", || async { node_ids(&*registry, &name).await == both }).await;
    registry.deregister(&a).await.unwrap();
    eventually(SETTLE, "only the second node", || async {
        node_ids(&*registry, &name).await == vec![b.nodes[0].id.clone()]
    })
    .await;
    registry.deregister(&b).await.unwrap();
}

/// Nodes of different versions come back as separate services.
pub async fn versions_are_kept_apart(registry: Arc<dyn Registry>) {
    let name = unique("reg-versions");
    let (v1, v2) = (service(&name, "1.0.0", &unique("n")), service(&name, "2.0.0", &unique("m")));
    registry.register(&v1, None).await.unwrap();
    registry.register(&v2, None).await.unwrap();
    eventually(SETTLE, "two versions", || async {
        registry.get_service(&name).await.is_ok_and(|found| {
            let mut versions: Vec<&str> = found.iter().map(|s| s.version.as_str()).collect();
            versions.sort();
            versions == ["1.0.0", "2.0.0"] && found.iter().all(|s| s.nodes.len() == 1)
        })
    })
    .await;
    registry.deregister(&v1).await.unwrap();
    registry.deregister(&v2).await.unwrap();
}

/// A watcher sees a registration as a `Create` event carrying the node.
pub async fn watch_sees_register(registry: Arc<dyn Registry>) {
    let name = unique("reg-watch");
    let mut watcher = registry.watch(Some(&name)).await.unwrap();
    let svc = service(&name, "1.0.0", &unique("node"));
    registry.register(&svc, None).await.unwrap();
    let event = next_event(&mut watcher, |e| e.kind == EventKind::Create).await;
    assert_eq!(event.service.name, name);
    assert_eq!(event.service.nodes, svc.nodes);
    registry.deregister(&svc).await.unwrap();
}

/// A watcher sees a deregistration as a `Delete` event carrying the node.
pub async fn watch_sees_deregister(registry: Arc<dyn Registry>) {
    let name = unique("reg-watch-del");
    let svc = service(&name, "1.0.0", &unique("node"));
    let mut watcher = registry.watch(Some(&name)).await.unwrap();
    registry.register(&svc, None).await.unwrap();
    next_event(&mut watcher, |e| e.kind == EventKind::Create).await;
    registry.deregister(&svc).await.unwrap();
    let event = next_event(&mut watcher, |e| e.kind == EventKind::Delete).await;
    assert_eq!(event.service.nodes.iter().map(|n| &n.id).collect::<Vec<_>>(), vec![&svc.nodes[0].id]);
}

/// A watcher of one service hears nothing about another.
pub async fn watch_filters_by_service(registry: Arc<dyn Registry>) {
    let (watched, other) = (unique("reg-watched"), unique("reg-other"));
    let mut watcher = registry.watch(Some(&watched)).await.unwrap();
    let (o, w) = (service(&other, "1.0.0", &unique("o")), service(&watched, "1.0.0", &unique("w")));
    registry.register(&o, None).await.unwrap();
    registry.register(&w, None).await.unwrap();
    let event = next_event(&mut watcher, |_| true).await;
    assert_eq!(event.service.name, watched, "first event must be about the watched service");
    registry.deregister(&o).await.unwrap();
    registry.deregister(&w).await.unwrap();
}

/// A node registered with a TTL and never renewed disappears once the TTL lapses.
pub async fn ttl_lapse_removes_node(registry: Arc<dyn Registry>) {
    let name = unique("reg-ttl");
    let svc = service(&name, "1.0.0", &unique("node"));
    registry.register(&svc, Some(SHORT_TTL)).await.unwrap();
    eventually(SETTLE, "registered", || async { !node_ids(&*registry, &name).await.is_empty() }).await;
    eventually(SHORT_TTL + SETTLE, "node gone after its TTL", || async {
        registry.get_service(&name).await.is_err_and(|e| e.code == Code::NotFound)
    })
    .await;
}

/// A watcher sees a lapsed TTL as a `Delete` event.
pub async fn watch_sees_expiry(registry: Arc<dyn Registry>) {
    let name = unique("reg-ttl-watch");
    let mut watcher = registry.watch(Some(&name)).await.unwrap();
    let svc = service(&name, "1.0.0", &unique("node"));
    registry.register(&svc, Some(SHORT_TTL)).await.unwrap();
    next_event(&mut watcher, |e| e.kind == EventKind::Create).await;
    let event = next_event(&mut watcher, |e| e.kind == EventKind::Delete).await;
    assert_eq!(event.service.nodes[0].id, svc.nodes[0].id);
}

/// Registering again within the TTL keeps the node alive past its first TTL.
pub async fn renewal_keeps_node_alive(registry: Arc<dyn Registry>) {
    let name = unique("reg-renew");
    let svc = service(&name, "1.0.0", &unique("node"));
    registry.register(&svc, Some(SHORT_TTL)).await.unwrap();
    for _ in 0..8 {
        tokio::time::sleep(SHORT_TTL / 4).await;
        registry.register(&svc, Some(SHORT_TTL)).await.unwrap();
    }
    assert_eq!(node_ids(&*registry, &name).await, vec![svc.nodes[0].id.clone()], "renewed node must still be there");
    registry.deregister(&svc).await.unwrap();
}

/// A registration with a node without an id, or of a service without a name, is a
/// `BadRequest` and registers nothing: not even the valid nodes before the bad one.
pub async fn invalid_registration_registers_nothing(registry: Arc<dyn Registry>) {
    let name = unique("reg-invalid");
    let good = service(&name, "1.0.0", &unique("node"));
    let mut half = good.clone();
    half.nodes.push(Node { id: String::new(), address: "127.0.0.1:10999".into(), metadata: BTreeMap::new() });
    let err = registry.register(&half, None).await.unwrap_err();
    assert_eq!(err.code, Code::BadRequest, "{err}");
    let found = registry.get_service(&name).await;
    registry.deregister(&good).await.unwrap();
    match found {
        Ok(services) => {
            assert!(services.iter().all(|s| s.nodes.is_empty()), "registered despite the error: {services:?}")
        }
        Err(e) => assert_eq!(e.code, Code::NotFound, "{e}"),
    }
    let err = registry.register(&service("", "1.0.0", &unique("node")), None).await.unwrap_err();
    assert_eq!(err.code, Code::BadRequest, "{err}");
}
