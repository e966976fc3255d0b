//! Choosing backends at run time, from flags and environment, among those compiled in.
//!
//! | Flag | Environment | Default |
//! |---|---|---|
//! | `--transport` | `MICRO_TRANSPORT` | `http` if compiled in, else `memory` |
//! | `--transport_address` | `MICRO_TRANSPORT_ADDRESS` | backend's own (NATS: `nats://127.0.0.1:4222`) |
//! | `--registry` | `MICRO_REGISTRY` | `mdns` if compiled in, else `memory` |
//! | `--registry_address` | `MICRO_REGISTRY_ADDRESS` | backend's own: mDNS, interface addresses (`127.0.0.1`); etcd, endpoints (`127.0.0.1:2379`); Consul, the agent (`127.0.0.1:8500`); lists comma-separated |
//! | `--broker` | `MICRO_BROKER` | `http` if compiled in, else `memory` |
//! | `--broker_address` | `MICRO_BROKER_ADDRESS` | backend's own (HTTP broker: where subscribers listen; NATS: `nats://127.0.0.1:4222`; RabbitMQ: `amqp://guest:guest@127.0.0.1:5672/%2f`; Kafka: `127.0.0.1:9092`) |
//! | `--server_address` | `MICRO_SERVER_ADDRESS` | the transport's choice |
//! | `--register_ttl` | `MICRO_REGISTER_TTL` | 90 (seconds) |
//! | `--register_interval` | `MICRO_REGISTER_INTERVAL` | 30 (seconds) |
//!
//! Flags win over the environment (`--registry=mdns` or `--registry mdns`). Naming a backend
//! that is not compiled in is an error that says which Cargo feature to enable.

use std::sync::Arc;
use std::time::Duration;

use rmicro_core::broker::{Broker, MemoryBroker};
use rmicro_core::registry::{MemoryRegistry, Registry};
use rmicro_core::service::{Service, ServiceBuilder};
use rmicro_core::transport::{MemoryTransport, Transport};
use rmicro_core::{Error, Result};

/// The backends and addresses a service runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// Transport name.
    pub transport: String,
    /// Transport address, in the transport's own terms.
    pub transport_address: Option<String>,
    /// Registry name.
    pub registry: String,
    /// Registry address, in the registry's own terms.
    pub registry_address: Option<String>,
    /// Broker name.
    pub broker: String,
    /// Broker address, in the broker's own terms.
    pub broker_address: Option<String>,
    /// Where the server listens.
    pub server_address: Option<String>,
    /// How long a registration lives unless renewed.
    pub register_ttl: Option<Duration>,
    /// How often the registration is renewed.
    pub register_interval: Option<Duration>,
}

impl Default for Options {
    fn default() -> Options {
        let pick = |compiled: bool, name: &str| if compiled { name } else { "memory" }.to_owned();
        Options {
            transport: pick(cfg!(feature = "transport-http"), "http"),
            transport_address: None,
            registry: pick(cfg!(feature = "registry-mdns"), "mdns"),
            registry_address: None,
            broker: pick(cfg!(feature = "broker-http"), "http"),
            broker_address: None,
            server_address: None,
            register_ttl: None,
            register_interval: None,
        }
    }
}

/// The kinds of backend, the names rmicro knows for each, and the feature that compiles each in.
const KNOWN: &[(&str, &str, Option<&str>)] = &[
    ("transport", "memory", None),
    ("transport", "http", Some("transport-http")),
    ("transport", "grpc", Some("transport-grpc")),
    ("transport", "nats", Some("transport-nats")),
    ("transport", "tcp", Some("transport-tcp")),
    ("registry", "memory", None),
    ("registry", "mdns", Some("registry-mdns")),
    ("registry", "etcd", Some("registry-etcd")),
    ("registry", "consul", Some("registry-consul")),
    ("broker", "memory", None),
    ("broker", "http", Some("broker-http")),
    ("broker", "nats", Some("broker-nats")),
    ("broker", "jetstream", Some("broker-nats")),
    ("broker", "rabbitmq", Some("broker-rabbitmq")),
    ("broker", "kafka", Some("broker-kafka")),
];

/// The error for a backend this build cannot make.
fn unavailable(kind: &str, name: &str) -> Error {
    match KNOWN.iter().find(|(k, n, _)| *k == kind && *n == name) {
        Some((_, _, Some(feature))) => {
            Error::bad_request(format!("{kind} {name:?} is not compiled in: enable the rmicro feature \"{feature}\""))
        }
        _ => {
            let choices: Vec<&str> = KNOWN.iter().filter(|(k, _, _)| *k == kind).map(|(_, n, _)| *n).collect();
            Error::bad_request(format!("unknown {kind} {name:?}; rmicro has: {}", choices.join(", ")))
        }
    }
    .with_id("rmicro.config")
}

impl Options {
    /// Options from `MICRO_*` environment variables.
    pub fn from_env() -> Result<Options> {
        Options::env_unchecked().checked()
    }

    fn env_unchecked() -> Options {
        Options::default().merged(|key| std::env::var(format!("MICRO_{}", key.to_ascii_uppercase())).ok())
    }

    /// Options from the environment, then `args` (e.g. `std::env::args().skip(1)`) over them.
    pub fn from_env_and_args(args: impl IntoIterator<Item = String>) -> Result<Options> {
        let mut flags = std::collections::HashMap::new();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let Some(flag) = arg.strip_prefix("--") else { continue };
            let (key, value) = match flag.split_once('=') {
                Some((key, value)) => (key.to_owned(), value.to_owned()),
                None => {
                    let value = args.next().ok_or_else(|| Error::bad_request(format!("--{flag} needs a value")))?;
                    (flag.to_owned(), value)
                }
            };
            flags.insert(key.replace('-', "_"), value);
        }
        Options::env_unchecked().merged(|key| flags.get(key).cloned()).checked()
    }

    /// Fails on durations that did not parse (they are kept as zero until checked).
    fn checked(self) -> Result<Options> {
        for (name, value) in [("register_ttl", self.register_ttl), ("register_interval", self.register_interval)] {
            if value == Some(Duration::ZERO) {
                return Err(
                    Error::bad_request(format!("{name} must be a positive number of seconds")).with_id("rmicro.config")
                );
            }
        }
        Ok(self)
    }

    fn merged(mut self, get: impl Fn(&str) -> Option<String>) -> Options {
        let set = |field: &mut String, key| {
            if let Some(value) = get(key) {
                *field = value;
            }
        };
        set(&mut self.transport, "transport");
        set(&mut self.registry, "registry");
        set(&mut self.broker, "broker");
        self.transport_address = get("transport_address").or(self.transport_address);
        self.registry_address = get("registry_address").or(self.registry_address);
        self.broker_address = get("broker_address").or(self.broker_address);
        self.server_address = get("server_address").or(self.server_address);
        let seconds = |key| {
            get(key).map(|v: String| {
                Duration::from_secs_f64(v.trim().parse::<f64>().ok().filter(|s| *s > 0.0).unwrap_or(0.0))
            })
        };
        self.register_ttl = seconds("register_ttl").or(self.register_ttl);
        self.register_interval = seconds("register_interval").or(self.register_interval);
        self
    }

    /// The transport named by the options.
    pub async fn transport(&self) -> Result<Arc<dyn Transport>> {
        match self.transport.as_str() {
            "memory" => Ok(Arc::new(MemoryTransport::new())),
            #[cfg(feature = "transport-http")]
            "http" => Ok(Arc::new(rmicro_transport_http::HttpTransport::new())),
            #[cfg(feature = "transport-grpc")]
            "grpc" => Ok(Arc::new(rmicro_transport_grpc::GrpcTransport::new())),
            #[cfg(feature = "transport-nats")]
            "nats" => {
                let url = self.transport_address.as_deref().unwrap_or("nats://127.0.0.1:4222");
                Ok(Arc::new(rmicro_transport_nats::NatsTransport::connect(url).await?))
            }
            #[cfg(feature = "transport-tcp")]
            "tcp" => Ok(Arc::new(rmicro_transport_tcp::TcpTransport::new())),
            other => Err(unavailable("transport", other)),
        }
    }

    /// The registry named by the options.
    pub async fn registry(&self) -> Result<Arc<dyn Registry>> {
        match self.registry.as_str() {
            "memory" => Ok(Arc::new(MemoryRegistry::new())),
            #[cfg(feature = "registry-mdns")]
            "mdns" => {
                let mut builder = rmicro_registry_mdns::MdnsRegistry::builder();
                if let Some(addresses) = &self.registry_address {
                    let interfaces = addresses
                        .split(',')
                        .map(|a| {
                            a.trim()
                                .parse()
                                .map_err(|_| Error::bad_request(format!("mDNS interface {a:?} is not an IPv4 address")))
                        })
                        .collect::<Result<Vec<std::net::Ipv4Addr>>>()?;
                    builder = builder.interfaces(interfaces);
                }
                Ok(Arc::new(builder.build().await?))
            }
            #[cfg(feature = "registry-etcd")]
            "etcd" => {
                let endpoints = self.registry_address.as_deref().unwrap_or("127.0.0.1:2379").split(',').map(str::trim);
                let config = rmicro_registry_etcd::EtcdConfig::new(endpoints);
                Ok(Arc::new(rmicro_registry_etcd::EtcdRegistry::connect(config).await?))
            }
            #[cfg(feature = "registry-consul")]
            "consul" => {
                let address = self.registry_address.as_deref().unwrap_or("127.0.0.1:8500");
                Ok(Arc::new(rmicro_registry_consul::ConsulRegistry::new(rmicro_registry_consul::ConsulConfig::new(
                    address,
                ))?))
            }
            other => Err(unavailable("registry", other)),
        }
    }

    /// The broker named by the options; brokers that find subscribers through the registry use `registry`.
    pub async fn broker(&self, registry: &Arc<dyn Registry>) -> Result<Arc<dyn Broker>> {
        let _ = registry;
        match self.broker.as_str() {
            "memory" => Ok(Arc::new(MemoryBroker::new())),
            #[cfg(feature = "broker-http")]
            "http" => {
                let mut builder = rmicro_broker_http::HttpBroker::builder(registry.clone());
                if let Some(address) = &self.broker_address {
                    builder = builder.address(address.clone());
                }
                Ok(Arc::new(builder.build()))
            }
            #[cfg(feature = "broker-nats")]
            name @ ("nats" | "jetstream") => {
                let url = self.broker_address.as_deref().unwrap_or("nats://127.0.0.1:4222");
                let mut config = rmicro_broker_nats::NatsConfig::new(url);
                if name == "jetstream" {
                    config = config.jetstream(rmicro_broker_nats::JetStreamConfig::default());
                }
                Ok(Arc::new(rmicro_broker_nats::NatsBroker::connect(config).await?))
            }
            #[cfg(feature = "broker-rabbitmq")]
            "rabbitmq" => {
                let url = self.broker_address.as_deref().unwrap_or("amqp://guest:guest@127.0.0.1:5672/%2f");
                Ok(Arc::new(rmicro_broker_rabbitmq::RabbitBroker::new(rmicro_broker_rabbitmq::RabbitConfig::new(url))))
            }
            #[cfg(feature = "broker-kafka")]
            "kafka" => {
                let brokers = self.broker_address.as_deref().unwrap_or("127.0.0.1:9092");
                Ok(Arc::new(rmicro_broker_kafka::KafkaBroker::new(rmicro_broker_kafka::KafkaConfig::new(brokers))?))
            }
            other => Err(unavailable("broker", other)),
        }
    }

    /// A service builder with the chosen backends and server address.
    pub async fn service(&self, name: &str) -> Result<ServiceBuilder> {
        let transport = self.transport().await?;
        let registry = self.registry().await?;
        let broker = self.broker(&registry).await?;
        let mut builder = Service::builder(name).transport(transport).registry(registry).broker(broker);
        if let Some(address) = &self.server_address {
            builder = builder.address(address.clone());
        }
        let (ttl, interval) = (self.register_ttl, self.register_interval);
        builder = builder.server(|mut server| {
            if let Some(ttl) = ttl {
                server = server.register_ttl(ttl);
            }
            if let Some(interval) = interval {
                server = server.register_interval(interval);
            }
            server
        });
        Ok(builder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a future that completes without waiting (backend construction that fails at once).
    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().expect("a runtime").block_on(future)
    }

    #[test]
    fn flags_win_over_defaults_and_both_forms_parse() {
        let args = ["--registry=memory", "--transport", "memory", "--server-address", "127.0.0.1:9"].map(str::to_owned);
        let options = Options::from_env_and_args(args).unwrap();
        assert_eq!((options.registry.as_str(), options.transport.as_str()), ("memory", "memory"));
        assert_eq!(options.server_address.as_deref(), Some("127.0.0.1:9"));
        let ttl = Options::from_env_and_args(["--register_ttl=2".to_owned()]).unwrap();
        assert_eq!(ttl.register_ttl, Some(Duration::from_secs(2)));
        let bad = Options::from_env_and_args(["--register_ttl=soon".to_owned()]).unwrap_err();
        assert!(bad.detail.contains("register_ttl"), "{bad}");
    }

    #[test]
    fn a_backend_not_compiled_in_names_its_feature() {
        let options = Options { transport: "smoke-signals".into(), ..Options::default() };
        let err = block_on(options.transport()).unwrap_err();
        assert!(err.detail.contains("unknown transport \"smoke-signals\""), "{err}");
        #[cfg(not(feature = "registry-etcd"))]
        {
            let options = Options { registry: "etcd".into(), ..Options::default() };
            let err = block_on(options.registry()).unwrap_err();
            assert!(err.detail.contains("enable the rmicro feature \"registry-etcd\""), "{err}");
        }
        #[cfg(not(feature = "transport-http"))]
        {
            let options = Options { transport: "http".into(), ..Options::default() };
            assert!(
                block_on(options.transport())
                    .unwrap_err()
                    .detail
                    .contains("enable the rmicro feature \"transport-http\"")
            );
        }
    }
}
