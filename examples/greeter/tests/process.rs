//! The greeter server as a real process: a watcher sees SIGTERM deregister it after its
//! in-flight call finished, SIGKILL make it vanish once its TTL lapses, and curl call it.
//! Uses mDNS on loopback: run inside a private network namespace (scripts/test does).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

use futures::StreamExt;
use rmicro::config::Options;
use rmicro::prelude::*;
use rmicro::registry::{EventKind, Watcher};
use tokio::process::{Child, Command};

mod pb {
    #![allow(missing_docs, unreachable_pub, missing_debug_implementations, dead_code, clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/greeter.rs"));
}

/// The tests each start a `greeter` server and watch for it: one at a time, so that each sees
/// its own server's events.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn server(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_greeter"))
        .arg("server")
        .args(args)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the greeter binary starts")
}

fn signal(child: &Child, signal: &str) {
    let pid = child.id().expect("still running").to_string();
    assert!(std::process::Command::new("kill").args([signal, &pid]).status().unwrap().success());
}

async fn next(watcher: &mut Watcher, kind: EventKind) -> rmicro::registry::Event {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let event = watcher.next().await.expect("watch goes on").expect("no missed events");
            if event.kind == kind {
                return event;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind:?} event"))
}

async fn client() -> (Client, pb::GreeterClient) {
    let client = Options::from_env().unwrap().client().await.unwrap();
    let greeter = pb::GreeterClient::new("greeter", client.clone());
    (client, greeter)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_deregisters_after_in_flight_calls_finish() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (service, greeter) = client().await;
    let registry = Options::from_env().unwrap().registry().await.unwrap();
    let mut watcher = registry.watch(Some("greeter")).await.unwrap();
    let mut process = server(&[]);
    next(&mut watcher, EventKind::Create).await;
    greeter.hello(&pb::Request { name: "warm-up".into(), delay_ms: 0 }).await.expect("the client finds the server");
    let slow = tokio::spawn(async move { greeter.hello(&pb::Request { name: "slow".into(), delay_ms: 1_000 }).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal(&process, "-TERM");
    next(&mut watcher, EventKind::Delete).await;
    assert!(!slow.is_finished(), "deregistered while the call was still in flight");
    let reply = slow.await.unwrap().expect("the in-flight call finished");
    assert_eq!(reply.get_ref().msg, "Hello slow");
    assert!(process.wait().await.unwrap().success());
    drop(service);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_leaves_the_node_until_its_ttl_lapses() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let registry = Options::from_env().unwrap().registry().await.unwrap();
    let mut watcher = registry.watch(Some("greeter")).await.unwrap();
    let mut process = server(&["--register_ttl", "3", "--register_interval", "1"]);
    let created = next(&mut watcher, EventKind::Create).await;
    let id = created.service.nodes[0].id.clone();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    signal(&process, "-KILL");
    let killed = tokio::time::Instant::now();
    let deleted = next(&mut watcher, EventKind::Delete).await;
    let waited = killed.elapsed();
    eprintln!("SIGKILL: node {id} gone {waited:?} after the kill (TTL 3 s, renewed every 1 s)");
    assert_eq!(deleted.service.nodes[0].id, id);
    assert!(waited >= Duration::from_millis(1_000), "it lingered until its TTL lapsed");
    assert!(!process.wait().await.unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_calls_the_running_greeter() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let registry = Options::from_env().unwrap().registry().await.unwrap();
    let mut watcher = registry.watch(Some("greeter")).await.unwrap();
    let mut process = server(&[]);
    let address = next(&mut watcher, EventKind::Create).await.service.nodes[0].address.clone();
    let curl = |body: &'static str| {
        let address = address.clone();
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new("curl")
                .args(["-sS", "-w", " %{http_code}", "-X", "POST", &format!("http://{address}/greeter/Greeter.Hello")])
                .args(["-H", "Content-Type: application/json", "-d", body])
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        })
    };
    let ok = curl(r#"{"name":"John"}"#).await.unwrap();
    eprintln!("curl: {ok}");
    assert_eq!(ok, r#"{"msg":"Hello John"} 200"#);
    let bad = curl(r#"{"name":"#).await.unwrap();
    eprintln!("curl bad body: {bad}");
    assert!(bad.ends_with(" 400") && bad.contains(r#""code":400"#), "{bad}");
    signal(&process, "-TERM");
    assert!(process.wait().await.unwrap().success());
}
