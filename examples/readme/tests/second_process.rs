//! The README's "A service in code" is this crate's program, and another process calls it: the
//! test starts it as written (the default stack), finds it through the registry and calls it.
//! Uses mDNS on loopback: run inside a private network namespace (scripts/test does).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use rmicro::config::Options;
use rmicro::prelude::*;
use tokio::process::Command;

#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
struct HelloRequest {
    #[prost(string, tag = "1")]
    name: String,
}

#[test]
fn the_readme_shows_this_program() {
    let program = include_str!("../src/main.rs");
    let body: String =
        program.lines().skip_while(|l| l.starts_with("//!") || l.is_empty()).map(|l| format!("{l}\n")).collect();
    let readme = include_str!("../../../README.md");
    assert!(readme.contains(&body), "README.md's \"A service in code\" differs from examples/readme/src/main.rs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_calls_the_readme_service() {
    let client = Options::from_env().unwrap().client().await.unwrap();
    let mut service = Command::new(env!("CARGO_BIN_EXE_readme-greeter")).kill_on_drop(true).spawn().unwrap();
    let call = || Call::new("greeter", "Greeter.Hello").timeout(Duration::from_secs(2));
    let started = tokio::time::Instant::now();
    let reply = loop {
        match client.call::<_, HelloRequest>(call(), &HelloRequest { name: "John".into() }).await {
            Ok(reply) => break reply,
            Err(e) if started.elapsed() < Duration::from_secs(20) => {
                eprintln!("not yet: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("the README service was not reached: {e}"),
        }
    };
    eprintln!(
        "called the README service from another process: {:?} after {:?}",
        reply.get_ref().name,
        started.elapsed()
    );
    assert_eq!(reply.get_ref().name, "Hello John");
    let pid = service.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert!(service.wait().await.unwrap().success(), "the service stopped gracefully on SIGTERM");
}
