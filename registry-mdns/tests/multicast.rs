//! Two registries in one host (separate sockets, as separate processes would have) find each
//! other's nodes over loopback multicast: by query, by announcement, by goodbye and by TTL lapse.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::StreamExt;
use rmicro_core::registry::{EventKind, Node, Registry, ServiceRecord};
use rmicro_core::testkit::{eventually, unique};
use rmicro_registry_mdns::{MdnsConfig, MdnsRegistry};

fn service(name: &str) -> ServiceRecord {
    ServiceRecord {
        name: name.to_owned(),
        version: "1.0.0".into(),
        nodes: vec![Node { id: unique("node"), address: "127.0.0.1:9000".into(), ..Node::default() }],
        ..ServiceRecord::default()
    }
}

async fn registry() -> MdnsRegistry {
    MdnsRegistry::connect(MdnsConfig::default()).await.expect("mDNS socket on loopback")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_learns_existing_nodes_by_query() {
    let (a, name) = (registry().await, unique("svc"));
    let svc = service(&name);
    a.register(&svc, None).await.unwrap();
    let b = registry().await;
    let found = b.get_service(&name).await.expect("found through the query answer");
    assert_eq!(found[0].nodes, svc.nodes);
    a.deregister(&svc).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_elsewhere_see_announcements_and_goodbyes() {
    let (a, b, name) = (registry().await, registry().await, unique("svc"));
    let mut watcher = b.watch(Some(&name)).await.unwrap();
    let svc = service(&name);
    a.register(&svc, Some(Duration::from_secs(30))).await.unwrap();
    let created = tokio::time::timeout(Duration::from_secs(5), watcher.next()).await.unwrap().unwrap().unwrap();
    assert_eq!((created.kind, created.service.nodes.clone()), (EventKind::Create, svc.nodes.clone()));
    a.deregister(&svc).await.unwrap();
    let deleted = tokio::time::timeout(Duration::from_secs(5), watcher.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(deleted.kind, EventKind::Delete);
    assert!(b.get_service(&name).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_vanishes_lapses_with_its_ttl_elsewhere() {
    let (a, b, name) = (registry().await, registry().await, unique("svc"));
    let mut watcher = b.watch(Some(&name)).await.unwrap();
    a.register(&service(&name), Some(Duration::from_secs(2))).await.unwrap();
    eventually(Duration::from_secs(5), "b sees the node", || async { b.get_service(&name).await.is_ok() }).await;
    drop(a);
    let started = tokio::time::Instant::now();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), watcher.next()).await.unwrap().unwrap().unwrap();
        if event.kind == EventKind::Delete {
            break;
        }
    }
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1_200), "gone only once the TTL lapsed ({waited:?})");
}
