//! The core of rmicro: every interface (codec, transport, registry, selector, broker), the
//! client and server logic, the in-memory backends, and (feature `testkit`) the conformance
//! suites every backend runs.
//!
//! Most users depend on the `rmicro` facade, which re-exports this crate and adds backends
//! through Cargo features.
//!
//! ```
//! use rmicro_core::prelude::*;
//!
//! #[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
//! struct Hello {
//!     #[prost(string, tag = "1")]
//!     name: String,
//! }
//!
//! # async fn demo() -> Result<(), Error> {
//! let service = Service::builder("greeter").build();
//! service.server().handle("Greeter.Hello", |_ctx, req: Hello| async move {
//!     Ok(Hello { name: format!("hello {}", req.name) })
//! });
//! service.start().await?;
//! let reply: Response<Hello> =
//!     service.client().call(Call::new("greeter", "Greeter.Hello"), &Hello { name: "ada".into() }).await?;
//! assert_eq!(reply.get_ref().name, "hello ada");
//! service.stop().await
//! # }
//! # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
//! ```

pub mod broker;
pub mod client;
pub mod codec;
pub mod context;
pub mod error;
pub mod metadata;
pub mod raw;
pub mod registry;
pub mod selector;
pub mod server;
pub mod service;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod transport;
pub mod wrapper;

pub use error::{Code, Error, Result};

/// The names most service authors use: the service, client, server and context, errors,
/// the layers and the node-choice strategies. Backend authors find theirs in [`raw`].
pub mod prelude {
    pub use crate::broker::{AckMode, Broker, SubscribeOptions};
    pub use crate::client::{Call, Client, FailMode, Response, Streaming};
    pub use crate::codec::{Json, Message, Opaque};
    pub use crate::context::Context;
    pub use crate::error::{Code, Error};
    pub use crate::metadata::Metadata;
    pub use crate::registry::Registry;
    pub use crate::selector::{
        BreakerPolicy, Closest, ConsistentHash, PowerOfTwoChoices, Random, RegistrySelector, RoundRobin,
        WeightedRoundRobin,
    };
    pub use crate::server::{Server, ServerStream};
    pub use crate::service::Service;
    pub use crate::transport::Transport;
    pub use crate::wrapper::{AuthLayer, ConcurrencyLimitLayer, Next, RateLimitLayer, TokenLayer, TraceLayer, from_fn};
}
