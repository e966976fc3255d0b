//! How to reach the Consul agent.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Connection settings for [`ConsulRegistry`](crate::ConsulRegistry).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ConsulConfig {
    /// The agent's HTTP address, e.g. `http://127.0.0.1:8500` (`https://` for TLS).
    pub address: String,
    /// ACL token, sent as `X-Consul-Token`.
    pub token: Option<String>,
    /// PEM file of the CA that signed the agent's certificate; required for `https://`.
    pub ca_file: Option<PathBuf>,
    /// The longest a blocking query waits (Consul's `wait`, at most 10 minutes).
    pub watch_wait: Duration,
    /// How long a node stays registered once its TTL check turned critical (Consul's
    /// `DeregisterCriticalServiceAfter`; Consul's minimum is one minute).
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
        ConsulConfig::new("http://127.0.0.1:8500")
    }
}

impl ConsulConfig {
    /// Settings for the agent at `address` (`host:port` means `http://host:port`).
    pub fn new(address: impl Into<String>) -> ConsulConfig {
        let mut address = address.into();
        if !address.contains("://") {
            address = format!("http://{address}");
        }
        ConsulConfig {
            address: address.trim_end_matches('/').to_owned(),
            token: None,
            ca_file: None,
            watch_wait: Duration::from_secs(30),
            deregister_critical_after: Duration::from_secs(60),
        }
    }

    /// Sends `token` as the ACL token.
    pub fn token(mut self, token: impl Into<String>) -> ConsulConfig {
        self.token = Some(token.into());
        self
    }

    /// Trusts the CA in `pem` for `https://` addresses.
    pub fn ca_file(mut self, pem: impl Into<PathBuf>) -> ConsulConfig {
        self.ca_file = Some(pem.into());
        self
    }

    /// Sets the longest wait of a blocking query.
    pub fn watch_wait(mut self, wait: Duration) -> ConsulConfig {
        self.watch_wait = wait;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_token_and_addresses_get_a_scheme() {
        let config = ConsulConfig::new("127.0.0.1:8500").token("s3cr3t");
        assert_eq!(config.address, "http://127.0.0.1:8500");
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }
}
