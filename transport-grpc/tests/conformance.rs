//! The gRPC transport against the core transport suite, over real loopback TCP.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use rmicro_core::testkit::transport::TransportUnderTest;
use rmicro_transport_grpc::{GrpcConfig, GrpcTransport};

const MAX_MESSAGE_SIZE: usize = 64 * 1024;

rmicro_core::transport_conformance!(|| async {
    TransportUnderTest {
        transport: Arc::new(
            GrpcTransport::connect(GrpcConfig::default().with_max_message_size(MAX_MESSAGE_SIZE)).await.unwrap(),
        ),
        listen_address: "127.0.0.1:0".to_owned(),
        max_message_size: MAX_MESSAGE_SIZE,
    }
});
