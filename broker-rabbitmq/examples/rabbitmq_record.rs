//! Subscribes to a topic in a queue group and appends every message it handles to a file, one
//! per line, acking each after it is written; slow on purpose. The at-least-once test kills it
//! with SIGKILL halfway and starts it again.
//!
//! Run with: `cargo run -p rmicro-broker-rabbitmq --example rabbitmq_record -- <amqp-url> <exchange> <topic> <group> <file>`

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use rmicro_broker_rabbitmq::{RabbitBroker, RabbitConfig};
use rmicro_core::broker::{Broker, Delivery, DeliveryHandler, SubscribeOptions};

#[tokio::main]
async fn main() -> Result<(), rmicro_core::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, exchange, topic, group, file] = args.as_slice() else {
        return Err(rmicro_core::Error::bad_request(
            "usage: rabbitmq_record <amqp-url> <exchange> <topic> <group> <file>",
        ));
    };
    let file = file.clone();
    let broker = RabbitBroker::connect(
        RabbitConfig::default().with_address(url.clone()).with_exchange(exchange.clone()).with_prefetch(8),
    )
    .await?;
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
