//! The etcd registry against the core registry suite, on the real etcd at
//! `MICRO_TEST_ETCD_ADDR` (default `127.0.0.1:2379`).

use std::sync::Arc;

use rmicro_core::registry::Registry;
use rmicro_registry_etcd::{EtcdConfig, EtcdRegistry};

fn address() -> String {
    std::env::var("MICRO_TEST_ETCD_ADDR").unwrap_or_else(|_| "127.0.0.1:2379".to_owned())
}

rmicro_core::registry_conformance!(|| async {
    let config = EtcdConfig::default().with_endpoints([address()]).with_prefix("/rmicro-test/registry/");
    let registry = EtcdRegistry::connect(config).await.unwrap_or_else(|e| panic!("etcd at {}: {e}", address()));
    Arc::new(registry) as Arc<dyn Registry>
});
