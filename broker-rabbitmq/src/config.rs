//! How to reach RabbitMQ and how to lay out the topology.

use std::fmt;
use std::time::Duration;

use rmicro_core::Result;
use rmicro_core::raw::plugin::{Kind, Settings};
use serde::{Deserialize, Serialize};

/// The broker dialled when no address is set: a local RabbitMQ with its stock `guest` user and
/// default vhost.
pub(crate) const DEFAULT_ADDRESS: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// How to reach RabbitMQ and how to lay out the topology; `Debug` hides the credentials in the
/// URL.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct RabbitConfig {
    /// The AMQP URL, with credentials and vhost (`amqps://` for TLS).
    pub address: String,
    /// The topic exchange (durable).
    pub exchange: String,
    /// Unacked deliveries a subscription may hold (QoS prefetch).
    pub prefetch: u16,
    /// How long one exchange with RabbitMQ (connecting, a declaration, a publisher confirm, an
    /// ack) may take before it counts as failed: a broker that is still starting can accept a
    /// connection and not answer on it, and a connection that died can leave lapin waiting.
    pub answer_timeout: Duration,
    /// How long a queue group's durable queue outlives its last member (RabbitMQ's `x-expires`,
    /// messages waiting in it included); `None` keeps it until it is deleted by hand. RabbitMQ
    /// refuses to declare an existing queue again with another value.
    pub group_idle: Option<Duration>,
}

impl fmt::Debug for RabbitConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let address = match self.address.split_once('@') {
            Some((credentials, rest)) => {
                format!("{}<redacted>@{rest}", &credentials[..credentials.find("://").map_or(0, |i| i + 3)])
            }
            None => self.address.clone(),
        };
        f.debug_struct("RabbitConfig")
            .field("address", &address)
            .field("exchange", &self.exchange)
            .field("prefetch", &self.prefetch)
            .field("answer_timeout", &self.answer_timeout)
            .field("group_idle", &self.group_idle)
            .finish()
    }
}

impl Default for RabbitConfig {
    /// The local broker, exchange `micro`, prefetch 16, answers awaited 10 seconds, group
    /// queues kept until deleted.
    fn default() -> RabbitConfig {
        RabbitConfig {
            address: DEFAULT_ADDRESS.to_owned(),
            exchange: "micro".to_owned(),
            prefetch: 16,
            answer_timeout: Duration::from_secs(10),
            group_idle: None,
        }
    }
}

impl RabbitConfig {
    /// The configuration a broker-scoped view of settings describes ([`Settings::scoped`]):
    /// `address`, `exchange`, `prefetch`, `group_idle` and `answer_timeout`, each defaulting as
    /// in [`RabbitConfig::default`].
    pub fn from_settings(settings: &Settings) -> Result<RabbitConfig> {
        let mut config = RabbitConfig::default();
        if let Some(address) = settings.get("address") {
            config = config.with_address(address);
        }
        if let Some(exchange) = settings.get("exchange") {
            config = config.with_exchange(exchange);
        }
        if let Some(prefetch) = settings.parse("prefetch")? {
            config = config.with_prefetch(prefetch);
        }
        if let Some(idle) = settings.duration("group_idle")? {
            config = config.with_group_idle(idle);
        }
        if let Some(timeout) = settings.duration("answer_timeout")? {
            config = config.with_answer_timeout(timeout);
        }
        Ok(config)
    }

    /// The configuration the `MICRO_BROKER_*` environment variables describe.
    pub fn from_env() -> Result<RabbitConfig> {
        RabbitConfig::from_settings(&Settings::from_env().scoped(Kind::Broker))
    }

    /// Dials the AMQP URL `address`.
    pub fn with_address(mut self, address: impl Into<String>) -> RabbitConfig {
        self.address = address.into();
        self
    }

    /// Uses the topic exchange `name`.
    pub fn with_exchange(mut self, name: impl Into<String>) -> RabbitConfig {
        self.exchange = name.into();
        self
    }

    /// Sets the prefetch (QoS) of each subscription.
    pub fn with_prefetch(mut self, prefetch: u16) -> RabbitConfig {
        self.prefetch = prefetch;
        self
    }

    /// Deletes a queue group's queue once no member has consumed from it for `idle`.
    pub fn with_group_idle(mut self, idle: Duration) -> RabbitConfig {
        self.group_idle = Some(idle);
        self
    }

    /// Sets how long one exchange with RabbitMQ may take before it counts as failed.
    pub fn with_answer_timeout(mut self, timeout: Duration) -> RabbitConfig {
        self.answer_timeout = timeout;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        let shown = format!("{:?}", RabbitConfig::default().with_address("amqps://ada:pw-123@rabbit:5671/prod"));
        assert!(!shown.contains("pw-123") && shown.contains("amqps://<redacted>@rabbit:5671/prod"), "{shown}");
    }

    #[test]
    fn settings_override_the_defaults() {
        let settings = Settings::new()
            .with("broker_address", "amqp://rabbit/%2f")
            .with("broker_exchange", "events")
            .with("broker_prefetch", "4")
            .with("broker_group_idle", "1h")
            .with("broker_answer_timeout", "2s")
            .scoped(Kind::Broker);
        let expected = RabbitConfig::default()
            .with_address("amqp://rabbit/%2f")
            .with_exchange("events")
            .with_prefetch(4)
            .with_group_idle(Duration::from_secs(3600))
            .with_answer_timeout(Duration::from_secs(2));
        assert_eq!(RabbitConfig::from_settings(&settings).unwrap(), expected);
        let bad = Settings::new().with("broker_prefetch", "100000").scoped(Kind::Broker);
        assert!(RabbitConfig::from_settings(&bad).is_err());
    }
}
