//! What the HTTP broker promises beyond the suite: the publisher learns of subscribers it could
//! not reach, and nothing is kept for a subscriber that was down.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rmicro_broker_http::{BROKER_SERVICE, HttpBroker, HttpBrokerConfig};
use rmicro_core::broker::{Broker, Delivery, DeliveryHandler, Envelope, SubscribeOptions};
use rmicro_core::registry::{MemoryRegistry, Node, Registry, ServiceRecord};
use rmicro_core::{Code, Error};

fn counting(count: Arc<AtomicUsize>) -> Arc<dyn DeliveryHandler> {
    Arc::new(move |_d: Delivery| {
        count.fetch_add(1, Ordering::SeqCst);
        async { Ok::<(), Error>(()) }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publisher_learns_which_subscribers_it_could_not_reach() {
    let registry = Arc::new(MemoryRegistry::new());
    let broker = HttpBroker::connect(HttpBrokerConfig::default(), registry.clone()).await.unwrap();
    let got = Arc::new(AtomicUsize::new(0));
    let _live =
        broker.subscribe("orders", counting(got.clone()), SubscribeOptions::default().queue("billing")).await.unwrap();
    let dead = ServiceRecord {
        name: BROKER_SERVICE.into(),
        version: "1".into(),
        nodes: vec![Node {
            id: "sub-dead".into(),
            address: "127.0.0.1:9".into(),
            metadata: [("topic".to_owned(), "orders".to_owned()), ("queue".to_owned(), "audit".to_owned())].into(),
        }],
        ..ServiceRecord::default()
    };
    registry.register(&dead, None).await.unwrap();
    let err = broker.publish("orders", Envelope::new("order 1")).await.unwrap_err();
    eprintln!("publish error: {err}");
    assert_eq!(err.code, Code::Unavailable);
    assert!(err.detail.contains("delivered to 1 of 2") && err.detail.contains("audit"), "{err}");
    assert_eq!(got.load(Ordering::SeqCst), 1, "the reachable group still got it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_was_down_does_not_get_old_messages() {
    let registry = Arc::new(MemoryRegistry::new());
    let broker = HttpBroker::connect(HttpBrokerConfig::default(), registry.clone()).await.unwrap();
    broker.publish("news", Envelope::new("while nobody listens")).await.unwrap();
    let got = Arc::new(AtomicUsize::new(0));
    let sub = broker.subscribe("news", counting(got.clone()), SubscribeOptions::default()).await.unwrap();
    broker.publish("news", Envelope::new("now")).await.unwrap();
    assert_eq!(got.load(Ordering::SeqCst), 1);
    sub.unsubscribe().await.unwrap();
    assert_eq!(
        registry.get_service(BROKER_SERVICE).await.unwrap_err().code,
        Code::NotFound,
        "unsubscribing deregistered"
    );
}
