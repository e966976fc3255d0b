//! The HTTP broker against the core broker suite, over loopback HTTP with the in-memory registry.

use std::sync::Arc;

use rmicro_broker_http::{HttpBroker, HttpBrokerConfig};
use rmicro_core::broker::Broker;
use rmicro_core::registry::MemoryRegistry;

rmicro_core::broker_conformance!(|| async {
    let broker = HttpBroker::connect(HttpBrokerConfig::default(), Arc::new(MemoryRegistry::new()))
        .await
        .expect("an HTTP broker");
    broker.connect().await.expect("endpoint listens on loopback");
    Arc::new(broker) as Arc<dyn Broker>
});
