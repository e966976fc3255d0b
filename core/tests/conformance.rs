//! The in-memory backends and the built-in codecs against the core conformance suites.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use rmicro_core::testkit::transport::TransportUnderTest;

const MAX_MESSAGE_SIZE: usize = 64 * 1024;

mod memory_registry {
    use super::*;
    use rmicro_core::registry::{MemoryRegistry, Registry};

    rmicro_core::registry_conformance!(|| async { Arc::new(MemoryRegistry::new()) as Arc<dyn Registry> });
}

mod memory_broker {
    use super::*;
    use rmicro_core::broker::{Broker, MemoryBroker};

    rmicro_core::broker_conformance!(|| async { Arc::new(MemoryBroker::new()) as Arc<dyn Broker> });
}

mod memory_transport {
    use super::*;
    use rmicro_core::transport::MemoryTransport;

    rmicro_core::transport_conformance!(|| async {
        TransportUnderTest {
            transport: Arc::new(MemoryTransport::new().max_message_size(MAX_MESSAGE_SIZE)),
            listen_address: String::new(),
            max_message_size: MAX_MESSAGE_SIZE,
        }
    });
}

mod protobuf_codec {
    use super::*;
    use rmicro_core::codec::{Codec, ProtobufCodec};

    rmicro_core::codec_conformance!(|| async { Arc::new(ProtobufCodec) as Arc<dyn Codec> });
}

mod json_codec {
    use super::*;
    use rmicro_core::codec::{Codec, JsonCodec};

    rmicro_core::codec_conformance!(|| async { Arc::new(JsonCodec) as Arc<dyn Codec> });
}

mod raw_codec {
    use super::*;
    use rmicro_core::codec::{Codec, OpaqueCodec};

    rmicro_core::codec_conformance!(|| async { Arc::new(OpaqueCodec) as Arc<dyn Codec> });
}
