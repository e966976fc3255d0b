//! Where subscriber endpoints listen and how subscriptions are kept.

use std::time::Duration;

use rmicro_core::Result;
use rmicro_core::raw::plugin::{Kind, Settings};
use serde::{Deserialize, Serialize};

/// Where subscriber endpoints listen when no address is set: loopback, on a port the system
/// picks, since publishers find the endpoint through the registry.
pub(crate) const DEFAULT_ADDRESS: &str = "127.0.0.1:0";

/// Settings of an [`HttpBroker`](crate::HttpBroker); nothing in them is secret, so `Debug` shows
/// them all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct HttpBrokerConfig {
    /// Where subscriber endpoints listen (`host:port`); the address they register is the one
    /// bound, so port 0 is fine.
    pub address: String,
    /// How often a failed or nacked message is handed to the handler again before the publisher
    /// is told, and moves a group's delivery to another member.
    pub redeliveries: u32,
    /// The registration TTL of each subscription, renewed at a third of it: a subscriber that
    /// dies without deregistering stops receiving after at most this long.
    pub ttl: Duration,
}

impl Default for HttpBrokerConfig {
    /// Loopback on any port, 3 redeliveries, a 30 s TTL.
    fn default() -> HttpBrokerConfig {
        HttpBrokerConfig { address: DEFAULT_ADDRESS.to_owned(), redeliveries: 3, ttl: Duration::from_secs(30) }
    }
}

impl HttpBrokerConfig {
    /// The configuration a broker-scoped view of settings describes ([`Settings::scoped`]):
    /// `address`, `redeliveries` and `ttl`, each defaulting as in [`HttpBrokerConfig::default`].
    pub fn from_settings(settings: &Settings) -> Result<HttpBrokerConfig> {
        let mut config = HttpBrokerConfig::default();
        if let Some(address) = settings.get("address") {
            config = config.with_address(address);
        }
        if let Some(redeliveries) = settings.parse("redeliveries")? {
            config = config.with_redeliveries(redeliveries);
        }
        if let Some(ttl) = settings.duration("ttl")? {
            config = config.with_ttl(ttl);
        }
        Ok(config)
    }

    /// The configuration the `MICRO_BROKER_*` environment variables describe.
    pub fn from_env() -> Result<HttpBrokerConfig> {
        HttpBrokerConfig::from_settings(&Settings::from_env().scoped(Kind::Broker))
    }

    /// Listens at `address` (`host:port`).
    pub fn with_address(mut self, address: impl Into<String>) -> HttpBrokerConfig {
        self.address = address.into();
        self
    }

    /// Hands a failed or nacked message to the handler again up to `redeliveries` times.
    pub fn with_redeliveries(mut self, redeliveries: u32) -> HttpBrokerConfig {
        self.redeliveries = redeliveries;
        self
    }

    /// Registers each subscription with this TTL.
    pub fn with_ttl(mut self, ttl: Duration) -> HttpBrokerConfig {
        self.ttl = ttl;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_override_the_defaults() {
        let settings = Settings::new()
            .with("broker_address", "0.0.0.0:7000")
            .with("broker_redeliveries", "0")
            .with("broker_ttl", "2m")
            .scoped(Kind::Broker);
        let config = HttpBrokerConfig::from_settings(&settings).unwrap();
        assert_eq!(
            config,
            HttpBrokerConfig::default()
                .with_address("0.0.0.0:7000")
                .with_redeliveries(0)
                .with_ttl(Duration::from_secs(120))
        );
        assert_eq!(
            HttpBrokerConfig::from_settings(&Settings::new().scoped(Kind::Broker)).unwrap(),
            HttpBrokerConfig::default()
        );
        let bad = Settings::new().with("broker_redeliveries", "many").scoped(Kind::Broker);
        assert!(HttpBrokerConfig::from_settings(&bad).is_err());
    }
}
