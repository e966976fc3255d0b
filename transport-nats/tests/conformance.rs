//! The NATS transport against the core transport suite on the real nats-server at
//! `MICRO_TEST_NATS_URL` (default `nats://127.0.0.1:4222`).

use std::sync::Arc;

use rmicro_core::testkit::transport::TransportUnderTest;
use rmicro_transport_nats::{NatsConfig, NatsTransport};

const MAX_MESSAGE_SIZE: usize = 64 * 1024;

fn url() -> String {
    std::env::var("MICRO_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

rmicro_core::transport_conformance!(|| async {
    let config = NatsConfig::default().with_address(url()).with_max_message_size(MAX_MESSAGE_SIZE);
    let transport = NatsTransport::connect(config).await.unwrap_or_else(|e| panic!("NATS at {}: {e}", url()));
    TransportUnderTest {
        transport: Arc::new(transport),
        listen_address: String::new(),
        max_message_size: MAX_MESSAGE_SIZE,
    }
});
