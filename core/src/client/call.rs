//! What a call is: the typed descriptor users build, and the encoded form layers see.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::fail_mode::FailMode;
use crate::context::Context;
use crate::metadata::Metadata;
use crate::registry::Node;
use crate::selector::Filter;
use crate::wrapper::auth::AUTHORIZATION;

/// Which endpoint to call and how: metadata, deadline, retries, node choice.
///
/// ```
/// # use std::time::Duration;
/// # use rmicro_core::client::Call;
/// let call = Call::new("greeter", "Greeter.Hello")
///     .timeout(Duration::from_millis(200))
///     .metadata("x-user", "ada");
/// ```
#[derive(Clone, Debug)]
pub struct Call {
    pub(crate) service: String,
    pub(crate) endpoint: String,
    pub(crate) metadata: Metadata,
    pub(crate) content_type: Option<String>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) address: Option<String>,
    pub(crate) fail_mode: Option<FailMode>,
    pub(crate) idempotent: Option<bool>,
    pub(crate) key: Option<String>,
    pub(crate) filters: Vec<Filter>,
}

impl Call {
    /// A call to `endpoint` (e.g. `Greeter.Hello`) of `service` (e.g. `greeter`).
    pub fn new(service: impl Into<String>, endpoint: impl Into<String>) -> Call {
        Call {
            service: service.into(),
            endpoint: endpoint.into(),
            metadata: Metadata::new(),
            content_type: None,
            timeout: None,
            deadline: None,
            address: None,
            fail_mode: None,
            idempotent: None,
            key: None,
            filters: Vec::new(),
        }
    }

    /// Sends `key: value` with the call.
    pub fn metadata(mut self, key: &str, value: impl Into<String>) -> Call {
        self.metadata.insert(key, value);
        self
    }

    /// Encodes the request in `content_type` instead of the client's default.
    pub fn content_type(mut self, content_type: impl Into<String>) -> Call {
        self.content_type = Some(content_type.into());
        self
    }

    /// Gives the whole call (every attempt together) `timeout` to complete.
    pub fn timeout(mut self, timeout: Duration) -> Call {
        self.timeout = Some(timeout);
        self
    }

    /// Requires the call to complete by `deadline`.
    pub fn deadline(mut self, deadline: Instant) -> Call {
        self.deadline = Some(self.deadline.map_or(deadline, |d| d.min(deadline)));
        self
    }

    /// Calls the node at `address` directly, bypassing the registry.
    pub fn address(mut self, address: impl Into<String>) -> Call {
        self.address = Some(address.into());
        self
    }

    /// Tries up to `retries` other nodes after a failure that is safe to send again
    /// (shorthand for [`FailMode::Failover`]).
    pub fn retries(mut self, retries: u32) -> Call {
        self.fail_mode = Some(FailMode::Failover(retries));
        self
    }

    /// How this call reacts to a failed attempt (the client's default otherwise).
    pub fn fail_mode(mut self, mode: FailMode) -> Call {
        self.fail_mode = Some(mode);
        self
    }

    /// Declares that running this call twice does no harm, so it may be retried after errors
    /// raised once the request was sent, and hedged.
    pub fn idempotent(mut self) -> Call {
        self.idempotent = Some(true);
        self
    }

    /// The key that key-routing strategies ([`ConsistentHash`](crate::selector::ConsistentHash))
    /// route this call by.
    pub fn hash_key(mut self, key: impl Into<String>) -> Call {
        self.key = Some(key.into());
        self
    }

    /// Narrows the nodes this call may go to.
    pub fn filter(mut self, filter: Filter) -> Call {
        self.filters.push(filter);
        self
    }

    /// Continues the call chain of a handler: the call inherits the caller's deadline and
    /// all its metadata, credentials included (its own metadata wins where both set a key).
    /// A call made while the handler runs does this by itself, but for the credentials.
    pub fn context(self, ctx: &Context) -> Call {
        self.continuing(ctx, ctx.metadata().clone())
    }

    /// What a call made while a handler runs takes from the incoming call without being asked:
    /// its deadline and the metadata meant to travel, which is all of it but the caller's
    /// `authorization`: credentials are presented to one service, not forwarded to every
    /// service it calls (pass them on with [`Call::context`] where that is meant).
    pub(crate) fn inherit(self, ctx: &Context) -> Call {
        let mut travelling = ctx.metadata().clone();
        travelling.remove(AUTHORIZATION);
        self.continuing(ctx, travelling)
    }

    fn continuing(mut self, ctx: &Context, mut metadata: Metadata) -> Call {
        metadata.merge(&self.metadata);
        self.metadata = metadata;
        if let Some(deadline) = ctx.deadline() {
            self = self.deadline(Instant::from_std(deadline));
        }
        self
    }
}

/// A call with its body encoded: what client layers see.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientRequest {
    /// The service called.
    pub service: String,
    /// The endpoint called.
    pub endpoint: String,
    /// The content type of `body`.
    pub content_type: String,
    /// Metadata sent with the call.
    pub metadata: Metadata,
    /// The encoded request.
    pub body: Bytes,
    /// When the whole call must be done.
    pub deadline: Option<Instant>,
    /// The node this attempt goes to (set for per-attempt layers; set before dispatch, it pins
    /// the call to that node).
    pub node: Option<Arc<Node>>,
    /// Which attempt this is, from 1.
    pub attempt: u32,
    /// How the call reacts to a failed attempt.
    pub fail_mode: FailMode,
    /// Whether running the call twice does no harm.
    pub idempotent: bool,
    pub(crate) address: Option<String>,
    pub(crate) key: Option<String>,
    pub(crate) filters: Vec<Filter>,
}

/// A decoded response with the metadata the server sent back.
#[derive(Clone, Debug)]
pub struct Response<M> {
    metadata: Metadata,
    message: M,
}

impl<M> Response<M> {
    pub(crate) fn new(metadata: Metadata, message: M) -> Response<M> {
        Response { metadata, message }
    }

    /// The server's metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The response message.
    pub fn get_ref(&self) -> &M {
        &self.message
    }

    /// The response message, owned.
    pub fn into_inner(self) -> M {
        self.message
    }
}
