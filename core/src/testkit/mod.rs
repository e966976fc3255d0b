//! Conformance suites: one per interface, run by every backend against its real service.
//!
//! Each check is a public async function taking the backend under test, so a backend crate can
//! call them one by one; the `*_conformance!` macros expand to one named `#[tokio::test]` per
//! check (the test crate needs `tokio` with the `macros` and `rt-multi-thread` features):
//!
//! ```no_run
//! // tests/conformance.rs of a registry crate; here the in-memory registry stands in for it.
//! use std::sync::Arc;
//! use rmicro_core::registry::{MemoryRegistry, Registry};
//!
//! rmicro_core::registry_conformance!(|| async { Arc::new(MemoryRegistry::new()) as Arc<dyn Registry> });
//! # fn main() {}
//! ```
//!
//! Checks use fresh, random service names and topics, so they can run side by side against one
//! shared server and leave nothing that disturbs the next run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod broker;
pub mod codec;
pub mod registry;
pub mod transport;
mod transport_chain;

use std::future::Future;
use std::time::Duration;

/// A name no other check (or run) uses: `prefix` and a random suffix.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Polls `check` until it returns true or `within` passes; panics with `what` then.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($suite:ident, $factory:expr, $($check:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let backend = ($factory)().await;
                $crate::testkit::$suite::$check(backend).await;
            }
        )+
    };
}
