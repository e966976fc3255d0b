//! The Consul registry against the core registry suite: on a real agent when
//! `MICRO_TEST_CONSUL_ADDR` is set, otherwise on the in-test agent in `support/fake_consul.rs`.

use std::sync::Arc;

use rmicro_core::registry::Registry;
use rmicro_registry_consul::{ConsulConfig, ConsulRegistry};

mod support;

rmicro_core::registry_conformance!(|| async {
    let (address, fake) = match std::env::var("MICRO_TEST_CONSUL_ADDR") {
        Ok(address) => (address, None),
        Err(_) => {
            let fake = support::fake_consul::FakeConsul::start(None).await;
            (fake.address.clone(), Some(fake))
        }
    };
    let registry =
        ConsulRegistry::connect(ConsulConfig::default().with_address(address)).await.expect("a valid config");
    Arc::new(Held { registry, _fake: fake }) as Arc<dyn Registry>
});

/// The registry and, when faked, the agent it talks to.
#[derive(Debug)]
struct Held {
    registry: ConsulRegistry,
    _fake: Option<support::fake_consul::FakeConsul>,
}

#[async_trait::async_trait]
impl Registry for Held {
    fn name(&self) -> &'static str {
        self.registry.name()
    }
    async fn register(
        &self,
        s: &rmicro_core::registry::ServiceRecord,
        ttl: Option<std::time::Duration>,
    ) -> rmicro_core::Result<()> {
        self.registry.register(s, ttl).await
    }
    async fn deregister(&self, s: &rmicro_core::registry::ServiceRecord) -> rmicro_core::Result<()> {
        self.registry.deregister(s).await
    }
    async fn get_service(&self, name: &str) -> rmicro_core::Result<Vec<rmicro_core::registry::ServiceRecord>> {
        self.registry.get_service(name).await
    }
    async fn list_services(&self) -> rmicro_core::Result<Vec<rmicro_core::registry::ServiceRecord>> {
        self.registry.list_services().await
    }
    async fn watch(&self, service: Option<&str>) -> rmicro_core::Result<rmicro_core::registry::Watcher> {
        self.registry.watch(service).await
    }
}
