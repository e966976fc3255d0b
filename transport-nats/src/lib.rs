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
//! use rmicro_transport_nats::NatsTransport;
//!
//! # async fn demo() -> Result<(), Error> {
//! let transport = Arc::new(NatsTransport::connect("nats://127.0.0.1:4222").await?);
//! let service = Service::builder("greeter").transport(transport).build();
//! service.run().await
//! # }
//! ```
//!
//! # Configuration
//!
//! The NATS URL (`MICRO_TRANSPORT=nats`, address in `MICRO_TRANSPORT_ADDRESS` through the
//! facade) and [`NatsTransport::max_message_size`] (default: the server's `max_payload`).
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
mod frame;
mod server;
mod unary;

use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use rmicro_core::transport::{Connection, Listener, Transport};
use rmicro_core::{Code, Error, Result};

use client::Calls;

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
    /// Connects to NATS at `url`.
    pub async fn connect(url: &str) -> Result<NatsTransport> {
        let live: Arc<Mutex<Vec<Weak<Calls>>>> = Arc::default();
        let watched = live.clone();
        let client = async_nats::ConnectOptions::new()
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
            })
            .connect(url)
            .await
            .map_err(|e| nats_error(&format!("connecting to {url}"), e).unsent())?;
        let max_message_size = client.server_info().max_payload;
        Ok(NatsTransport { client, max_message_size, live })
    }

    /// Sets the largest message either side accepts (at most the server's `max_payload`).
    pub fn max_message_size(mut self, bytes: usize) -> NatsTransport {
        self.max_message_size = bytes;
        self
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
