//! Choosing backends and settings at run time, from flags and `MICRO_*` environment variables,
//! among the backends compiled in.
//!
//! Every setting is a key: `MICRO_REGISTRY_ADDRESS` in the environment, `--registry_address`
//! (or `--registry-address`) on the command line, flags winning. `MICRO_TRANSPORT`,
//! `MICRO_REGISTRY` and `MICRO_BROKER` name the backends, each of which reads
//! `{kind}_address` and settings of its own (`MICRO_TRANSPORT_TLS_CERT`, ...), listed by its
//! crate and by [`known_keys`]. Without a name, a kind's default backend is used: the one among
//! the crate's default features (go-micro's stack) when compiled in, else the in-memory one.
//!
//! | Key | Sets | Default |
//! |---|---|---|
//! | `transport`, `registry`, `broker` | the backend of each kind, by name | see above |
//! | `{kind}_address` | where the backend is, in its own terms | the backend's own |
//! | `server_name`, `server_version` | the service's name and version | the program's |
//! | `server_address` | where the server listens | the transport's choice |
//! | `server_metadata` | labels advertised with the service, `key=value,...` | none |
//! | `register_ttl`, `register_interval` | how long a registration lives, and how often it is renewed | 90 s, 30 s |
//! | `shutdown_timeout` | how long in-flight calls may go on once a stop began | 10 s |
//! | `client_timeout` | how long a unary call may take, retries included | 5 s |
//! | `client_retries` | how many other nodes a failed call may try | 1 |
//! | `client_pool_size` | connections kept per address | 1 |
//! | `client_content_type` | the codec requests and published messages use | `application/protobuf` |
//! | `selector` | the strategy choosing among nodes: `random`, `round_robin`, `weighted`, `p2c`, `closest` | `random` |
//! | `selector_latitude`, `selector_longitude` | where this client is, for `closest` | none |
//!
//! Durations are seconds (`1.5`) or carry a unit (`250ms`, `2s`, `1m`). A flag no setting
//! answers to is an error that lists the known ones; naming a backend that is not compiled in is
//! an error that names the Cargo feature to enable.

use std::sync::Arc;

use rmicro_core::broker::Broker;
use rmicro_core::client::{Client, ClientBuilder};
use rmicro_core::raw::plugin::{self, Kind, Plugin, Settings, normalize_key};
use rmicro_core::registry::Registry;
use rmicro_core::selector::{Closest, PowerOfTwoChoices, Random, RegistrySelector, RoundRobin, WeightedRoundRobin};
use rmicro_core::server::ServerBuilder;
use rmicro_core::transport::Transport;
use rmicro_core::{Error, Result};

/// The settings every service reads, besides those of its backends.
const SERVICE_KEYS: &[&str] = &[
    "transport",
    "registry",
    "broker",
    "server_name",
    "server_version",
    "server_address",
    "server_metadata",
    "register_ttl",
    "register_interval",
    "shutdown_timeout",
    "client_timeout",
    "client_retries",
    "client_pool_size",
    "client_content_type",
    "selector",
    "selector_latitude",
    "selector_longitude",
];

/// The plugins of every backend this build has, in-memory ones included.
pub fn plugins() -> impl Iterator<Item = &'static Plugin> {
    [&plugin::MEMORY_TRANSPORT, &plugin::MEMORY_REGISTRY, &plugin::MEMORY_BROKER]
        .into_iter()
        .chain(crate::COMPILED_IN.iter().copied())
}

/// Every key a flag may set in this build: the service's and each compiled-in backend's.
pub fn known_keys() -> Vec<String> {
    let mut keys: Vec<String> = SERVICE_KEYS.iter().map(|k| (*k).to_owned()).collect();
    for plugin in plugins() {
        keys.extend(plugin.all_settings().map(|s| format!("{}_{}", plugin.kind(), s.key)));
    }
    keys.sort();
    keys.dedup();
    keys
}

/// The backends and settings a service runs with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    settings: Settings,
}

impl Options {
    /// Options from `MICRO_*` environment variables.
    pub fn from_env() -> Result<Options> {
        Options::from_settings(Settings::from_env())
    }

    /// Options from the environment, then `args` (e.g. `std::env::args().skip(1)`) over them.
    /// Flags are `--key=value` or `--key value`; anything else, and a key no setting answers
    /// to, is an error.
    pub fn from_env_and_args(args: impl IntoIterator<Item = String>) -> Result<Options> {
        let flags = parse_flags(args)?;
        let options = Options::from_settings(Settings::from_env().overlaid(&flags))?;
        options.check_flags_are_read(&flags)?;
        Ok(options)
    }

    /// A flag for a backend these options do not choose (`--transport_tls_cert` with the
    /// in-memory transport) would be ignored: it is an error, so a deployment never runs
    /// without the TLS or credentials it asked for.
    fn check_flags_are_read(&self, flags: &Settings) -> Result<()> {
        for kind in [Kind::Transport, Kind::Registry, Kind::Broker] {
            let plugin = self.plugin(kind)?;
            let prefix = format!("{kind}_");
            for key in flags.keys().filter_map(|key| key.strip_prefix(&prefix)) {
                if !plugin.all_settings().any(|setting| setting.key == key) {
                    let reads: Vec<&str> = plugin.all_settings().map(|setting| setting.key).collect();
                    return Err(Error::bad_request(format!(
                        "--{prefix}{key} is not read by the {} {kind}, which reads: {}",
                        self.backend_name(kind)?,
                        reads.join(", ")
                    ))
                    .with_id("rmicro.config"));
                }
            }
        }
        Ok(())
    }

    /// Options from `settings` as they are.
    pub fn from_settings(settings: Settings) -> Result<Options> {
        let options = Options { settings };
        for kind in [Kind::Transport, Kind::Registry, Kind::Broker] {
            options.plugin(kind)?;
        }
        Ok(options)
    }

    /// The settings, by key.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// These options with `key` set to `value`.
    pub fn with(self, key: &str, value: impl Into<String>) -> Options {
        Options { settings: self.settings.with(key, value) }
    }

    /// The name of the backend of `kind` these options choose, as they name it (`jetstream`),
    /// or the default's own.
    pub fn backend_name(&self, kind: Kind) -> Result<String> {
        let plugin = self.plugin(kind)?;
        Ok(self
            .settings
            .get(kind.as_str())
            .map_or_else(|| plugin.names.first().copied().unwrap_or_default().to_owned(), normalize_key))
    }

    /// The plugin of the backend of `kind` these options choose.
    pub fn plugin(&self, kind: Kind) -> Result<&'static Plugin> {
        let of_kind = || plugins().filter(move |p| p.kind() == kind);
        let Some(name) = self.settings.get(kind.as_str()).map(|name| name.trim().to_ascii_lowercase()) else {
            let default = crate::DEFAULTS.iter().copied().find(|p| p.kind() == kind).or_else(|| of_kind().next());
            return default.ok_or_else(|| Error::internal(format!("no {kind} is compiled in")));
        };
        of_kind().find(|p| p.answers_to(&name)).ok_or_else(|| {
            let names: Vec<&str> = of_kind().flat_map(|p| p.names.iter().copied()).collect();
            Error::bad_request(format!(
                "{kind} {name:?} is not compiled in (this build has: {}); enable the rmicro feature of the backend \
                 that provides it, named {kind}-<backend> (e.g. \"{kind}-{name}\")",
                names.join(", ")
            ))
            .with_id("rmicro.config")
        })
    }

    /// The transport the options name.
    pub async fn transport(&self) -> Result<Arc<dyn Transport>> {
        self.plugin(Kind::Transport)?.build_transport(self.settings.scoped(Kind::Transport)).await
    }

    /// The registry the options name.
    pub async fn registry(&self) -> Result<Arc<dyn Registry>> {
        self.plugin(Kind::Registry)?.build_registry(self.settings.scoped(Kind::Registry)).await
    }

    /// The broker the options name; brokers that find subscribers through the registry use `registry`.
    pub async fn broker(&self, registry: &Arc<dyn Registry>) -> Result<Arc<dyn Broker>> {
        self.plugin(Kind::Broker)?.build_broker(self.settings.scoped(Kind::Broker), registry.clone()).await
    }

    /// A client on the chosen backends with the client's settings, for a program that calls
    /// services but serves none (nothing is registered).
    pub async fn client(&self) -> Result<Client> {
        let transport = self.transport().await?;
        let registry = self.registry().await?;
        let broker = self.broker(&registry).await?;
        let client = self.client_settings(registry.clone())?;
        Ok(client(Client::builder().transport(transport).registry(registry).broker(broker)).build())
    }

    /// The server's settings, applied to a builder.
    pub(crate) fn server_settings(&self) -> Result<impl FnOnce(ServerBuilder) -> ServerBuilder + use<>> {
        let s = &self.settings;
        let version = s.get("server_version").map(str::to_owned);
        let address = s.get("server_address").map(str::to_owned);
        let metadata = key_values(s, "server_metadata")?;
        let (ttl, interval) = (s.duration("register_ttl")?, s.duration("register_interval")?);
        let shutdown = s.duration("shutdown_timeout")?;
        Ok(move |mut server: ServerBuilder| {
            if let Some(version) = version {
                server = server.version(version);
            }
            if let Some(address) = address {
                server = server.address(address);
            }
            for (key, value) in metadata {
                server = server.metadata(key, value);
            }
            if let Some(ttl) = ttl {
                server = server.register_ttl(ttl);
            }
            if let Some(interval) = interval {
                server = server.register_interval(interval);
            }
            if let Some(shutdown) = shutdown {
                server = server.shutdown_timeout(shutdown);
            }
            server
        })
    }

    /// The client's settings, applied to a builder; a `selector` setting chooses nodes from
    /// `registry` with its strategy.
    pub(crate) fn client_settings(
        &self,
        registry: Arc<dyn Registry>,
    ) -> Result<impl FnOnce(ClientBuilder) -> ClientBuilder + use<>> {
        let s = &self.settings;
        let selector = RegistrySelector::builder(registry);
        let selector = match s.get("selector").map(normalize_key).as_deref() {
            None => None,
            Some("random") => Some(selector.strategy(Random)),
            Some("round_robin" | "roundrobin") => Some(selector.strategy(RoundRobin::new())),
            Some("weighted") => Some(selector.strategy(WeightedRoundRobin::new())),
            Some("p2c" | "least_loaded") => Some(selector.strategy(PowerOfTwoChoices::new())),
            Some("closest") => {
                let (latitude, longitude) =
                    (s.parse::<f64>("selector_latitude")?, s.parse::<f64>("selector_longitude")?);
                let (Some(latitude), Some(longitude)) = (latitude, longitude) else {
                    return Err(Error::bad_request("selector closest needs selector_latitude and selector_longitude")
                        .with_id("rmicro.config"));
                };
                Some(selector.strategy(Closest::new(latitude, longitude)))
            }
            Some(other) => {
                return Err(Error::bad_request(format!(
                    "selector {other:?} is not one of random, round_robin, weighted, p2c, closest"
                ))
                .with_id("rmicro.config"));
            }
        };
        let selector = selector.map(|s| Arc::new(s.build()));
        let timeout = s.duration("client_timeout")?;
        let retries = s.parse::<u32>("client_retries")?;
        let pool_size = s.parse::<usize>("client_pool_size")?.filter(|n| *n > 0);
        let content_type = s.get("client_content_type").map(str::to_owned);
        Ok(move |mut client: ClientBuilder| {
            if let Some(selector) = selector {
                client = client.selector(selector);
            }
            if let Some(timeout) = timeout {
                client = client.timeout(timeout);
            }
            if let Some(retries) = retries {
                client = client.retries(retries);
            }
            if let Some(size) = pool_size {
                client = client.pool_size(size);
            }
            if let Some(content_type) = content_type {
                client = client.content_type(content_type);
            }
            client
        })
    }
}

/// `key` as `k=v,k=v` pairs.
fn key_values(settings: &Settings, key: &str) -> Result<Vec<(String, String)>> {
    settings
        .list(key)
        .unwrap_or_default()
        .into_iter()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => Ok((k.trim().to_owned(), v.trim().to_owned())),
            None => Err(Error::bad_request(format!("setting {key} takes key=value pairs, not {pair:?}"))
                .with_id("rmicro.config")),
        })
        .collect()
}

/// Reads `--key=value` and `--key value` flags, refusing anything else.
fn parse_flags(args: impl IntoIterator<Item = String>) -> Result<Settings> {
    let known = known_keys();
    let mut flags = Settings::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let Some(flag) = arg.strip_prefix("--") else {
            return Err(Error::bad_request(format!("unexpected argument {arg:?}: rmicro takes --key=value flags"))
                .with_id("rmicro.config"));
        };
        let (key, value) = match flag.split_once('=') {
            Some((key, value)) => (key.to_owned(), value.to_owned()),
            None => {
                let value = args
                    .next()
                    .ok_or_else(|| Error::bad_request(format!("--{flag} needs a value")).with_id("rmicro.config"))?;
                (flag.to_owned(), value)
            }
        };
        if !known.contains(&normalize_key(&key)) {
            return Err(Error::bad_request(format!(
                "unknown flag --{key}; the known flags are --{}",
                known.join(", --")
            ))
            .with_id("rmicro.config"));
        }
        flags.set(&key, value);
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn flags_win_and_both_forms_parse() {
        let options = Options::from_env_and_args(args(&[
            "--registry=memory",
            "--transport",
            "memory",
            "--server-address",
            "127.0.0.1:9",
        ]))
        .unwrap();
        assert_eq!(options.backend_name(Kind::Registry).unwrap(), "memory");
        assert_eq!(options.backend_name(Kind::Transport).unwrap(), "memory");
        assert_eq!(options.settings().get("server_address"), Some("127.0.0.1:9"));
        let bad = Options::from_env_and_args(args(&["--register_ttl=soon"])).unwrap().server_settings().err().unwrap();
        assert!(bad.detail.contains("register_ttl"), "{bad}");
    }

    #[test]
    fn an_unknown_flag_is_an_error_that_lists_the_known_ones() {
        let err = Options::from_env_and_args(args(&["--registy=memory"])).unwrap_err();
        assert!(err.detail.contains("unknown flag --registy"), "{err}");
        assert!(err.detail.contains("--registry_address"), "{err}");
        let err = Options::from_env_and_args(args(&["stray"])).unwrap_err();
        assert!(err.detail.contains("unexpected argument \"stray\""), "{err}");
    }

    #[test]
    fn a_backend_not_compiled_in_names_its_feature() {
        let err = Options::from_settings(Settings::new().with("transport", "smoke-signals")).unwrap_err();
        assert!(err.detail.contains("(e.g. \"transport-smoke-signals\")"), "{err}");
        assert!(err.detail.contains("memory"), "{err}");
    }

    #[test]
    fn every_compiled_in_backend_has_a_name_and_its_settings_are_known_keys() {
        let keys = known_keys();
        for plugin in plugins() {
            assert!(!plugin.names.is_empty());
            for setting in plugin.all_settings() {
                assert!(keys.contains(&format!("{}_{}", plugin.kind(), setting.key)));
            }
        }
    }

    #[test]
    fn a_flag_for_a_backend_not_chosen_is_refused() {
        let err = Options::from_env_and_args(args(&["--transport=memory", "--transport_address=x"])).unwrap();
        assert_eq!(err.settings().get("transport_address"), Some("x"), "address is every backend's");
        if known_keys().iter().any(|k| k == "transport_tls_cert") {
            let err =
                Options::from_env_and_args(args(&["--transport=memory", "--transport_tls_cert=c.pem"])).unwrap_err();
            assert!(err.detail.contains("--transport_tls_cert is not read by the memory transport"), "{err}");
        }
    }

    #[test]
    fn an_unknown_selector_is_refused() {
        let options = Options::from_settings(Settings::new().with("selector", "dice")).unwrap();
        let registry: Arc<dyn Registry> = Arc::new(rmicro_core::registry::MemoryRegistry::new());
        let err = options.client_settings(registry).err().unwrap();
        assert!(err.detail.contains("selector \"dice\""), "{err}");
    }
}
