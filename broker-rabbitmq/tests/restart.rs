//! RabbitMQ restarted (`rabbitmqctl stop_app` / `start_app`) while messages are published: the
//! publisher reports what was not confirmed (and the test retries it), the subscriber reconnects
//! and resumes, and every confirmed message arrives. Alone in its test binary, so no other test
//! runs while the broker is down.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmicro_broker_rabbitmq::{RabbitBroker, RabbitConfig};
use rmicro_core::broker::{Broker, Delivery, DeliveryHandler, Envelope, SubscribeOptions};
use rmicro_core::testkit::{eventually, unique};

fn url() -> String {
    std::env::var("MICRO_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

async fn rabbitmqctl(command: &str) {
    let status =
        tokio::process::Command::new("rabbitmqctl").arg(command).status().await.expect("rabbitmqctl is installed");
    assert!(status.success(), "rabbitmqctl {command}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_confirmed_is_lost_across_a_broker_restart() {
    tracing_subscriber::fmt().with_test_writer().with_env_filter("rmicro_broker_rabbitmq=debug,lapin=info").init();
    let topic = unique("restart");
    let received: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let seen = received.clone();
    let handler: Arc<dyn DeliveryHandler> = Arc::new(move |delivery: Delivery| {
        *seen.lock().unwrap().entry(String::from_utf8_lossy(delivery.body()).into_owned()).or_default() += 1;
        async { Ok::<(), rmicro_core::Error>(()) }
    });
    let subscriber = RabbitBroker::connect(RabbitConfig::default().with_address(url()).with_exchange("rmicro-restart"))
        .await
        .unwrap();
    let subscription =
        subscriber.subscribe(&topic, handler, SubscribeOptions::default().queue("survivors")).await.unwrap();
    let publisher = RabbitBroker::connect(RabbitConfig::default().with_address(url()).with_exchange("rmicro-restart"))
        .await
        .unwrap();

    let mut failures = 0;
    let mut restart = None;
    for i in 0..400 {
        if i == 100 {
            restart = Some(tokio::spawn(async {
                rabbitmqctl("stop_app").await;
                tokio::time::sleep(Duration::from_secs(2)).await;
                rabbitmqctl("start_app").await;
            }));
        }
        let started = tokio::time::Instant::now();
        loop {
            match publisher.publish(&topic, Envelope::new(format!("m{i}"))).await {
                Ok(()) => break,
                Err(e) => {
                    assert!(e.is_retryable(), "{e}");
                    assert!(started.elapsed() < Duration::from_secs(90), "publishing never recovered: {e}");
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    restart.unwrap().await.unwrap();
    eventually(Duration::from_secs(60), "every confirmed message arrived", || async {
        received.lock().unwrap().len() >= 400
    })
    .await;
    let counts = received.lock().unwrap().clone();
    let twice: usize = counts.values().map(|n| n - 1).sum();
    eprintln!(
        "broker restart: {failures} publishes reported unconfirmed and retried; {} of 400 confirmed messages received, {twice} twice",
        counts.len()
    );
    assert!(failures > 0, "the restart interrupted publishing");
    assert!((0..400).all(|i| counts.contains_key(&format!("m{i}"))));
    subscription.unsubscribe().await.unwrap();
    delete_queue(&format!("survivors.{topic}")).await;
}

/// Deletes a durable group queue, which outlives its subscriptions by design.
async fn delete_queue(name: &str) {
    let connection = lapin::Connection::connect(&url(), lapin::ConnectionProperties::default()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel.queue_delete(name.into(), lapin::options::QueueDeleteOptions::default()).await.unwrap();
    connection.close(200, "done".into()).await.unwrap();
}
