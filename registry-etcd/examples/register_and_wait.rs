//! Registers one node of a service in etcd with a TTL, renews it every second, and waits to be
//! killed. The restart tests kill it with SIGKILL to show the node outlives it only by its TTL.
//!
//! Run with: `cargo run -p rmicro-registry-etcd --example register_and_wait -- <service> <ttl-seconds> [etcd-address]`

use std::time::Duration;

use rmicro_core::registry::{Node, Registry, ServiceRecord};
use rmicro_registry_etcd::{EtcdConfig, EtcdRegistry};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), rmicro_core::Error> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "example".to_owned());
    let ttl = Duration::from_secs(args.next().and_then(|t| t.parse().ok()).unwrap_or(5));
    let address = args.next().unwrap_or_else(|| "127.0.0.1:2379".to_owned());
    let registry = EtcdRegistry::connect(EtcdConfig::default().with_endpoints([address])).await?;
    let service = ServiceRecord {
        name: name.clone(),
        version: "1.0.0".into(),
        nodes: vec![Node {
            id: format!("{name}-{}", std::process::id()),
            address: "127.0.0.1:9".into(),
            ..Node::default()
        }],
        ..ServiceRecord::default()
    };
    loop {
        registry.register(&service, Some(ttl)).await?;
        println!("registered {} with a {ttl:?} TTL", service.nodes[0].id);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
