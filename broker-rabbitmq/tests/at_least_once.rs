//! At least once, across a crash: a subscriber process killed with SIGKILL in the middle of
//! 1,000 messages, then started again in the same group, ends with all 1,000 handled
//! (duplicates allowed, losses not).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use rmicro_broker_rabbitmq::{RabbitBroker, RabbitConfig};
use rmicro_core::broker::{Broker, Envelope};
use rmicro_core::testkit::{eventually, unique};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn url() -> String {
    std::env::var("MICRO_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

async fn recorder(topic: &str, file: &std::path::Path) -> Child {
    let examples = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("examples");
    let mut child = Command::new(examples.join("rabbitmq_record"))
        .args([&url(), "rmicro-alo", topic, "recorders", file.to_str().unwrap()])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the rabbitmq_record example exists: `cargo test -p rmicro-broker-rabbitmq` builds it (with --test, run `cargo build --examples` first)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap();
    assert_eq!(ready.as_deref(), Some("subscribed"));
    child
}

fn handled(file: &std::path::Path) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for line in std::fs::read_to_string(file).unwrap_or_default().lines() {
        *counts.entry(line.to_owned()).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_subscriber_loses_nothing() {
    let topic = unique("alo");
    let file = std::env::temp_dir().join(format!("{topic}.log"));
    let mut first = recorder(&topic, &file).await;
    let broker = RabbitBroker::connect(
        RabbitConfig::default()
            .with_address(url())
            .with_exchange("rmicro-alo")
            .with_group_idle(Duration::from_secs(60)),
    )
    .await
    .unwrap();
    for i in 0..1_000 {
        broker.publish(&topic, Envelope::new(format!("m{i}"))).await.unwrap();
    }
    eventually(Duration::from_secs(30), "300 handled before the kill", || async { handled(&file).len() >= 300 }).await;
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let at_kill = handled(&file).len();
    let _second = recorder(&topic, &file).await;
    eventually(Duration::from_secs(60), "all 1,000 handled", || async { handled(&file).len() >= 1_000 }).await;
    let counts = handled(&file);
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    eprintln!(
        "at least once: {at_kill} handled when killed; after the restart {} distinct of 1000, {duplicates} handled twice",
        counts.len()
    );
    assert!((0..1_000).all(|i| counts.contains_key(&format!("m{i}"))), "no message was lost");
    let _ = std::fs::remove_file(&file);
}
