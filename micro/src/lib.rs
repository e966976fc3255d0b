//! rmicro: go-micro's ease with Rust's speed and safety, plus rpcx's service governance.
//!
//! This is the crate services depend on. It re-exports [`rmicro_core`] (the interfaces, the
//! client and server logic and the in-memory backends) and, as their crates land, adds each
//! transport, registry and broker behind a Cargo feature.
//!
//! ```
//! use rmicro::prelude::*;
//!
//! #[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
//! struct Ping {
//!     #[prost(uint32, tag = "1")]
//!     n: u32,
//! }
//!
//! # async fn demo() -> Result<(), Error> {
//! let service = Service::builder("pinger").build();
//! service.server().handle("Pinger.Ping", |_ctx, ping: Ping| async move { Ok(Ping { n: ping.n + 1 }) });
//! service.start().await?;
//! let pong: Response<Ping> = service.client().call(Call::new("pinger", "Pinger.Ping"), &Ping { n: 1 }).await?;
//! assert_eq!(pong.get_ref().n, 2);
//! service.stop().await
//! # }
//! # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! # Backends
//!
//! | Kind | Backend | Feature | Default? |
//! |---|---|---|---|
//! | transport | in-memory (`MemoryTransport`) | always | yes |
//! | registry | in-memory (`MemoryRegistry`) | always | yes |
//! | broker | in-memory (`MemoryBroker`) | always | yes |
//!
//! Network backends (HTTP, gRPC, NATS transports; mDNS, etcd, Consul registries; HTTP, NATS,
//! Kafka, RabbitMQ brokers) are separate crates; each gets a feature here when it lands.

pub use rmicro_core::*;
