//! Which nodes the static registry always has.

use rmicro_core::raw::plugin::{Kind, Settings};
use rmicro_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// The nodes a [`StaticRegistry`](crate::StaticRegistry) always has; nothing in it is secret,
/// so `Debug` shows it all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct StaticConfig {
    /// The configured nodes, in the order given; none by default, which leaves a registry of
    /// this process's registrations alone.
    pub nodes: Vec<StaticNode>,
}

/// One configured node: where one instance of a service listens.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct StaticNode {
    /// The service's name, e.g. `greeter`.
    pub service: String,
    /// The version the node runs; empty when none was given.
    pub version: String,
    /// Where the node's transport listens, in the transport's own terms.
    pub address: String,
}

impl StaticNode {
    /// The node at `address` of `service`, written `name` or `name@version`.
    pub fn new(service: &str, address: &str) -> StaticNode {
        let (name, version) = service.split_once('@').unwrap_or((service, ""));
        StaticNode {
            service: name.trim().to_owned(),
            version: version.trim().to_owned(),
            address: address.trim().to_owned(),
        }
    }

    /// The node's id, made of what configures it, so every process gives the node the same one.
    pub fn id(&self) -> String {
        match self.version.as_str() {
            "" => format!("{}-{}", self.service, self.address),
            version => format!("{}-{version}-{}", self.service, self.address),
        }
    }
}

fn bad(detail: String) -> Error {
    Error::bad_request(detail).with_id("rmicro.config")
}

impl StaticConfig {
    /// Adds the node at `address` of `service` (`name` or `name@version`).
    pub fn with_node(mut self, service: &str, address: &str) -> StaticConfig {
        self.nodes.push(StaticNode::new(service, address));
        self
    }

    /// Adds a node for each `(service, address)` pair.
    pub fn with_nodes<'a>(self, nodes: impl IntoIterator<Item = (&'a str, &'a str)>) -> StaticConfig {
        nodes.into_iter().fold(self, |config, (service, address)| config.with_node(service, address))
    }

    /// The configuration registry-scoped `settings` describe: `address` lists the nodes as
    /// `service=address` (or `service@version=address`) pairs, comma-separated.
    ///
    /// ```
    /// use rmicro_core::raw::plugin::{Kind, Settings};
    /// use rmicro_registry_static::StaticConfig;
    ///
    /// let settings = Settings::new().with("registry_address", "greeter=127.0.0.1:8080, users@2.0=10.0.0.5:9000");
    /// let config = StaticConfig::from_settings(&settings.scoped(Kind::Registry))?;
    /// let expected = StaticConfig::default().with_nodes([("greeter", "127.0.0.1:8080"), ("users@2.0", "10.0.0.5:9000")]);
    /// assert_eq!(config, expected);
    /// # Ok::<(), rmicro_core::Error>(())
    /// ```
    pub fn from_settings(settings: &Settings) -> Result<StaticConfig> {
        let mut config = StaticConfig::default();
        for entry in settings.list("address").unwrap_or_default() {
            let Some((service, address)) = entry.split_once('=') else {
                return Err(bad(format!(
                    "static registry entry {entry:?} is not service=address (registry_address lists \
                     service=address pairs, comma-separated)"
                )));
            };
            config = config.with_node(service, address);
        }
        config.check()?;
        Ok(config)
    }

    /// The configuration the `MICRO_REGISTRY_*` environment variables describe.
    pub fn from_env() -> Result<StaticConfig> {
        StaticConfig::from_settings(&Settings::from_env().scoped(Kind::Registry))
    }

    /// Refuses a node without a service name or without an address.
    pub(crate) fn check(&self) -> Result<()> {
        match self.nodes.iter().find(|node| node.service.is_empty() || node.address.is_empty()) {
            Some(node) => Err(bad(format!(
                "static registry node {:?} at {:?} needs both a service name and an address",
                node.service, node.address
            ))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use rmicro_core::Code;

    use super::*;

    fn parse(address: &str) -> Result<StaticConfig> {
        StaticConfig::from_settings(&Settings::new().with("registry_address", address).scoped(Kind::Registry))
    }

    #[test]
    fn pairs_give_nodes_with_optional_versions_and_stable_ids() {
        let config = parse("greeter=127.0.0.1:8080,greeter=127.0.0.1:8081, users@1.2 = 10.0.0.5:9000").unwrap();
        let ids: Vec<String> = config.nodes.iter().map(StaticNode::id).collect();
        assert_eq!(ids, ["greeter-127.0.0.1:8080", "greeter-127.0.0.1:8081", "users-1.2-10.0.0.5:9000"]);
        assert_eq!((config.nodes[2].service.as_str(), config.nodes[2].version.as_str()), ("users", "1.2"));
        assert_eq!(
            StaticConfig::from_settings(&Settings::new().scoped(Kind::Registry)).unwrap(),
            StaticConfig::default()
        );
    }

    #[test]
    fn bad_entries_are_bad_requests_that_name_them() {
        for (address, says) in [
            ("greeter=127.0.0.1:8080,users", "\"users\" is not service=address"),
            ("=127.0.0.1:8080", "needs both a service name and an address"),
            ("greeter=", "needs both a service name and an address"),
            ("@1.0=127.0.0.1:1", "needs both a service name and an address"),
        ] {
            let err = parse(address).unwrap_err();
            assert_eq!(err.code, Code::BadRequest, "{address}: {err}");
            assert!(err.detail.contains(says), "{address}: {err}");
        }
    }

    #[test]
    fn builder_nodes_are_checked_too() {
        assert!(StaticConfig::default().with_node("greeter", " ").check().is_err());
        assert!(StaticConfig::default().with_node("greeter", "127.0.0.1:1").check().is_ok());
    }
}
