//! Subscribes to a topic in a queue group and appends every message it handles to a file, one
//! per line, acking each after it is written; slow on purpose. The at-least-once test kills it
//! with SIGKILL halfway and starts it again.
//!
//! Run with: `cargo run -p rmicro-broker-kafka --example kafka_record -- <brokers> <topic> <group> <file> [property=value ...]`

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use rmicro_broker_kafka::{KafkaBroker, KafkaConfig};
use rmicro_core::broker::{Broker, Delivery, DeliveryHandler, SubscribeOptions};

#[tokio::main]
async fn main() -> Result<(), rmicro_core::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [brokers, topic, group, file, properties @ ..] = args.as_slice() else {
        return Err(rmicro_core::Error::bad_request(
            "usage: kafka_record <brokers> <topic> <group> <file> [property=value ...]",
        ));
    };
    let file = file.clone();
    let mut config = KafkaConfig::default().with_address(brokers.clone());
    for property in properties {
        if let Some((key, value)) = property.split_once('=') {
            config = config.with_property(key, value);
        }
    }
    let broker = KafkaBroker::connect(config).await?;
    let handler: Arc<dyn DeliveryHandler> = Arc::new(move |delivery: Delivery| {
        let file = file.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(3)).await;
            let mut out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&file)
                .map_err(|e| rmicro_core::Error::internal(e.to_string()))?;
            writeln!(out, "{}", String::from_utf8_lossy(delivery.body()))
                .map_err(|e| rmicro_core::Error::internal(e.to_string()))?;
            Ok(())
        }
    });
    let _subscription = broker.subscribe(topic, handler, SubscribeOptions::default().queue(group.clone())).await?;
    println!("subscribed");
    std::future::pending::<()>().await;
    Ok(())
}
