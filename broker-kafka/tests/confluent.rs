//! Kafka with Python confluent-kafka, a client rmicro did not write: it reads what rmicro
//! publishes (headers included), and an rmicro subscriber receives what it produces.
//!
//! Needs a Python with `confluent-kafka` in `RMICRO_PYTHON`; without it the test says so loudly
//! and passes, except under `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmicro_broker_kafka::{KafkaBroker, KafkaConfig};
use rmicro_core::broker::{Broker, Delivery, DeliveryHandler, Envelope, SubscribeOptions};
use rmicro_core::testkit::{eventually, unique};

fn brokers() -> String {
    std::env::var("MICRO_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

fn python() -> Option<String> {
    let python = std::env::var("RMICRO_PYTHON").ok();
    if python.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "RMICRO_PYTHON (a Python with confluent-kafka) is required under CI"
        );
        eprintln!("!!! SKIPPED: set RMICRO_PYTHON to a Python with confluent-kafka to run the Kafka interop test");
    }
    python
}

fn peer(python: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(python);
    command.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/python/kafka_peer.py"));
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_kafka_reads_what_rmicro_publishes() {
    let Some(python) = python() else { return };
    let topic = unique("to-python");
    let broker = KafkaBroker::connect(KafkaConfig::default().with_address(brokers())).await.unwrap();
    broker.publish(&topic, Envelope::new("from rmicro").with_header("x-trace", "t-7")).await.unwrap();
    let output = peer(&python).args(["consume", &brokers(), &topic]).output().await.unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    eprintln!("confluent-kafka printed: {printed:?}");
    assert_eq!(printed.trim(), "got from rmicro x-trace=t-7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmicro_receives_what_confluent_kafka_produces() {
    let Some(python) = python() else { return };
    let topic = unique("from-python");
    let broker = KafkaBroker::connect(KafkaConfig::default().with_address(brokers())).await.unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let seen = received.clone();
    let handler: Arc<dyn DeliveryHandler> = Arc::new(move |delivery: Delivery| {
        seen.lock().unwrap().push((
            String::from_utf8_lossy(delivery.body()).into_owned(),
            delivery.headers().get("x-trace").map(str::to_owned),
        ));
        async { Ok::<(), rmicro_core::Error>(()) }
    });
    let subscription =
        broker.subscribe(&topic, handler, SubscribeOptions::default().queue("rmicro-readers")).await.unwrap();
    let output = peer(&python).args(["produce", &brokers(), &topic, "hello from python"]).output().await.unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "produced");
    eventually(Duration::from_secs(30), "the python message arrived", || async {
        !received.lock().unwrap().is_empty()
    })
    .await;
    let got = received.lock().unwrap()[0].clone();
    eprintln!("rmicro received: {got:?}");
    assert_eq!(got, ("hello from python".to_owned(), Some("from-python".to_owned())));
    subscription.unsubscribe().await.unwrap();
}
