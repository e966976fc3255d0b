#![doc = include_str!("../docs/implementing.md")]

mod arrivals;
mod credit;
mod listener;
pub mod plugin;

mod registration;
mod relist;
mod subscription;
mod watch;

pub use arrivals::{Arrival, Arrivals, CallQueue, arrivals};
pub use credit::{RecvCredit, STREAM_GRANT, STREAM_WINDOW, SendCredit};
pub use listener::{AcceptLoop, Listening, QueueListener, SHUTDOWN_GRACE};
pub use registration::check_registration;
pub use relist::{changes, send_changes};
pub use subscription::{WorkerSubscription, handle_safely, settle_channel};
pub use watch::broadcast_watcher;

/// The error for a message over a transport's size limit, the same from every transport.
pub fn too_large(len: usize, max: usize) -> crate::Error {
    crate::Error::new(crate::Code::PayloadTooLarge, format!("message of {len} bytes exceeds the limit of {max} bytes"))
}
