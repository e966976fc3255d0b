//! The mDNS registry against the core registry suite, on the loopback interface. Run it inside
//! a private network namespace with `lo` up and multicast on (the project's test script does).

use std::sync::Arc;

use rmicro_core::registry::Registry;
use rmicro_registry_mdns::{MdnsConfig, MdnsRegistry};

rmicro_core::registry_conformance!(|| async {
    let registry = MdnsRegistry::connect(MdnsConfig::default()).await.expect("mDNS socket on loopback");
    Arc::new(registry) as Arc<dyn Registry>
});
