//! A nats-server of the test's own (another port) restarted during a stream of calls: calls in
//! flight fail with a retryable error, the client reconnects and later calls succeed; and calls
//! and streams leave no subscription behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rmicro_core::prelude::*;
use rmicro_core::registry::MemoryRegistry;
use rmicro_core::testkit::eventually;
use rmicro_transport_nats::{NatsConfig, NatsTransport};
use tokio::process::{Child, Command};

#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
struct Ping {
    #[prost(uint32, tag = "1")]
    n: u32,
}

fn start_nats(port: u16, monitor: u16) -> Child {
    Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-m", &monitor.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("nats-server (Debian nats-server) is installed")
}

async fn listening(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
}

/// The server's subscription count, from its monitoring endpoint.
async fn subscriptions(monitor: u16) -> u64 {
    let output = tokio::process::Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{monitor}/subsz")])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let count = text.split("\"num_subscriptions\":").nth(1).unwrap_or_default();
    count.trim().split(|c: char| !c.is_ascii_digit()).next().unwrap_or_default().parse().unwrap_or(u64::MAX)
}

async fn service(url: &str, registry: Arc<MemoryRegistry>) -> (rmicro_core::service::Service, NatsTransport) {
    let transport = NatsTransport::connect(NatsConfig::default().with_address(url)).await.unwrap();
    let service = rmicro_core::service::Service::builder("pinger")
        .transport(Arc::new(transport.clone()))
        .registry(registry)
        .client(|c| c.retries(0).timeout(Duration::from_secs(2)))
        .build();
    service.server().handle("Pinger.Ping", |_ctx, ping: Ping| async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(Ping { n: ping.n + 1 })
    });
    service.server().handle("Pinger.Long", |_ctx, ping: Ping| async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        Ok(Ping { n: ping.n + 1 })
    });
    service.server().handle("Pinger.Slow", |_ctx, ping: Ping| async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(Ping { n: ping.n + 1 })
    });
    service.server().handle_stream("Pinger.Count", |_ctx, mut stream: ServerStream<Ping, Ping>| async move {
        while let Some(ping) = stream.recv().await? {
            stream.send(&Ping { n: ping.n * 2 }).await?;
        }
        Ok(())
    });
    (service, transport)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_survive_a_nats_restart_and_leave_no_subscriptions() {
    let (port, monitor) = (14_222, 18_222);
    let url = format!("nats://127.0.0.1:{port}");
    let mut nats = start_nats(port, monitor);
    eventually(Duration::from_secs(10), "own nats-server up", || listening(port)).await;
    let registry = Arc::new(MemoryRegistry::new());
    let (server, _) = service(&url, registry.clone()).await;
    server.start().await.unwrap();
    let (caller, transport) = service(&url, registry).await;
    let client = caller.client().clone();

    client.call::<_, Ping>(Call::new("pinger", "Pinger.Ping"), &Ping { n: 0 }).await.unwrap();
    let baseline = subscriptions(monitor).await;
    for n in 0..50 {
        assert_eq!(
            client.call::<_, Ping>(Call::new("pinger", "Pinger.Ping"), &Ping { n }).await.unwrap().get_ref().n,
            n + 1
        );
    }
    for _ in 0..10 {
        let mut stream = client.stream::<Ping, Ping>(Call::new("pinger", "Pinger.Count")).await.unwrap();
        for n in 1..=40 {
            stream.send(&Ping { n }).await.unwrap();
            assert_eq!(stream.recv().await.unwrap().unwrap().n, n * 2);
        }
        stream.close_send().await.unwrap();
        assert_eq!(stream.recv().await.unwrap(), None);
    }
    let after = subscriptions(monitor).await;
    eprintln!(
        "subscriptions on the server: {baseline} once the node was dialled, {after} after 50 calls and 10 streams of 40 messages"
    );
    assert_eq!(after, baseline, "no subscription was left behind");
    assert_eq!(transport.calls_in_progress(), 0, "no call is still tracked");

    let calls = tokio::spawn(async move {
        let mut outcomes = Vec::new();
        let started = tokio::time::Instant::now();
        while started.elapsed() < Duration::from_secs(12) {
            let outcome = client.call::<_, Ping>(Call::new("pinger", "Pinger.Slow"), &Ping { n: 1 }).await;
            outcomes.push((started.elapsed(), outcome.map(|_| ()).map_err(|e| (e.code, e.is_retryable()))));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        outcomes
    });
    let long_client = caller.client().clone();
    let long = tokio::spawn(async move {
        long_client
            .call::<_, Ping>(Call::new("pinger", "Pinger.Long").timeout(Duration::from_secs(10)), &Ping { n: 1 })
            .await
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    nats.kill().await.unwrap();
    nats.wait().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _restarted = start_nats(port, monitor);
    let outcomes = calls.await.unwrap();
    let in_flight = long.await.unwrap().expect_err("the call in flight at the restart fails");
    eprintln!("the call in flight when NATS went down: {in_flight}");
    assert!(in_flight.code == Code::Unavailable && in_flight.is_retryable(), "{in_flight}");

    let failures: Vec<_> = outcomes.iter().filter_map(|(_, o)| o.as_ref().err()).collect();
    let last_failure = outcomes.iter().filter(|(_, o)| o.is_err()).map(|(t, _)| *t).max().unwrap();
    let later_ok = outcomes.iter().filter(|(t, o)| *t > last_failure && o.is_ok()).count();
    eprintln!(
        "{} calls: {} failed ({:?}), all retryable: {}; {} succeeded after the last failure at {:?}",
        outcomes.len(),
        failures.len(),
        failures.iter().map(|(code, _)| *code).collect::<std::collections::HashSet<_>>(),
        failures.iter().all(|(_, retryable)| *retryable),
        later_ok,
        last_failure
    );
    assert!(
        failures.iter().all(|(code, retryable)| *code == Code::Unavailable && *retryable),
        "every failure is a retryable Unavailable"
    );
    assert!(later_ok >= 10, "calls succeed again after the restart");
    server.stop().await.unwrap();
}
