//! ACL tokens and health: a registry without the agent's token is refused; a node whose TTL
//! check lapsed stays in Consul's catalog but is no longer returned (passing nodes only).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use rmicro_core::Code;
use rmicro_core::registry::{Node, Registry, ServiceRecord};
use rmicro_core::testkit::{eventually, unique};
use rmicro_registry_consul::{ConsulConfig, ConsulRegistry};

mod support;

fn service(name: &str) -> ServiceRecord {
    ServiceRecord {
        name: name.to_owned(),
        version: "1.0.0".into(),
        nodes: vec![Node { id: unique("node"), address: "127.0.0.1:7000".into(), ..Node::default() }],
        ..ServiceRecord::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_acl_token_calls_are_forbidden() {
    let agent = support::fake_consul::FakeConsul::start(Some("secret-token")).await;
    let anonymous = ConsulRegistry::connect(ConsulConfig::default().with_address(&agent.address)).await.unwrap();
    let err = anonymous.register(&service("acl"), None).await.unwrap_err();
    assert_eq!(err.code, Code::Forbidden, "{err}");
    let trusted =
        ConsulRegistry::connect(ConsulConfig::default().with_address(&agent.address).with_token("secret-token"))
            .await
            .unwrap();
    trusted.register(&service("acl"), None).await.unwrap();
    assert_eq!(trusted.get_service("acl").await.unwrap()[0].nodes.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_node_stays_in_the_catalog_but_is_not_passing() {
    let agent = support::fake_consul::FakeConsul::start(None).await;
    let registry = ConsulRegistry::connect(ConsulConfig::default().with_address(&agent.address)).await.unwrap();
    let name = unique("lapse");
    registry.register(&service(&name), Some(Duration::from_secs(1))).await.unwrap();
    eventually(Duration::from_secs(5), "node no longer passing", || async {
        registry.get_service(&name).await.is_err_and(|e| e.code == Code::NotFound)
    })
    .await;
    let catalog = raw_get(&agent.address, "/v1/catalog/services").await;
    assert!(catalog.contains(&name), "still in the catalog: {catalog}");
}

/// A plain GET with a raw TCP socket, to look at the agent the way a person with curl would.
async fn raw_get(address: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    text
}
