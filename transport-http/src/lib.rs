//! rmicro's HTTP transport: every call is an HTTP request, over HTTP/2 without TLS (h2c, prior
//! knowledge) between rmicro peers — one connection multiplexes many calls and carries
//! bidirectional streams — and over HTTP/1.1 for plain clients such as `curl`.
//!
//! # Calling a service with curl
//!
//! A unary call is `POST /{service}/{endpoint}` with the request encoded in the body and its
//! content type in `Content-Type`; other headers become the call's metadata, and
//! `micro-timeout` (milliseconds) carries the deadline the server enforces:
//!
//! ```text
//! curl -sS -X POST http://127.0.0.1:8080/greeter/Greeter.Hello \
//!      -H 'Content-Type: application/json' -d '{"name":"John"}'
//! {"msg":"Hello John"}
//! ```
//!
//! A failed call answers with the error's HTTP status and the core error as JSON, e.g.
//! `400 {"id":"greeter","code":400,"detail":"body does not decode ...","status":"Bad Request"}`.
//! Streaming calls (`micro-stream: 1`) frame messages as described in the wire module docs.
//!
//! # Example
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use rmicro_core::prelude::*;
//! use rmicro_transport_http::{HttpConfig, HttpTransport};
//!
//! # async fn demo() -> Result<(), Error> {
//! let transport = Arc::new(HttpTransport::connect(HttpConfig::default().with_max_message_size(1 << 20)).await?);
//! let service = Service::builder("greeter").transport(transport).address("127.0.0.1:8080").build();
//! service.run().await
//! # }
//! ```
//!
//! # Configuration
//!
//! An [`HttpConfig`] in code, or from the environment with [`HttpConfig::from_env`]; through the
//! `rmicro` facade ([`PLUGIN`]) the same settings can also be flags (`--transport_max_message_size`).
//!
//! | Setter | Environment | Default | |
//! |---|---|---|---|
//! | [`HttpConfig::with_max_message_size`] | `MICRO_TRANSPORT_MAX_MESSAGE_SIZE` | 4 MiB | larger bodies and frames are refused with 413 |
//!
//! The transport has no address of its own (`MICRO_TRANSPORT_ADDRESS` is not read): a service
//! listens where it is told, and listening on an empty address binds `127.0.0.1` on a free port.
//!
//! # Capabilities
//!
//! - [x] multiplexed concurrent calls on one connection (h2)
//! - [x] unary and bidirectional streams, metadata both ways, deadlines, cancellation (RST_STREAM)
//! - [x] plain HTTP/1.1 unary calls (curl); over HTTP/1.1 a caller that disconnects is not
//!   noticed until the handler answers
//! - [ ] TLS (not yet)
//!
//! # Tests
//!
//! `tests/conformance.rs` runs the core transport suite over real loopback TCP, and
//! `tests/curl.rs` calls a running service with the `curl` binary.

mod client;
mod config;
mod server;
mod wire;

use std::sync::Arc;

use async_trait::async_trait;
use rmicro_core::Result;
use rmicro_core::raw::plugin::{Build, Plugin, Setting};
use rmicro_core::transport::{Connection, Listener, Transport};

pub use config::HttpConfig;

/// How the `rmicro` facade knows this transport: `MICRO_TRANSPORT=http`, configured by
/// [`HttpConfig::from_settings`].
pub static PLUGIN: Plugin = Plugin {
    names: &["http"],
    about: "HTTP/1.1 and h2c: rmicro peers multiplex calls over h2c, curl calls over HTTP/1.1",
    default_address: "",
    settings: &[&[Setting::new(
        "max_message_size",
        "the largest message either side accepts, in bytes (default 4 MiB)",
    )]],
    build: Build::Transport(|settings| {
        Box::pin(async move {
            Ok(Arc::new(HttpTransport::connect(HttpConfig::from_settings(&settings)?).await?) as Arc<dyn Transport>)
        })
    }),
};

/// The HTTP transport.
#[derive(Clone, Debug)]
pub struct HttpTransport {
    max_message_size: usize,
}

impl HttpTransport {
    /// A transport as `config` says; it opens nothing until it listens or dials.
    pub async fn connect(config: HttpConfig) -> Result<HttpTransport> {
        Ok(HttpTransport { max_message_size: config.max_message_size })
    }
}

#[async_trait]
impl Transport for HttpTransport {
    fn name(&self) -> &'static str {
        "http"
    }

    async fn listen(&self, address: &str) -> Result<Box<dyn Listener>> {
        Ok(Box::new(server::listen(address, self.max_message_size).await?))
    }

    async fn dial(&self, address: &str) -> Result<Arc<dyn Connection>> {
        Ok(Arc::new(client::dial(address, self.max_message_size).await?))
    }
}
