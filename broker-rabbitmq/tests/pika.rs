//! RabbitMQ with Python pika, a client rmicro did not write: pika reads what rmicro publishes
//! (headers included), and an rmicro subscriber receives what pika publishes.
//!
//! Needs a Python with `pika` in `RMICRO_PYTHON` (the project's test script makes a
//! virtualenv); without it the test says so loudly and passes, except under `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmicro_broker_rabbitmq::{RabbitBroker, RabbitConfig};
use rmicro_core::broker::{Broker, Delivery, DeliveryHandler, Envelope, SubscribeOptions};
use rmicro_core::testkit::{eventually, unique};
use tokio::io::{AsyncBufReadExt, BufReader};

fn url() -> String {
    std::env::var("MICRO_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

fn python() -> Option<String> {
    let python = std::env::var("RMICRO_PYTHON").ok();
    if python.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "RMICRO_PYTHON (a Python with pika) is required under CI"
        );
        eprintln!("!!! SKIPPED: set RMICRO_PYTHON to a Python with pika to run the pika interop test");
    }
    python
}

fn peer(python: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(python);
    command.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/python/pika_peer.py"));
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pika_reads_what_rmicro_publishes() {
    let Some(python) = python() else { return };
    let topic = unique("pika.in");
    let mut consumer = peer(&python)
        .args(["consume", &url(), "rmicro-interop", &topic])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(consumer.stdout.take().unwrap()).lines();
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("ready"));
    let broker = RabbitBroker::connect(RabbitConfig::default().with_address(url()).with_exchange("rmicro-interop"))
        .await
        .unwrap();
    broker.publish(&topic, Envelope::new("from rmicro").with_header("x-trace", "t-42")).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap();
    eprintln!("pika printed: {got:?}");
    let got = got.unwrap_or_default();
    assert!(got.starts_with("got from rmicro x-trace=") && got.contains("t-42"), "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmicro_receives_what_pika_publishes() {
    let Some(python) = python() else { return };
    let topic = unique("pika.out");
    let broker = RabbitBroker::connect(RabbitConfig::default().with_address(url()).with_exchange("rmicro-interop"))
        .await
        .unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let seen = received.clone();
    let handler: Arc<dyn DeliveryHandler> = Arc::new(move |delivery: Delivery| {
        seen.lock().unwrap().push((
            String::from_utf8_lossy(delivery.body()).into_owned(),
            delivery.headers().get("x-trace").map(str::to_owned),
        ));
        async { Ok::<(), rmicro_core::Error>(()) }
    });
    let subscription = broker.subscribe(&topic, handler, SubscribeOptions::default().queue("from-pika")).await.unwrap();
    let status =
        peer(&python).args(["publish", &url(), "rmicro-interop", &topic, "hello from pika"]).status().await.unwrap();
    assert!(status.success());
    eventually(Duration::from_secs(10), "the pika message arrived", || async { !received.lock().unwrap().is_empty() })
        .await;
    let got = received.lock().unwrap()[0].clone();
    eprintln!("rmicro received: {got:?}");
    assert_eq!(got, ("hello from pika".to_owned(), Some("from-pika".to_owned())));
    subscription.unsubscribe().await.unwrap();
}
