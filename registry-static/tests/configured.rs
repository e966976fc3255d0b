//! Nodes given in settings, built through the plugin as the `rmicro` facade builds them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use rmicro_core::Code;
use rmicro_core::raw::plugin::{Kind, Settings};
use rmicro_core::registry::{Registry, ServiceRecord};
use rmicro_registry_static::{PLUGIN, StaticConfig, StaticRegistry};

async fn from_address(address: &str) -> rmicro_core::Result<Arc<dyn Registry>> {
    let settings = Settings::new().with("registry", "static").with("registry_address", address);
    PLUGIN.build_registry(settings.scoped(Kind::Registry)).await
}

fn addresses(services: &[ServiceRecord]) -> Vec<&str> {
    services.iter().flat_map(|s| s.nodes.iter().map(|n| n.address.as_str())).collect()
}

#[tokio::test]
async fn configured_nodes_are_found_listed_and_kept() {
    let registry = from_address("greeter=127.0.0.1:8080,greeter=127.0.0.1:8081,users@2.0=10.0.0.5:9000").await.unwrap();
    let greeter = registry.get_service("greeter").await.unwrap();
    assert_eq!(addresses(&greeter), ["127.0.0.1:8080", "127.0.0.1:8081"]);
    assert!(greeter[0].nodes.iter().all(|n| n.metadata.is_empty()));
    let listed = registry.list_services().await.unwrap();
    let names: Vec<(&str, &str)> = listed.iter().map(|s| (s.name.as_str(), s.version.as_str())).collect();
    assert_eq!(names, [("greeter", ""), ("users", "2.0")]);

    registry.deregister(&greeter[0]).await.unwrap();
    assert_eq!(addresses(&registry.get_service("greeter").await.unwrap()), ["127.0.0.1:8080", "127.0.0.1:8081"]);
    assert!(!registry.capabilities().shared);
    assert_eq!(registry.name(), "static");
}

#[tokio::test]
async fn bad_nodes_are_refused_by_the_plugin_and_by_connect() {
    let err = from_address("greeter=127.0.0.1:8080,users").await.unwrap_err();
    assert_eq!(err.code, Code::BadRequest, "{err}");
    assert!(err.detail.contains("\"users\""), "{err}");
    let err = StaticRegistry::connect(StaticConfig::default().with_node("greeter", "")).await.unwrap_err();
    assert_eq!(err.code, Code::BadRequest, "{err}");
}
