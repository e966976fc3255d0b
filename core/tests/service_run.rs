//! `Service::run` stops gracefully on SIGTERM, running the start and stop hooks in order.
//! (Its own test binary: the signal goes to this whole process.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmicro_core::prelude::*;
use rmicro_core::registry::MemoryRegistry;

#[tokio::test]
async fn sigterm_stops_the_service_after_its_hooks() {
    let log = Arc::new(Mutex::new(Vec::<&str>::new()));
    let registry = Arc::new(MemoryRegistry::new());
    let hook = |name: &'static str| {
        let log = log.clone();
        move || {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(name);
                Ok(())
            }
        }
    };
    let service = Service::builder("signalled")
        .registry(registry.clone())
        .before_start(hook("before_start"))
        .after_start(hook("after_start"))
        .before_stop(hook("before_stop"))
        .after_stop(hook("after_stop"))
        .build();
    let running = tokio::spawn(async move { service.run().await });
    rmicro_core::testkit::eventually(Duration::from_secs(5), "service registered", || async {
        registry.get_service("signalled").await.is_ok()
    })
    .await;
    let status = std::process::Command::new("kill").args(["-TERM", &std::process::id().to_string()]).status().unwrap();
    assert!(status.success());
    tokio::time::timeout(Duration::from_secs(5), running).await.expect("run returned").unwrap().unwrap();
    assert_eq!(*log.lock().unwrap(), ["before_start", "after_start", "before_stop", "after_stop"]);
    assert!(registry.get_service("signalled").await.is_err(), "deregistered on SIGTERM");
}
