//! What a [`NatsTransport`](crate::NatsTransport) is built with.

use std::fmt;

use rmicro_core::Result;
use rmicro_core::raw::plugin::{Kind, Settings};

/// The NATS server the transport connects to unless told otherwise.
pub(crate) const DEFAULT_ADDRESS: &str = "nats://127.0.0.1:4222";

/// Settings for [`NatsTransport::connect`](crate::NatsTransport::connect); plain data, so it can
/// come from code, [`Settings`] or a config file. `Debug` hides the password and the token.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct NatsConfig {
    /// The NATS server's URL (default `nats://127.0.0.1:4222`): every listener and dialled node
    /// shares one connection to it.
    pub address: String,
    /// The largest message either side accepts; `None` (the default) for the server's
    /// `max_payload`, which NATS would refuse to carry anyway.
    pub max_message_size: Option<usize>,
    /// User name and password, for a server that wants them.
    pub credentials: Option<(String, String)>,
    /// Token, for a server that wants one.
    pub token: Option<String>,
}

impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsConfig")
            .field("address", &self.address)
            .field("max_message_size", &self.max_message_size)
            .field("credentials", &self.credentials.as_ref().map(|(user, _)| (user, "<redacted>")))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Default for NatsConfig {
    fn default() -> NatsConfig {
        NatsConfig { address: DEFAULT_ADDRESS.to_owned(), max_message_size: None, credentials: None, token: None }
    }
}

impl NatsConfig {
    /// With the NATS server at `url`.
    pub fn with_address(mut self, url: impl Into<String>) -> NatsConfig {
        self.address = url.into();
        self
    }

    /// With `bytes` as the largest message either side accepts (at most the server's
    /// `max_payload`).
    pub fn with_max_message_size(mut self, bytes: usize) -> NatsConfig {
        self.max_message_size = Some(bytes);
        self
    }

    /// Authenticating with a user name and password.
    pub fn with_credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> NatsConfig {
        self.credentials = Some((user.into(), password.into()));
        self
    }

    /// Authenticating with a token.
    pub fn with_token(mut self, token: impl Into<String>) -> NatsConfig {
        self.token = Some(token.into());
        self
    }

    /// The defaults with what `settings` (scoped to transports) say: `address`,
    /// `max_message_size`, `user` and `password` (together), `token`.
    pub fn from_settings(settings: &Settings) -> Result<NatsConfig> {
        let mut config = NatsConfig::default();
        if let Some(url) = settings.get("address") {
            config.address = url.trim().to_owned();
        }
        config.max_message_size = settings.parse("max_message_size")?;
        config.credentials =
            settings.pair("user", "password")?.map(|(user, password)| (user.to_owned(), password.to_owned()));
        config.token = settings.get("token").map(str::to_owned);
        Ok(config)
    }

    /// The defaults with what the `MICRO_TRANSPORT_*` environment variables say.
    pub fn from_env() -> Result<NatsConfig> {
        NatsConfig::from_settings(&Settings::from_env().scoped(Kind::Transport))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let shown = format!("{:?}", NatsConfig::default().with_credentials("ada", "pw-123").with_token("tok-456"));
        assert!(!shown.contains("pw-123") && !shown.contains("tok-456") && shown.contains("ada"), "{shown}");
    }

    #[test]
    fn settings_are_read_without_the_transport_prefix() {
        let settings = Settings::new()
            .with("transport_address", "nats://nats:4222")
            .with("transport_max_message_size", "65536")
            .with("transport_user", "ada")
            .with("transport_password", "pw")
            .scoped(Kind::Transport);
        let expected = NatsConfig::default()
            .with_address("nats://nats:4222")
            .with_max_message_size(65536)
            .with_credentials("ada", "pw");
        assert_eq!(NatsConfig::from_settings(&settings).unwrap(), expected);
        let half = Settings::new().with("transport_user", "ada").scoped(Kind::Transport);
        assert!(NatsConfig::from_settings(&half).is_err());
    }
}
