//! Token authentication (rpcx's `Auth`): the client sends a token with every call, a server
//! layer checks it against per-endpoint rules.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tower_layer::Layer;
use tower_service::Service;

use crate::client::ClientRequest;
use crate::error::{Error, Result};
use crate::server::ServerRequest;

/// The metadata key the token travels in.
pub const AUTHORIZATION: &str = "authorization";

/// Who a valid token belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// The token's subject, for logs.
    pub subject: String,
    /// The roles the token grants.
    pub roles: HashSet<String>,
}

impl Identity {
    /// An identity of `subject` with `roles`.
    pub fn new(subject: impl Into<String>, roles: impl IntoIterator<Item = impl Into<String>>) -> Identity {
        Identity { subject: subject.into(), roles: roles.into_iter().map(Into::into).collect() }
    }
}

/// Client side: sends `Bearer <token>` with every call.
#[derive(Clone)]
pub struct TokenLayer {
    header: Arc<str>,
}

impl fmt::Debug for TokenLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenLayer(<redacted>)")
    }
}

impl TokenLayer {
    /// Sends `token` as a bearer token.
    pub fn bearer(token: &str) -> TokenLayer {
        TokenLayer { header: Arc::from(format!("Bearer {token}")) }
    }
}

impl<S> Layer<S> for TokenLayer {
    type Service = Token<S>;

    fn layer(&self, inner: S) -> Token<S> {
        Token { inner, header: self.header.clone() }
    }
}

/// The service made by [`TokenLayer`].
#[derive(Clone)]
pub struct Token<S> {
    inner: S,
    header: Arc<str>,
}

impl<S> fmt::Debug for Token<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl<S: Service<ClientRequest>> Service<ClientRequest> for Token<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: ClientRequest) -> S::Future {
        req.metadata.insert(AUTHORIZATION, self.header.to_string());
        self.inner.call(req)
    }
}

type Verify = dyn Fn(&str) -> Option<Identity> + Send + Sync;

/// What an endpoint requires.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Rule {
    Public,
    Role(String),
}

/// Server side: checks the caller's token. Endpoints are authenticated unless declared
/// [`public`](AuthLayer::public); an endpoint may also [require a role](AuthLayer::require_role).
/// No or an invalid token is [`Code::Unauthorized`](crate::Code::Unauthorized) (401); a valid
/// token without the role is [`Code::Forbidden`](crate::Code::Forbidden) (403).
#[derive(Clone)]
pub struct AuthLayer {
    verify: Arc<Verify>,
    rules: Arc<HashMap<String, Rule>>,
}

impl fmt::Debug for AuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthLayer").field("rules", &self.rules).finish_non_exhaustive()
    }
}

impl AuthLayer {
    /// Checks tokens with `verify`, which returns the token's identity or `None` when invalid.
    pub fn new(verify: impl Fn(&str) -> Option<Identity> + Send + Sync + 'static) -> AuthLayer {
        AuthLayer { verify: Arc::new(verify), rules: Arc::default() }
    }

    /// Lets anyone call `endpoint`, token or not.
    pub fn public(self, endpoint: &str) -> AuthLayer {
        self.rule(endpoint, Rule::Public)
    }

    /// Requires a token granting `role` to call `endpoint`.
    pub fn require_role(self, endpoint: &str, role: &str) -> AuthLayer {
        self.rule(endpoint, Rule::Role(role.to_owned()))
    }

    fn rule(mut self, endpoint: &str, rule: Rule) -> AuthLayer {
        Arc::make_mut(&mut self.rules).insert(endpoint.to_owned(), rule);
        self
    }

    fn check(&self, req: &ServerRequest) -> Result<()> {
        let rule = self.rules.get(&req.endpoint);
        if rule == Some(&Rule::Public) {
            return Ok(());
        }
        let token = req
            .context
            .metadata()
            .get(AUTHORIZATION)
            .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::unauthorized(format!("{} needs a token", req.endpoint)))?;
        let identity = (self.verify)(token).ok_or_else(|| Error::unauthorized("the token is not valid"))?;
        match rule {
            Some(Rule::Role(role)) if !identity.roles.contains(role) => {
                Err(Error::forbidden(format!("{} needs the role {role}; {} lacks it", req.endpoint, identity.subject)))
            }
            _ => Ok(()),
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth { inner, layer: self.clone() }
    }
}

/// The service made by [`AuthLayer`].
#[derive(Clone, Debug)]
pub struct Auth<S> {
    inner: S,
    layer: AuthLayer,
}

impl<S> Service<ServerRequest> for Auth<S>
where
    S: Service<ServerRequest, Error = Error>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = Error;
    type Future = BoxFuture<'static, Result<S::Response>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: ServerRequest) -> Self::Future {
        match self.layer.check(&req) {
            Ok(()) => Box::pin(self.inner.call(req)),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }
}
