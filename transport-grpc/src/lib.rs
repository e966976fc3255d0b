//! rmicro's gRPC transport, on tonic: calls are standard gRPC, so rmicro services and any gRPC
//! client or server (tonic, grpc-go, Python `grpcio`, grpcurl) call each other.
//!
//! - Method paths are `/{package}.{Service}/{Method}`; the rmicro service name is the proto
//!   package (as in go-micro), and the endpoint `Service.Method`: rmicro's call of
//!   `Greeter.Hello` on service `greeter` is `/greeter.Greeter/Hello`.
//! - Bodies are protobuf (`application/grpc`); metadata is gRPC metadata; the caller's deadline
//!   is `grpc-timeout`, enforced by the server; cancelling resets the HTTP/2 stream.
//! - rmicro errors become gRPC statuses with the standard code mapping and the detail as the
//!   message; the exact rmicro error also rides in the `rmicro-error-bin` trailer so that
//!   rmicro peers get back exactly what was sent.
//! - All four streaming kinds; one HTTP/2 connection multiplexes every call.
//! - Message size limits on both sides (default 4 MiB, as gRPC).
//!
//! # Example
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use rmicro_core::prelude::*;
//! use rmicro_transport_grpc::GrpcTransport;
//!
//! # async fn demo() -> Result<(), Error> {
//! let service = Service::builder("greeter").transport(Arc::new(GrpcTransport::new())).address("127.0.0.1:50051").build();
//! service.run().await
//! # }
//! ```
//!
//! # Configuration
//!
//! | Builder | Default | |
//! |---|---|---|
//! | [`GrpcTransport::max_message_size`] | 4 MiB | larger messages are refused (RESOURCE_EXHAUSTED / OUT_OF_RANGE) |
//! | [`GrpcTransport::tls`] | none | TLS for listening (identity) and dialling (trust) |
//!
//! # Capabilities
//!
//! - [x] standard gRPC wire format, unary and all streaming kinds, metadata, deadlines, cancellation
//! - [x] interoperates with tonic and Python grpcio (tested both ways)
//! - [x] TLS through rustls ([`TlsConfig`]: certificate and key to serve, CA and name to dial)
//!
//! # Tests
//!
//! `tests/conformance.rs` runs the core transport suite over loopback TCP; the `interop-grpc`
//! crate calls an rmicro service from tonic and Python grpcio clients and calls a plain tonic
//! server from rmicro.

mod client;
mod server;
mod status;
mod tls;
mod wire;

use std::sync::Arc;

use async_trait::async_trait;
use rmicro_core::Result;
use rmicro_core::transport::{Connection, DEFAULT_MAX_MESSAGE_SIZE, Listener, Transport};

pub use rmicro_core::transport::TlsConfig;

/// The gRPC transport.
#[derive(Clone, Debug)]
pub struct GrpcTransport {
    max_message_size: usize,
    tls: TlsConfig,
}

impl Default for GrpcTransport {
    fn default() -> GrpcTransport {
        GrpcTransport::new()
    }
}

impl GrpcTransport {
    /// A transport with gRPC's default 4 MiB message limit.
    pub fn new() -> GrpcTransport {
        GrpcTransport { max_message_size: DEFAULT_MAX_MESSAGE_SIZE, tls: TlsConfig::default() }
    }

    /// Sets the largest message either side accepts.
    pub fn max_message_size(mut self, bytes: usize) -> GrpcTransport {
        self.max_message_size = bytes;
        self
    }

    /// Serves and dials over TLS (rustls) as `tls` says.
    pub fn tls(mut self, tls: TlsConfig) -> GrpcTransport {
        self.tls = tls;
        self
    }
}

#[async_trait]
impl Transport for GrpcTransport {
    fn name(&self) -> &'static str {
        "grpc"
    }

    async fn listen(&self, address: &str) -> Result<Box<dyn Listener>> {
        Ok(Box::new(server::listen(address, self.max_message_size, tls::acceptor(&self.tls)?).await?))
    }

    async fn dial(&self, address: &str) -> Result<Arc<dyn Connection>> {
        Ok(Arc::new(client::dial(address, self.max_message_size, tls::client(&self.tls)).await?))
    }
}
