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
//! use rmicro_transport_grpc::{GrpcConfig, GrpcTransport};
//!
//! # async fn demo() -> Result<(), Error> {
//! let transport = Arc::new(GrpcTransport::connect(GrpcConfig::default()).await?);
//! let service = Service::builder("greeter").transport(transport).address("127.0.0.1:50051").build();
//! service.run().await
//! # }
//! ```
//!
//! # Configuration
//!
//! A [`GrpcConfig`] in code, or from the environment with [`GrpcConfig::from_env`]; through the
//! `rmicro` facade ([`PLUGIN`]) the same settings can also be flags (`--transport_max_message_size`).
//!
//! | Setter | Environment | Default | |
//! |---|---|---|---|
//! | [`GrpcConfig::with_max_message_size`] | `MICRO_TRANSPORT_MAX_MESSAGE_SIZE` | 4 MiB | larger messages are refused (RESOURCE_EXHAUSTED / OUT_OF_RANGE) |
//! | [`GrpcConfig::with_tls`] | `MICRO_TRANSPORT_TLS_CERT`, `_TLS_KEY`, `_TLS_CA`, `_TLS_SERVER_NAME` | none | TLS for listening (identity) and dialling (trust) |
//!
//! `_TLS_CERT` and `_TLS_KEY` name the PEM files of the certificate chain and key to listen
//! with, `_TLS_CA` that of the CA to trust when dialling; `_TLS_SERVER_NAME` is the name the
//! servers' certificates are checked against (default `localhost`).
//!
//! The transport has no address of its own (`MICRO_TRANSPORT_ADDRESS` is not read): a service
//! listens where it is told.
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
mod config;
mod server;
mod status;
mod tls;
mod wire;

use std::sync::Arc;

use async_trait::async_trait;
use rmicro_core::Result;
use rmicro_core::raw::plugin::{Build, Plugin, Setting, TLS_SETTINGS};
use rmicro_core::transport::{Connection, Listener, Transport};

pub use config::GrpcConfig;
pub use rmicro_core::transport::TlsConfig;

/// How the `rmicro` facade knows this transport: `MICRO_TRANSPORT=grpc`, configured by
/// [`GrpcConfig::from_settings`].
pub static PLUGIN: Plugin = Plugin {
    names: &["grpc"],
    about: "standard gRPC on tonic, interoperable with any gRPC client or server",
    default_address: "",
    settings: &[
        &[Setting::new("max_message_size", "the largest message either side accepts, in bytes (default 4 MiB)")],
        TLS_SETTINGS,
    ],
    build: Build::Transport(|settings| {
        Box::pin(async move {
            Ok(Arc::new(GrpcTransport::connect(GrpcConfig::from_settings(&settings)?).await?) as Arc<dyn Transport>)
        })
    }),
};

/// The gRPC transport.
#[derive(Clone, Debug)]
pub struct GrpcTransport {
    max_message_size: usize,
    tls: TlsConfig,
}

impl GrpcTransport {
    /// A transport as `config` says; it opens nothing until it listens or dials.
    pub async fn connect(config: GrpcConfig) -> Result<GrpcTransport> {
        Ok(GrpcTransport { max_message_size: config.max_message_size, tls: config.tls.unwrap_or_default() })
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
