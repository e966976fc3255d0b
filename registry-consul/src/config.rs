//! How to reach the Consul agent.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use rmicro_core::Result;
use rmicro_core::raw::plugin::{Kind, Settings};
use serde::{Deserialize, Serialize};

/// Connection settings for [`ConsulRegistry`](crate::ConsulRegistry).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ConsulConfig {
    /// The agent's HTTP address (default `127.0.0.1:8500`): `host:port` means
    /// `http://host:port`; `https://` for TLS.
    pub address: String,
    /// ACL token, sent as `X-Consul-Token`, for agents that enforce ACLs.
    pub token: Option<String>,
    /// PEM file of the CA that signed the agent's certificate; required for `https://`, as only
    /// this CA is trusted.
    pub ca_file: Option<PathBuf>,
    /// The longest a blocking query waits (Consul's `wait`, at most 10 minutes; default 30 s):
    /// longer means fewer requests while nothing changes.
    pub watch_wait: Duration,
    /// How long a node stays registered once its TTL check turned critical (Consul's
    /// `DeregisterCriticalServiceAfter`, at least one minute; default one minute), so the
    /// catalog does not keep dead nodes.
    pub deregister_critical_after: Duration,
}

impl fmt::Debug for ConsulConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsulConfig")
            .field("address", &self.address)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("watch_wait", &self.watch_wait)
            .field("deregister_critical_after", &self.deregister_critical_after)
            .finish()
    }
}

impl Default for ConsulConfig {
    fn default() -> ConsulConfig {
        ConsulConfig {
            address: "127.0.0.1:8500".to_owned(),
            token: None,
            ca_file: None,
            watch_wait: Duration::from_secs(30),
            deregister_critical_after: Duration::from_secs(60),
        }
    }
}

impl ConsulConfig {
    /// Talks to the agent at `address`.
    pub fn with_address(mut self, address: impl Into<String>) -> ConsulConfig {
        self.address = address.into();
        self
    }

    /// Sends `token` as the ACL token.
    pub fn with_token(mut self, token: impl Into<String>) -> ConsulConfig {
        self.token = Some(token.into());
        self
    }

    /// Trusts the CA in `pem` for `https://` addresses.
    pub fn with_ca_file(mut self, pem: impl Into<PathBuf>) -> ConsulConfig {
        self.ca_file = Some(pem.into());
        self
    }

    /// Sets the longest wait of a blocking query.
    pub fn with_watch_wait(mut self, wait: Duration) -> ConsulConfig {
        self.watch_wait = wait;
        self
    }

    /// Sets how long a node whose check turned critical stays registered.
    pub fn with_deregister_critical_after(mut self, after: Duration) -> ConsulConfig {
        self.deregister_critical_after = after;
        self
    }

    /// The configuration registry-scoped `settings` describe, over the defaults: `address`,
    /// `token`, `tls_ca` (the CA file), `watch_wait`, `deregister_critical_after`.
    ///
    /// ```
    /// use rmicro_core::raw::plugin::{Kind, Settings};
    /// use rmicro_registry_consul::ConsulConfig;
    ///
    /// let settings = Settings::new().with("registry_address", "10.0.0.1:8500").with("registry_token", "acl-token");
    /// let config = ConsulConfig::from_settings(&settings.scoped(Kind::Registry))?;
    /// assert_eq!(config, ConsulConfig::default().with_address("10.0.0.1:8500").with_token("acl-token"));
    /// # Ok::<(), rmicro_core::Error>(())
    /// ```
    pub fn from_settings(settings: &Settings) -> Result<ConsulConfig> {
        let mut config = ConsulConfig::default();
        if let Some(address) = settings.get("address") {
            config.address = address.trim().to_owned();
        }
        config.token = settings.get("token").map(str::to_owned);
        config.ca_file = settings.get("tls_ca").map(PathBuf::from);
        if let Some(wait) = settings.duration("watch_wait")? {
            config.watch_wait = wait;
        }
        if let Some(after) = settings.duration("deregister_critical_after")? {
            config.deregister_critical_after = after;
        }
        Ok(config)
    }

    /// The configuration the `MICRO_REGISTRY_*` environment variables describe.
    pub fn from_env() -> Result<ConsulConfig> {
        ConsulConfig::from_settings(&Settings::from_env().scoped(Kind::Registry))
    }

    /// The address as a base URL: with a scheme, without a trailing `/`.
    pub(crate) fn base_url(&self) -> String {
        let address = self.address.trim_end_matches('/');
        if address.contains("://") { address.to_owned() } else { format!("http://{address}") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_token_and_addresses_get_a_scheme() {
        let config = ConsulConfig::default().with_token("s3cr3t");
        assert_eq!(config.base_url(), "http://127.0.0.1:8500");
        assert_eq!(config.with_address("https://consul:8501/").base_url(), "https://consul:8501");
        let shown = format!("{:?}", ConsulConfig::default().with_token("s3cr3t"));
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }

    #[test]
    fn settings_set_every_knob_over_the_defaults() {
        let settings = Settings::new()
            .with("registry_address", "https://consul:8501")
            .with("registry_token", "s3cr3t")
            .with("registry_tls_ca", "/etc/consul/ca.pem")
            .with("registry_watch_wait", "5s")
            .with("registry_deregister_critical_after", "2m");
        let config = ConsulConfig::from_settings(&settings.scoped(Kind::Registry)).unwrap();
        let expected = ConsulConfig::default()
            .with_address("https://consul:8501")
            .with_token("s3cr3t")
            .with_ca_file("/etc/consul/ca.pem")
            .with_watch_wait(Duration::from_secs(5))
            .with_deregister_critical_after(Duration::from_secs(120));
        assert_eq!(config, expected);
        assert_eq!(
            ConsulConfig::from_settings(&Settings::new().scoped(Kind::Registry)).unwrap(),
            ConsulConfig::default()
        );
    }
}
