//! rmicro's NATS transport: calls travel as NATS messages, so services need no open port and
//! NATS routes, balances and secures the traffic.
//!
//! A listener's address is a subject (`rmicro.node.<id>` unless given); a call is opened on it,
//! and its frames then flow on `<node>.c.<call>` and on the caller's inbox (see the frame
//! module for the protocol). A unary call is one message each way: its head, metadata and
//! request share one payload without NATS headers, and an OK answer without metadata is the
//! response alone; any other answer frames its status, metadata and response (or error) in one
//! payload (see the unary module). A stream's frames carry their metadata in NATS headers,
//! and its messages flow within a window of credits, so neither side floods the other. Each
//! listener holds one subscription and each dialled node one, whatever the number of calls: a
//! call that ends leaves no subscription behind. The caller's remaining time travels with the
//! call and the server enforces it; dropping a call sends `cancel`.
//!
//! If the connection to NATS drops, calls in progress fail with a retryable `Unavailable`;
//! async-nats reconnects, and later calls succeed.
//!
//! # Example
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use rmicro_core::prelude::*;
//! use rmicro_transport_nats::{NatsConfig, NatsTransport};
//!
//! # async fn demo() -> Result<(), Error> {
//! let config = NatsConfig::default().with_address("nats://127.0.0.1:4222");
//! let transport = Arc::new(NatsTransport::connect(config).await?);
//! let service = Service::builder("greeter").transport(transport).build();
//! service.run().await
//! # }
//! ```
//!
//! # Configuration
//!
//! A [`NatsConfig`] in code, or from the environment with [`NatsConfig::from_env`]; through the
//! `rmicro` facade ([`PLUGIN`], `MICRO_TRANSPORT=nats`) the same settings can also be flags
//! (`--transport_address`).
//!
//! | Setter | Environment | Default | |
//! |---|---|---|---|
//! | [`NatsConfig::with_address`] | `MICRO_TRANSPORT_ADDRESS` | `nats://127.0.0.1:4222` | the NATS server's URL |
//! | [`NatsConfig::with_max_message_size`] | `MICRO_TRANSPORT_MAX_MESSAGE_SIZE` | the server's `max_payload` | larger messages are refused with `PayloadTooLarge` |
//! | [`NatsConfig::with_credentials`] | `MICRO_TRANSPORT_USER`, `MICRO_TRANSPORT_PASSWORD` | none | user name and password for the server |
//! | [`NatsConfig::with_token`] | `MICRO_TRANSPORT_TOKEN` | none | token for the server |
//!
//! # Capabilities
//!
//! - [x] unary and bidirectional streams with flow control, metadata, deadlines, cancellation
//! - [x] "nothing listens" (NATS no-responders) is a retryable, unsent `Unavailable`
//! - [x] in-flight calls fail retryably when the NATS connection drops; reconnection is automatic
//!
//! # Tests
//!
//! The core transport suite runs against the real nats-server at `MICRO_TEST_NATS_URL`
//! (default `nats://127.0.0.1:4222`); `tests/restart.rs` restarts a nats-server of its own on
//! another port during a stream of calls.

mod client;
mod config;
mod frame;
mod server;
mod unary;

use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use rmicro_core::raw::plugin::{Build, Plugin, Setting};
use rmicro_core::transport::{Connection, Listener, Transport};
use rmicro_core::{Code, Error, Result};

use client::Calls;
pub use config::NatsConfig;

/// How the `rmicro` facade knows this transport: `MICRO_TRANSPORT=nats`, configured by
/// [`NatsConfig::from_settings`].
pub static PLUGIN: Plugin = Plugin {
    names: &["nats"],
    about: "calls as NATS messages: no open ports, NATS routes and balances",
    default_address: config::DEFAULT_ADDRESS,
    settings: &[&[
        Setting::new(
            "max_message_size",
            "the largest message either side accepts, in bytes (default the server's max_payload)",
        ),
        Setting::new("user", "user name for the NATS server (with password)"),
        Setting::new("password", "password for the NATS server (with user)"),
        Setting::new("token", "token for the NATS server"),
    ]],
    build: Build::Transport(|settings| {
        Box::pin(async move {
            Ok(Arc::new(NatsTransport::connect(NatsConfig::from_settings(&settings)?).await?) as Arc<dyn Transport>)
        })
    }),
};

pub(crate) fn nats_error(doing: &str, error: impl std::fmt::Display) -> Error {
    Error::new(Code::Unavailable, format!("nats: {doing}: {error}")).with_id("rmicro.transport.nats")
}

pub(crate) use rmicro_core::raw::too_large;

/// The NATS transport: one NATS connection for every listener and dialled node.
#[derive(Clone, Debug)]
pub struct NatsTransport {
    client: async_nats::Client,
    max_message_size: usize,
    live: Arc<Mutex<Vec<Weak<Calls>>>>,
}

impl NatsTransport {
    /// Connects to NATS as `config` says.
    pub async fn connect(config: NatsConfig) -> Result<NatsTransport> {
        let live: Arc<Mutex<Vec<Weak<Calls>>>> = Arc::default();
        let watched = live.clone();
        let mut options = async_nats::ConnectOptions::new()
            .connection_timeout(std::time::Duration::from_secs(5))
            .event_callback(move |event| {
                let watched = watched.clone();
                async move {
                    if let async_nats::Event::Disconnected = event {
                        let mut live = watched.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                        live.retain(|calls| calls.strong_count() > 0);
                        for calls in live.iter().filter_map(Weak::upgrade) {
                            calls.fail_all("the connection to NATS was lost during the call");
                        }
                    }
                }
            });
        if let Some((user, password)) = config.credentials {
            options = options.user_and_password(user, password);
        }
        if let Some(token) = config.token {
            options = options.token(token);
        }
        let url = config.address;
        let client =
            options.connect(&url).await.map_err(|e| nats_error(&format!("connecting to {url}"), e).unsent())?;
        let max_message_size = config.max_message_size.unwrap_or_else(|| client.server_info().max_payload);
        Ok(NatsTransport { client, max_message_size, live })
    }

    /// How many calls are in progress on this transport's dialled nodes (for leak checks).
    pub fn calls_in_progress(&self) -> usize {
        let live = self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        live.iter().filter_map(Weak::upgrade).map(|calls| calls.len()).sum()
    }
}

#[async_trait]
impl Transport for NatsTransport {
    fn name(&self) -> &'static str {
        "nats"
    }

    async fn listen(&self, address: &str) -> Result<Box<dyn Listener>> {
        Ok(Box::new(server::listen(self.client.clone(), address, self.max_message_size).await?))
    }

    async fn dial(&self, address: &str) -> Result<Arc<dyn Connection>> {
        Ok(Arc::new(client::dial(self.client.clone(), address, self.max_message_size, &self.live).await?))
    }
}
