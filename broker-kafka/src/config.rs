//! How to reach Kafka.

use std::collections::BTreeMap;
use std::fmt;

use rdkafka::ClientConfig;
use rmicro_core::raw::plugin::{Kind, Settings};
use rmicro_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// The bootstrap server used when no address is set: a local Kafka on the standard port.
pub(crate) const DEFAULT_ADDRESS: &str = "127.0.0.1:9092";

/// Parts of librdkafka property names whose values `Debug` hides (`sasl.password`,
/// `ssl.key.password`, `sasl.oauthbearer.client.secret`, `ssl.key.pem`, ...).
const SECRET_PROPERTIES: &[&str] = &["password", "secret", "key.pem"];

/// How to reach Kafka; `Debug` hides secret properties such as SASL passwords.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated `host:port`.
    pub address: String,
    /// Partitions of topics this broker creates.
    pub partitions: i32,
    /// Extra librdkafka properties (SASL, TLS, tuning), applied to producer and consumers.
    pub properties: BTreeMap<String, String>,
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| {
                let secret = SECRET_PROPERTIES.iter().any(|word| k.contains(word));
                (k.as_str(), if secret { "<redacted>" } else { v.as_str() })
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("address", &self.address)
            .field("partitions", &self.partitions)
            .field("properties", &shown)
            .finish()
    }
}

impl Default for KafkaConfig {
    /// The local Kafka; topics it creates get one partition.
    fn default() -> KafkaConfig {
        KafkaConfig { address: DEFAULT_ADDRESS.to_owned(), partitions: 1, properties: BTreeMap::new() }
    }
}

impl KafkaConfig {
    /// The configuration a broker-scoped view of settings describes ([`Settings::scoped`]):
    /// `address`, `partitions`, and `properties`, librdkafka properties as `key=value` items
    /// separated by commas (a value that holds a comma must be set with
    /// [`with_property`](KafkaConfig::with_property)).
    pub fn from_settings(settings: &Settings) -> Result<KafkaConfig> {
        let mut config = KafkaConfig::default();
        if let Some(address) = settings.get("address") {
            config = config.with_address(address);
        }
        if let Some(partitions) = settings.parse("partitions")? {
            config = config.with_partitions(partitions);
        }
        for property in settings.list("properties").unwrap_or_default() {
            match property.split_once('=') {
                Some((key, value)) if !key.trim().is_empty() => config = config.with_property(key.trim(), value.trim()),
                _ => {
                    return Err(Error::bad_request(
                        "setting broker_properties must be key=value items separated by commas",
                    )
                    .with_id("rmicro.config"));
                }
            }
        }
        Ok(config)
    }

    /// The configuration the `MICRO_BROKER_*` environment variables describe.
    pub fn from_env() -> Result<KafkaConfig> {
        KafkaConfig::from_settings(&Settings::from_env().scoped(Kind::Broker))
    }

    /// Bootstraps from `address`, comma-separated `host:port`.
    pub fn with_address(mut self, address: impl Into<String>) -> KafkaConfig {
        self.address = address.into();
        self
    }

    /// Sets a librdkafka property (e.g. `security.protocol=SASL_SSL`).
    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> KafkaConfig {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// Partitions of the topics this broker creates (at least 1).
    pub fn with_partitions(mut self, partitions: i32) -> KafkaConfig {
        self.partitions = partitions.max(1);
        self
    }

    pub(crate) fn client(&self) -> ClientConfig {
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", &self.address);
        for (key, value) in &self.properties {
            client.set(key, value);
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secret_properties() {
        let config =
            KafkaConfig::default().with_property("sasl.username", "ada").with_property("sasl.password", "pw-123");
        let shown = format!("{config:?}");
        assert!(!shown.contains("pw-123") && shown.contains("ada"), "{shown}");
    }

    #[test]
    fn settings_override_the_defaults() {
        let settings = Settings::new()
            .with("broker_address", "k1:9092,k2:9092")
            .with("broker_partitions", "6")
            .with("broker_properties", "security.protocol=SASL_SSL, sasl.mechanisms=PLAIN")
            .scoped(Kind::Broker);
        let expected = KafkaConfig::default()
            .with_address("k1:9092,k2:9092")
            .with_partitions(6)
            .with_property("security.protocol", "SASL_SSL")
            .with_property("sasl.mechanisms", "PLAIN");
        assert_eq!(KafkaConfig::from_settings(&settings).unwrap(), expected);
        let bad = Settings::new().with("broker_properties", "acks").scoped(Kind::Broker);
        assert!(KafkaConfig::from_settings(&bad).is_err());
    }
}
