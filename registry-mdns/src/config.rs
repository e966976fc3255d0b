//! Which interfaces mDNS uses, and how it asks.

use std::net::Ipv4Addr;
use std::time::Duration;

use rmicro_core::raw::plugin::{Kind, Settings};
use rmicro_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// How an [`MdnsRegistry`](crate::MdnsRegistry) announces and listens; nothing in it is secret,
/// so `Debug` shows it all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct MdnsConfig {
    /// IPv4 addresses of the interfaces multicast goes out of and is heard on; loopback alone by
    /// default, so nothing leaves the machine unless asked to.
    pub interfaces: Vec<Ipv4Addr>,
    /// The UDP port (default 5353, mDNS's own); another one keeps a group apart from the host's.
    pub port: u16,
    /// How long the first lookup waits for other nodes to answer its query (default 300 ms):
    /// later lookups read the cache that announcements keep current.
    pub query_wait: Duration,
}

impl Default for MdnsConfig {
    fn default() -> MdnsConfig {
        MdnsConfig { interfaces: vec![Ipv4Addr::LOCALHOST], port: 5353, query_wait: Duration::from_millis(300) }
    }
}

impl MdnsConfig {
    /// Uses the interfaces with these IPv4 addresses.
    pub fn with_interfaces(mut self, interfaces: impl IntoIterator<Item = Ipv4Addr>) -> MdnsConfig {
        self.interfaces = interfaces.into_iter().collect();
        self
    }

    /// Uses UDP port `port`.
    pub fn with_port(mut self, port: u16) -> MdnsConfig {
        self.port = port;
        self
    }

    /// Lets the first lookup wait `wait` for answers.
    pub fn with_query_wait(mut self, wait: Duration) -> MdnsConfig {
        self.query_wait = wait;
        self
    }

    /// The configuration registry-scoped `settings` describe, over the defaults: `address`
    /// (interface IPv4 addresses, comma-separated), `port`, `query_wait`.
    ///
    /// ```
    /// use rmicro_core::raw::plugin::{Kind, Settings};
    /// use rmicro_registry_mdns::MdnsConfig;
    ///
    /// let settings = Settings::new().with("registry_address", "127.0.0.1").with("registry_port", "5354");
    /// let config = MdnsConfig::from_settings(&settings.scoped(Kind::Registry))?;
    /// assert_eq!(config, MdnsConfig::default().with_port(5354));
    /// # Ok::<(), rmicro_core::Error>(())
    /// ```
    pub fn from_settings(settings: &Settings) -> Result<MdnsConfig> {
        let mut config = MdnsConfig::default();
        if let Some(addresses) = settings.list("address") {
            config.interfaces = addresses
                .iter()
                .map(|address| {
                    address.parse().map_err(|_| {
                        Error::bad_request(format!(
                            "mDNS interface {address:?} is not an IPv4 address (registry_address lists the \
                             interfaces' IPv4 addresses, comma-separated)"
                        ))
                        .with_id("rmicro.config")
                    })
                })
                .collect::<Result<_>>()?;
        }
        if let Some(port) = settings.parse("port")? {
            config.port = port;
        }
        if let Some(wait) = settings.duration("query_wait")? {
            config.query_wait = wait;
        }
        Ok(config)
    }

    /// The configuration the `MICRO_REGISTRY_*` environment variables describe.
    pub fn from_env() -> Result<MdnsConfig> {
        MdnsConfig::from_settings(&Settings::from_env().scoped(Kind::Registry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_set_interfaces_port_and_wait_and_refuse_what_is_not_ipv4() {
        let settings = Settings::new()
            .with("registry_address", "127.0.0.1, 10.0.0.2")
            .with("registry_port", "5454")
            .with("registry_query_wait", "50ms");
        let config = MdnsConfig::from_settings(&settings.scoped(Kind::Registry)).unwrap();
        assert_eq!(config.interfaces, [Ipv4Addr::LOCALHOST, Ipv4Addr::new(10, 0, 0, 2)]);
        assert_eq!((config.port, config.query_wait), (5454, Duration::from_millis(50)));
        let err = MdnsConfig::from_settings(&Settings::new().with("registry_address", "eth0").scoped(Kind::Registry))
            .unwrap_err();
        assert!(err.detail.contains("\"eth0\" is not an IPv4 address"), "{err}");
        assert_eq!(MdnsConfig::from_settings(&Settings::new().scoped(Kind::Registry)).unwrap(), MdnsConfig::default());
    }
}
