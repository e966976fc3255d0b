//! A queue group's durable queue outlives its members (messages wait in it), and with
//! `group_idle` RabbitMQ deletes it once no member has consumed from it for that long.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use rmicro_broker_rabbitmq::{RabbitBroker, RabbitConfig};
use rmicro_core::broker::{Broker, Delivery, DeliveryHandler, SubscribeOptions};
use rmicro_core::testkit::unique;

fn url() -> String {
    std::env::var("MICRO_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// Whether the queue `name` exists: a passive declare fails (and closes its channel) if not.
/// Asking counts as using the queue, and starts its idle time again.
async fn queue_exists(connection: &Connection, name: &str) -> bool {
    let channel = connection.create_channel().await.unwrap();
    let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
    channel.queue_declare(name.into(), passive, FieldTable::default()).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unused_group_queue_is_deleted_after_group_idle() {
    let topic = unique("idle");
    let config = RabbitConfig::default()
        .with_address(url())
        .with_exchange("rmicro-idle")
        .with_group_idle(Duration::from_millis(500));
    let broker = RabbitBroker::connect(config).await.unwrap();
    let handler: Arc<dyn DeliveryHandler> = Arc::new(|_: Delivery| async { Ok::<(), rmicro_core::Error>(()) });
    let subscription = broker.subscribe(&topic, handler, SubscribeOptions::default().queue("idlers")).await.unwrap();
    let connection = Connection::connect(&url(), ConnectionProperties::default()).await.unwrap();
    let queue = format!("idlers.{topic}");

    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(queue_exists(&connection, &queue).await, "a queue with a member consuming is kept");
    subscription.unsubscribe().await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!queue_exists(&connection, &queue).await, "the group queue unused for 3 s of 0.5 s idle was deleted");
}
