//! A broker that takes the connection and never answers (as RabbitMQ can while it starts): publish
//! and subscribe fail with `Unavailable` after the answer timeout instead of waiting forever.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use rmicro_broker_rabbitmq::{RabbitBroker, RabbitConfig};
use rmicro_core::Code;
use rmicro_core::broker::{Broker, Delivery, DeliveryHandler, Envelope, SubscribeOptions};
use tokio::net::TcpListener;

/// Accepts connections and keeps them open without a word.
async fn silent_broker() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("amqp://guest:guest@{address}/%2f")
}

#[tokio::test]
async fn a_broker_that_never_answers_is_unavailable_after_the_answer_timeout() {
    let config =
        RabbitConfig::default().with_address(silent_broker().await).with_answer_timeout(Duration::from_millis(300));
    let broker = RabbitBroker::connect(config).await.unwrap();

    let started = Instant::now();
    let published = broker.publish("orders", Envelope::new("m")).await.unwrap_err();
    assert_eq!(published.code, Code::Unavailable, "{published}");
    assert!(published.detail.contains("connecting: no answer within 300ms"), "{published}");
    assert!(published.is_retryable());

    let handler: Arc<dyn DeliveryHandler> = Arc::new(|_: Delivery| async { Ok::<(), rmicro_core::Error>(()) });
    let subscribed = broker.subscribe("orders", handler, SubscribeOptions::default()).await.unwrap_err();
    assert_eq!(subscribed.code, Code::Unavailable, "{subscribed}");
    assert!(subscribed.detail.contains("connecting: no answer within 300ms"), "{subscribed}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}
