//! etcd as it really behaves: the registered node is visible to etcdctl, a killed registrant's
//! node lapses with its lease, and a registry that outlives an etcd restart (with the data lost)
//! registers again and its watchers report it; a client keeps calling known nodes meanwhile.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rmicro_core::prelude::*;
use rmicro_core::registry::{EventKind, Watcher};
use rmicro_core::testkit::{eventually, unique};
use rmicro_core::transport::MemoryTransport;
use rmicro_registry_etcd::{EtcdConfig, EtcdRegistry};
use tokio::process::{Child, Command};

fn shared_etcd() -> String {
    std::env::var("MICRO_TEST_ETCD_ADDR").unwrap_or_else(|_| "127.0.0.1:2379".to_owned())
}

/// An etcd of the test's own, on its own ports, so stopping it disturbs no other test.
struct OwnEtcd {
    process: Option<Child>,
    client_port: u16,
    peer_port: u16,
}

impl OwnEtcd {
    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    async fn start(client_port: u16, peer_port: u16) -> OwnEtcd {
        let mut etcd = OwnEtcd { process: None, client_port, peer_port };
        etcd.restart_fresh().await;
        etcd
    }

    /// (Re)starts etcd with an empty data directory: everything it knew is gone.
    async fn restart_fresh(&mut self) {
        if let Some(mut old) = self.process.take() {
            old.kill().await.unwrap();
            old.wait().await.unwrap();
        }
        let dir: PathBuf = std::env::temp_dir().join(unique("rmicro-etcd"));
        let (client, peer) =
            (format!("http://127.0.0.1:{}", self.client_port), format!("http://127.0.0.1:{}", self.peer_port));
        let process = Command::new("etcd")
            .args(["--data-dir", dir.to_str().unwrap(), "--name", "test"])
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("test={peer}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("etcd (Debian etcd-server) is installed");
        self.process = Some(process);
        let address = self.address();
        eventually(Duration::from_secs(20), "own etcd answers", || {
            let address = address.clone();
            async move {
                match EtcdRegistry::connect(
                    EtcdConfig::default().with_endpoints([address]).with_timeout(Duration::from_millis(500)),
                )
                .await
                {
                    Ok(registry) => registry.list_services().await.is_ok(),
                    Err(_) => false,
                }
            }
        })
        .await;
    }

    async fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill().await.unwrap();
            process.wait().await.unwrap();
        }
    }
}

async fn registry(address: &str) -> EtcdRegistry {
    EtcdRegistry::connect(EtcdConfig::default().with_endpoints([address]).with_timeout(Duration::from_secs(2)))
        .await
        .unwrap()
}

async fn next(watcher: &mut Watcher, kind: EventKind, within: Duration) -> rmicro_core::registry::Event {
    tokio::time::timeout(within, async {
        loop {
            match watcher.next().await {
                Some(Ok(event)) if event.kind == kind => return event,
                Some(_) => continue,
                None => panic!("the watch ended"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind:?} event within {within:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_sees_the_node_and_sigkill_leaves_it_until_the_lease_expires() {
    let name = unique("etcd-kill");
    let registry = registry(&shared_etcd()).await;
    let mut watcher = registry.watch(Some(&name)).await.unwrap();
    let examples = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("examples");
    let mut registrant = Command::new(examples.join("register_and_wait"))
        .args([name.as_str(), "5", &shared_etcd()])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the register_and_wait example exists: `cargo test -p rmicro-registry-etcd` builds it (with --test, run `cargo build --examples` first)");
    let created = next(&mut watcher, EventKind::Create, Duration::from_secs(10)).await;
    let id = created.service.nodes[0].id.clone();

    let listed = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &shared_etcd(), "get", "--prefix", &format!("/micro/registry/{name}/")])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    eprintln!("etcdctl get --prefix /micro/registry/{name}/:\n{listed}");
    assert!(
        listed.contains(&format!("/micro/registry/{name}/{id}")) && listed.contains("\"address\":\"127.0.0.1:9\""),
        "{listed}"
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    registrant.start_kill().unwrap();
    let killed = tokio::time::Instant::now();
    registrant.wait().await.unwrap();
    let deleted = next(&mut watcher, EventKind::Delete, Duration::from_secs(15)).await;
    let waited = killed.elapsed();
    eprintln!("SIGKILL: {id} deleted {waited:?} after the kill (lease TTL 5 s)");
    assert_eq!(deleted.service.nodes[0].id, id);
    assert!(waited >= Duration::from_secs(2), "the node outlived its process until the lease expired ({waited:?})");
    assert_eq!(registry.get_service(&name).await.unwrap_err().code, Code::NotFound);
}

#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
struct Ping {
    #[prost(uint32, tag = "1")]
    n: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_etcd_restarts_empty_the_service_registers_again_and_watchers_report_it() {
    let mut etcd = OwnEtcd::start(23791, 23801).await;
    let transport = Arc::new(MemoryTransport::new());
    let server_registry = Arc::new(registry(&etcd.address()).await);
    let service = rmicro_core::service::Service::builder("pinger")
        .transport(transport.clone())
        .registry(server_registry.clone())
        .server(|s| s.register_ttl(Duration::from_secs(5)).register_interval(Duration::from_secs(1)))
        .build();
    service.server().handle("Pinger.Ping", |_ctx, ping: Ping| async move { Ok(Ping { n: ping.n + 1 }) });
    service.start().await.unwrap();

    let watching = registry(&etcd.address()).await;
    let mut watcher = watching.watch(Some("pinger")).await.unwrap();
    let client_registry: Arc<dyn Registry> = Arc::new(registry(&etcd.address()).await);
    let client = Client::builder().transport(transport).registry(client_registry).build();
    assert_eq!(
        client.call::<_, Ping>(Call::new("pinger", "Pinger.Ping"), &Ping { n: 1 }).await.unwrap().get_ref().n,
        2
    );

    etcd.stop().await;
    for n in 0..5 {
        let reply = client.call::<_, Ping>(Call::new("pinger", "Pinger.Ping"), &Ping { n }).await;
        assert_eq!(reply.expect("known nodes are still called while etcd is down").get_ref().n, n + 1);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    etcd.restart_fresh().await;
    let back = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match watcher.next().await {
                Some(Ok(event)) if matches!(event.kind, EventKind::Create | EventKind::Update) => return event,
                Some(_) => continue,
                None => panic!("the watch ended"),
            }
        }
    })
    .await
    .expect("the watcher reports the re-registered node");
    eprintln!("after the restart the watcher reported {:?} {}", back.kind, back.service.nodes[0].id);
    assert_eq!(back.service.nodes[0].id, service.server().id());
    let found = watching.get_service("pinger").await.unwrap();
    assert_eq!(found[0].nodes[0].id, service.server().id(), "registered again with no manual step");
    let reply = client.call::<_, Ping>(Call::new("pinger", "Pinger.Ping"), &Ping { n: 7 }).await;
    assert_eq!(reply.expect("the re-registered node is called").get_ref().n, 8);
    service.stop().await.unwrap();
}
