//! The static registry against the core registry suite, with a configured node beside the
//! suite's registrations (there is no service to start).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use rmicro_core::registry::Registry;
use rmicro_registry_static::{StaticConfig, StaticRegistry};

rmicro_core::registry_conformance!(|| async {
    let config = StaticConfig::default().with_node("configured-peer", "127.0.0.1:9");
    Arc::new(StaticRegistry::connect(config).await.unwrap()) as Arc<dyn Registry>
});
