//! How to reach NATS and whether to use JetStream.

use std::fmt;
use std::time::Duration;

use rmicro_core::Result;
use rmicro_core::raw::plugin::{Kind, Settings};
use serde::{Deserialize, Serialize};

/// The NATS server a broker dials when no address is set: a local one on the standard port.
pub(crate) const DEFAULT_ADDRESS: &str = "nats://127.0.0.1:4222";

/// Connection settings for [`NatsBroker`](crate::NatsBroker); `Debug` hides the password and the
/// token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct NatsConfig {
    /// Server URL(s), comma-separated, e.g. `nats://127.0.0.1:4222`.
    pub address: String,
    /// User name and password, if the server wants them.
    pub credentials: Option<(String, String)>,
    /// Token, if the server wants one.
    pub token: Option<String>,
    /// JetStream settings; `None` for core NATS (no durability, no redelivery).
    pub jetstream: Option<JetStreamConfig>,
}

/// JetStream settings: the stream that keeps published messages, and how deliveries are acked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
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
    /// The stream `RMICRO` keeping `rmicro.events.>` for a day, a 30 s ack wait, durable
    /// consumers kept a day without members.
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
    /// Keeps messages in the stream `name` (separate streams keep deployments apart).
    pub fn with_stream(mut self, name: impl Into<String>) -> JetStreamConfig {
        self.stream = name.into();
        self
    }

    /// Publishes topics under `prefix`, which the stream keeps.
    pub fn with_subject_prefix(mut self, prefix: impl Into<String>) -> JetStreamConfig {
        self.subject_prefix = prefix.into();
        self
    }

    /// Sets the ack wait (redelivery after a handler that neither acked nor nacked).
    pub fn with_ack_wait(mut self, wait: Duration) -> JetStreamConfig {
        self.ack_wait = wait;
        self
    }

    /// Sets how long the stream keeps messages.
    pub fn with_max_age(mut self, age: Duration) -> JetStreamConfig {
        self.max_age = age;
        self
    }

    /// Sets how long a queue group's durable consumer survives with no member connected.
    pub fn with_durable_idle(mut self, idle: Duration) -> JetStreamConfig {
        self.durable_idle = idle;
        self
    }
}

impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsConfig")
            .field("address", &self.address)
            .field("credentials", &self.credentials.as_ref().map(|(user, _)| (user, "<redacted>")))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("jetstream", &self.jetstream)
            .finish()
    }
}

impl Default for NatsConfig {
    /// Core NATS on the local server, without authentication.
    fn default() -> NatsConfig {
        NatsConfig { address: DEFAULT_ADDRESS.to_owned(), credentials: None, token: None, jetstream: None }
    }
}

impl NatsConfig {
    /// The configuration a broker-scoped view of settings describes ([`Settings::scoped`]):
    /// `address`, `user` with `password`, `token`; JetStream (with the default stream) when the
    /// deployment chose `jetstream` or sets `jetstream` true, with `ack_wait`.
    pub fn from_settings(settings: &Settings) -> Result<NatsConfig> {
        let mut config = NatsConfig::default();
        if let Some(address) = settings.get("address") {
            config = config.with_address(address);
        }
        if let Some((user, password)) = settings.pair("user", "password")? {
            config = config.with_credentials(user, password);
        }
        if let Some(token) = settings.get("token") {
            config = config.with_token(token);
        }
        let jetstream = settings.boolean("jetstream")?.unwrap_or(false);
        if jetstream || settings.chosen() == Some("jetstream") {
            let mut jetstream = JetStreamConfig::default();
            if let Some(wait) = settings.duration("ack_wait")? {
                jetstream = jetstream.with_ack_wait(wait);
            }
            config = config.with_jetstream(jetstream);
        }
        Ok(config)
    }

    /// The configuration the `MICRO_BROKER*` environment variables describe.
    pub fn from_env() -> Result<NatsConfig> {
        NatsConfig::from_settings(&Settings::from_env().scoped(Kind::Broker))
    }

    /// Dials the server(s) at `address`, comma-separated URLs.
    pub fn with_address(mut self, address: impl Into<String>) -> NatsConfig {
        self.address = address.into();
        self
    }

    /// Uses JetStream with these settings.
    pub fn with_jetstream(mut self, jetstream: JetStreamConfig) -> NatsConfig {
        self.jetstream = Some(jetstream);
        self
    }

    /// Authenticates with a user name and password.
    pub fn with_credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> NatsConfig {
        self.credentials = Some((user.into(), password.into()));
        self
    }

    /// Authenticates with a token.
    pub fn with_token(mut self, token: impl Into<String>) -> NatsConfig {
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
        let shown = format!("{:?}", NatsConfig::default().with_credentials("ada", "pw-123").with_token("tok-456"));
        assert!(!shown.contains("pw-123") && !shown.contains("tok-456"), "{shown}");
    }

    #[test]
    fn settings_choose_jetstream_and_credentials() {
        let settings = Settings::new()
            .with("broker", "jetstream")
            .with("broker_address", "nats://a:4222,nats://b:4222")
            .with("broker_user", "ada")
            .with("broker_password", "pw")
            .with("broker_ack_wait", "5s")
            .scoped(Kind::Broker);
        let expected = NatsConfig::default()
            .with_address("nats://a:4222,nats://b:4222")
            .with_credentials("ada", "pw")
            .with_jetstream(JetStreamConfig::default().with_ack_wait(Duration::from_secs(5)));
        assert_eq!(NatsConfig::from_settings(&settings).unwrap(), expected);

        let core = Settings::new().with("broker", "nats").scoped(Kind::Broker);
        assert_eq!(NatsConfig::from_settings(&core).unwrap(), NatsConfig::default());
        let switched = Settings::new().with("broker", "nats").with("broker_jetstream", "true").scoped(Kind::Broker);
        assert!(NatsConfig::from_settings(&switched).unwrap().jetstream.is_some());
        let half = Settings::new().with("broker_user", "ada").scoped(Kind::Broker);
        assert!(NatsConfig::from_settings(&half).is_err());
    }
}
