//! The backend author's API: the plumbing every transport, registry and broker shares, written
//! once here (as opendal keeps its backend-facing API in `raw`). Service authors need nothing
//! from this module.
//!
//! - transports: [`Arrivals`] hands a listener's calls to the server (or queues them), and
//!   [`too_large`] is the one error for an oversized message;
//! - registries: [`broadcast_watcher`] turns a broadcast of events into a
//!   [`Watcher`](crate::registry::Watcher);
//! - brokers: [`handle_safely`] runs a subscriber so a panic cannot stop its subscription,
//!   [`WorkerSubscription`] is a subscription served by a task, and [`settle_channel`] reports a
//!   manual acknowledgement;
//! - every backend: a [`plugin`] descriptor, through which the `rmicro` facade finds and builds
//!   it from `MICRO_*` settings.

mod arrivals;
pub mod plugin;

mod subscription;
mod watch;

pub use arrivals::{Accepting, Arrival, Arrivals, arrivals};
pub use subscription::{WorkerSubscription, handle_safely, settle_channel};
pub use watch::broadcast_watcher;

/// The error for a message over a transport's size limit, the same from every transport.
pub fn too_large(len: usize, max: usize) -> crate::Error {
    crate::Error::new(crate::Code::PayloadTooLarge, format!("message of {len} bytes exceeds the limit of {max} bytes"))
}
