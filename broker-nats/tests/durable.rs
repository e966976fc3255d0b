//! A JetStream durable subscriber (a queue group) that is stopped while 1,000 messages are
//! published receives all 1,000 when it comes back, and none twice after acking them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmicro_broker_nats::{JetStreamConfig, NatsBroker, NatsConfig};
use rmicro_core::broker::{Broker, Delivery, DeliveryHandler, Envelope, SubscribeOptions};
use rmicro_core::testkit::{eventually, unique};

fn url() -> String {
    std::env::var("MICRO_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

async fn broker() -> NatsBroker {
    let settings = JetStreamConfig::default()
        .with_stream("RMICRO_DURABLE_TEST")
        .with_subject_prefix("rmicro.durable-test.")
        .with_ack_wait(Duration::from_secs(2));
    NatsBroker::connect(NatsConfig::default().with_address(url()).with_jetstream(settings)).await.unwrap()
}

fn counting(seen: Arc<Mutex<HashMap<String, usize>>>) -> Arc<dyn DeliveryHandler> {
    Arc::new(move |delivery: Delivery| {
        let seen = seen.clone();
        async move {
            *seen.lock().unwrap().entry(String::from_utf8_lossy(delivery.body()).into_owned()).or_default() += 1;
            Ok::<(), rmicro_core::Error>(())
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_subscriber_gets_everything_published_while_it_was_away() {
    let topic = unique("orders");
    let first = Arc::new(Mutex::new(HashMap::new()));
    let subscriber = broker().await;
    let subscription = subscriber
        .subscribe(&topic, counting(first.clone()), SubscribeOptions::default().queue("billing"))
        .await
        .unwrap();
    let publisher = broker().await;
    publisher.publish(&topic, Envelope::new("before")).await.unwrap();
    eventually(Duration::from_secs(10), "the first message arrived", || async { first.lock().unwrap().len() == 1 })
        .await;
    subscription.unsubscribe().await.unwrap();
    drop(subscriber);

    for i in 0..1_000 {
        publisher.publish(&topic, Envelope::new(format!("order-{i}"))).await.unwrap();
    }

    let back = Arc::new(Mutex::new(HashMap::new()));
    let returned = broker().await;
    let subscription =
        returned.subscribe(&topic, counting(back.clone()), SubscribeOptions::default().queue("billing")).await.unwrap();
    eventually(Duration::from_secs(30), "all 1,000 arrived", || async { back.lock().unwrap().len() >= 1_000 }).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let seen = back.lock().unwrap().clone();
    let twice = seen.values().filter(|&&n| n > 1).count();
    eprintln!(
        "durable: {} distinct messages received after coming back, {twice} more than once, 'before' again: {}",
        seen.len(),
        seen.contains_key("before")
    );
    assert_eq!(seen.len(), 1_000);
    assert!((0..1_000).all(|i| seen.contains_key(&format!("order-{i}"))));
    assert_eq!(twice, 0, "nothing acked came twice");
    subscription.unsubscribe().await.unwrap();
}
