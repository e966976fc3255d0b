//! Wrappers are tower layers; these are the ones rmicro ships, plus [`from_fn`] for go-micro's
//! function-wrapper ease. Any tower or tonic middleware whose request type fits works as well.
//!
//! Client layers see [`ClientRequest`]s, server layers
//! [`ServerRequest`]s; both carry the service and endpoint called
//! ([`Describe`]), so one layer type can serve both sides.

pub mod auth;
mod from_fn;
mod limit;
mod trace;

pub use auth::{AuthLayer, Identity, TokenLayer};
pub use from_fn::{FromFn, FromFnLayer, Next, from_fn};
pub use limit::{ConcurrencyLimit, ConcurrencyLimitLayer, RateLimit, RateLimitLayer};
pub use trace::{Trace, TraceLayer};

use crate::client::ClientRequest;
use crate::server::ServerRequest;

/// What a call is about, for layers that log, measure or authorize calls.
pub trait Describe {
    /// The service called.
    fn service(&self) -> &str;
    /// The endpoint called.
    fn endpoint(&self) -> &str;
}

impl Describe for ClientRequest {
    fn service(&self) -> &str {
        &self.service
    }
    fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

impl Describe for ServerRequest {
    fn service(&self) -> &str {
        &self.service
    }
    fn endpoint(&self) -> &str {
        &self.endpoint
    }
}
