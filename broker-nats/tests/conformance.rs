//! The NATS broker against the core broker suite on the real nats-server at
//! `MICRO_TEST_NATS_URL` (default `nats://127.0.0.1:4222`), in core mode and in JetStream mode.

use std::sync::Arc;

use rmicro_broker_nats::{JetStreamConfig, NatsBroker, NatsConfig};
use rmicro_core::broker::Broker;

fn url() -> String {
    std::env::var("MICRO_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

mod core_nats {
    use super::*;

    rmicro_core::broker_conformance!(|| async {
        let broker = NatsBroker::connect(NatsConfig::default().with_address(url()))
            .await
            .unwrap_or_else(|e| panic!("NATS at {}: {e}", url()));
        Arc::new(broker) as Arc<dyn Broker>
    });
}

mod jetstream {
    use super::*;

    rmicro_core::broker_conformance!(|| async {
        let settings = JetStreamConfig::default()
            .with_stream("RMICRO_CONFORMANCE")
            .with_subject_prefix("rmicro.conformance.")
            .with_ack_wait(std::time::Duration::from_secs(5));
        let broker = NatsBroker::connect(NatsConfig::default().with_address(url()).with_jetstream(settings))
            .await
            .unwrap_or_else(|e| panic!("NATS JetStream at {}: {e}", url()));
        Arc::new(broker) as Arc<dyn Broker>
    });
}
