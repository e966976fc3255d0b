//! The RabbitMQ broker against the core broker suite on the real broker at
//! `MICRO_TEST_AMQP_URL` (default `amqp://guest:guest@127.0.0.1:5672/%2f`). Group queues are
//! deleted a minute after their last member leaves, so runs leave none behind.

use std::sync::Arc;
use std::time::Duration;

use rmicro_broker_rabbitmq::{RabbitBroker, RabbitConfig};
use rmicro_core::broker::Broker;

fn url() -> String {
    std::env::var("MICRO_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

rmicro_core::broker_conformance!(|| async {
    let config = RabbitConfig::default()
        .with_address(url())
        .with_exchange("rmicro-conformance")
        .with_group_idle(Duration::from_secs(60));
    let broker = RabbitBroker::connect(config).await.unwrap_or_else(|e| panic!("RabbitMQ broker: {e}"));
    broker.connect().await.unwrap_or_else(|e| panic!("RabbitMQ at {}: {e}", url()));
    Arc::new(broker) as Arc<dyn Broker>
});
