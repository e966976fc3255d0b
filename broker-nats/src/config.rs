//! How to reach NATS and whether to use JetStream.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Connection settings for [`NatsBroker`](crate::NatsBroker).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NatsConfig {
    /// Server URL(s), comma-separated, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// User name and password, if the server wants them.
    pub credentials: Option<(String, String)>,
    /// Token, if the server wants one.
    pub token: Option<String>,
    /// JetStream settings; `None` for core NATS (no durability, no redelivery).
    pub jetstream: Option<JetStreamConfig>,
}

/// JetStream settings: the stream that keeps published messages, and how deliveries are acked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct JetStreamConfig {
    /// The stream's name (created if missing).
    pub stream: String,
    /// Topics are published as `<prefix><topic>`; the stream keeps `<prefix>>`.
    pub subject_prefix: String,
    /// How long the server waits for an ack before delivering again.
    pub ack_wait: Duration,
    /// How long the stream keeps messages.
    pub max_age: Duration,
    /// How long a queue group's durable consumer survives with no member connected.
    pub durable_idle: Duration,
}

impl Default for JetStreamConfig {
    fn default() -> JetStreamConfig {
        JetStreamConfig {
            stream: "RMICRO".to_owned(),
            subject_prefix: "rmicro.events.".to_owned(),
            ack_wait: Duration::from_secs(30),
            max_age: Duration::from_secs(24 * 3600),
            durable_idle: Duration::from_secs(24 * 3600),
        }
    }
}

impl JetStreamConfig {
    /// The stream `name` keeping subjects under `subject_prefix`.
    pub fn new(name: impl Into<String>, subject_prefix: impl Into<String>) -> JetStreamConfig {
        JetStreamConfig { stream: name.into(), subject_prefix: subject_prefix.into(), ..JetStreamConfig::default() }
    }

    /// Sets the ack wait (redelivery after a handler that neither acked nor nacked).
    pub fn ack_wait(mut self, wait: Duration) -> JetStreamConfig {
        self.ack_wait = wait;
        self
    }
}

impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsConfig")
            .field("url", &self.url)
            .field("credentials", &self.credentials.as_ref().map(|(user, _)| (user, "<redacted>")))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("jetstream", &self.jetstream)
            .finish()
    }
}

impl Default for NatsConfig {
    fn default() -> NatsConfig {
        NatsConfig::new("nats://127.0.0.1:4222")
    }
}

impl NatsConfig {
    /// Core NATS at `url`.
    pub fn new(url: impl Into<String>) -> NatsConfig {
        NatsConfig { url: url.into(), credentials: None, token: None, jetstream: None }
    }

    /// Uses JetStream with these settings.
    pub fn jetstream(mut self, jetstream: JetStreamConfig) -> NatsConfig {
        self.jetstream = Some(jetstream);
        self
    }

    /// Authenticates with a user name and password.
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> NatsConfig {
        self.credentials = Some((user.into(), password.into()));
        self
    }

    /// Authenticates with a token.
    pub fn token(mut self, token: impl Into<String>) -> NatsConfig {
        self.token = Some(token.into());
        self
    }

    /// The async-nats connect options for these settings.
    pub(crate) fn connect_options(&self) -> async_nats::ConnectOptions {
        let mut options = async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(5));
        if let Some((user, password)) = &self.credentials {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(token) = &self.token {
            options = options.token(token.clone());
        }
        options
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let shown = format!("{:?}", NatsConfig::default().credentials("ada", "pw-123").token("tok-456"));
        assert!(!shown.contains("pw-123") && !shown.contains("tok-456"), "{shown}");
    }
}
