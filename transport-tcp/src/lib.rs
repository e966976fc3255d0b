//! rmicro's binary transport: a length-prefixed, multiplexed protocol over TCP or Unix sockets,
//! in the spirit of rpcx's and Kitex's. It is the fastest way for rmicro services to call each
//! other; use `transport-grpc` or `transport-http` when other clients must call them.
//!
//! - One connection carries any number of concurrent calls and streams, each with its own id.
//! - A unary call is one frame each way: the call head, metadata and request in one, the
//!   response header, body and status in the other.
//! - Header compaction: service, endpoint, content type and metadata keys are sent once per
//!   connection and then as two-byte references.
//! - Writes are batched: frames queued by many calls while a write is in progress leave together
//!   in one vectored write. Bodies are read without copying; large ones are written without
//!   copying.
//! - Both sides work at once: a server that has read all its client sent lets the calls it has
//!   read run every few frames, so the first answers leave while it reads the rest, instead of
//!   the two sides taking turns over whole batches.
//! - Streams have credit-based flow control (32 messages in flight per direction), deadlines
//!   travel with the call and cancellation is a frame.
//! - A malformed or oversized frame closes only the connection it came on, with a logged reason;
//!   calls on it fail with a retryable `Unavailable`.
//! - TLS through rustls ([`TlsConfig`]).
//!
//! See the frame module's docs for the wire format.
//!
//! # Example
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use rmicro_core::prelude::*;
//! use rmicro_transport_tcp::{TcpConfig, TcpTransport};
//!
//! # async fn demo() -> Result<(), Error> {
//! let transport = Arc::new(TcpTransport::connect(TcpConfig::default()).await?);
//! let service = Service::builder("greeter").transport(transport).address("127.0.0.1:8090").build();
//! service.run().await
//! # }
//! ```
//!
//! # Addresses
//!
//! `host:port` is TCP (an empty address binds `127.0.0.1` on a free port); `unix:/path/to.sock`
//! is a Unix socket.
//!
//! # Configuration
//!
//! A [`TcpConfig`] in code, or from the environment with [`TcpConfig::from_env`]; through the
//! `rmicro` facade ([`PLUGIN`]) the same settings can also be flags (`--transport_max_message_size`).
//!
//! | Setter | Environment | Default | |
//! |---|---|---|---|
//! | [`TcpConfig::with_max_message_size`] | `MICRO_TRANSPORT_MAX_MESSAGE_SIZE` | 4 MiB | larger messages are refused with `PayloadTooLarge` |
//! | [`TcpConfig::with_tls`] | `MICRO_TRANSPORT_TLS_CERT`, `_TLS_KEY`, `_TLS_CA`, `_TLS_SERVER_NAME` | none | TLS for listening (identity) and dialling (trust) |
//!
//! `_TLS_CERT` and `_TLS_KEY` name the PEM files of the certificate chain and key to listen
//! with, `_TLS_CA` that of the CA to trust when dialling; `_TLS_SERVER_NAME` is the name the
//! servers' certificates are checked against (default `localhost`). The transport has no address
//! of its own (`MICRO_TRANSPORT_ADDRESS` is not read): a service listens where it is told.
//!
//! # Tests
//!
//! `tests/conformance.rs` runs the core transport suite over TCP, over a Unix socket and over
//! TLS; `tests/malformed.rs` sends bad frames on raw sockets.

mod call_ids;
mod client;
mod config;
mod frame;
mod io;
mod server;
mod tls;

use std::sync::Arc;

use async_trait::async_trait;
use rmicro_core::raw::plugin::{Build, Plugin, Setting, TLS_SETTINGS};
use rmicro_core::transport::{Connection, Listener, Transport};
use rmicro_core::{Error, Result};
use tokio::io::{AsyncRead, AsyncWrite};

pub use config::TcpConfig;
pub use rmicro_core::transport::TlsConfig;

/// How the `rmicro` facade knows this transport: `MICRO_TRANSPORT=tcp`, configured by
/// [`TcpConfig::from_settings`].
pub static PLUGIN: Plugin = Plugin {
    names: &["tcp"],
    about: "binary multiplexed protocol over TCP or Unix sockets, the fastest between rmicro services",
    default_address: "",
    settings: &[
        &[Setting::new("max_message_size", "the largest message either side accepts, in bytes (default 4 MiB)")],
        TLS_SETTINGS,
    ],
    build: Build::Transport(|settings| {
        Box::pin(async move {
            Ok(Arc::new(TcpTransport::connect(TcpConfig::from_settings(&settings)?).await?) as Arc<dyn Transport>)
        })
    }),
};

/// The binary TCP transport.
#[derive(Clone, Debug)]
pub struct TcpTransport {
    max_message_size: usize,
    tls: TlsConfig,
}

impl TcpTransport {
    /// A transport as `config` says; it opens nothing until it listens or dials.
    pub async fn connect(config: TcpConfig) -> Result<TcpTransport> {
        Ok(TcpTransport { max_message_size: config.max_message_size, tls: config.tls.unwrap_or_default() })
    }
}

#[async_trait]
impl Transport for TcpTransport {
    fn name(&self) -> &'static str {
        "tcp"
    }

    async fn listen(&self, address: &str) -> Result<Box<dyn Listener>> {
        Ok(Box::new(server::listen(address, self.max_message_size, tls::acceptor(&self.tls)?).await?))
    }

    async fn dial(&self, address: &str) -> Result<Arc<dyn Connection>> {
        Ok(Arc::new(client::dial(address, self.max_message_size, tls::connector(&self.tls)?).await?))
    }
}

/// A connection's byte stream: TCP, Unix or either under TLS.
pub(crate) trait ByteStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<S: AsyncRead + AsyncWrite + Send + Unpin + 'static> ByteStream for S {}

pub(crate) type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
pub(crate) type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

fn split(stream: impl ByteStream) -> (ReadHalf, WriteHalf) {
    let (read, write) = tokio::io::split(stream);
    (Box::new(read), Box::new(write))
}

/// A connection's socket before any TLS.
pub(crate) enum Plain {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

impl Plain {
    /// Halves that each own their side, so reading and writing share no lock.
    pub(crate) fn split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Plain::Tcp(stream) => {
                let (read, write) = stream.into_split();
                (Box::new(read), Box::new(write))
            }
            Plain::Unix(stream) => {
                let (read, write) = stream.into_split();
                (Box::new(read), Box::new(write))
            }
        }
    }

    /// The socket as one stream, for a TLS handshake.
    pub(crate) fn boxed(self) -> Box<dyn ByteStream> {
        match self {
            Plain::Tcp(stream) => Box::new(stream),
            Plain::Unix(stream) => Box::new(stream),
        }
    }
}

/// A Unix socket path, if the address names one.
pub(crate) fn unix_path(address: &str) -> Option<&str> {
    address.strip_prefix("unix:")
}

/// The largest frame a side accepts: a message and its call head.
pub(crate) fn max_frame(max_message_size: usize) -> usize {
    max_message_size.saturating_add(frame::HEAD_ALLOWANCE + frame::HEAD_LEN)
}

pub(crate) fn unavailable(detail: impl Into<String>) -> Error {
    Error::unavailable(detail).with_id("rmicro.transport.tcp")
}

pub(crate) use rmicro_core::raw::too_large;
