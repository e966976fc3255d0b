//! The Kafka broker against the core broker suite on a Kafka-protocol broker at
//! `MICRO_TEST_KAFKA_BROKERS` (default `127.0.0.1:9092`; tansu here).

use std::sync::Arc;

use rmicro_broker_kafka::{KafkaBroker, KafkaConfig};
use rmicro_core::broker::Broker;

fn brokers() -> String {
    std::env::var("MICRO_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

rmicro_core::broker_conformance!(|| async {
    let config = KafkaConfig::default().with_address(brokers());
    Arc::new(KafkaBroker::connect(config).await.expect("a Kafka client")) as Arc<dyn Broker>
});
