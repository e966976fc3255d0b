//! `greeter quickstart`: starts the server and the client as separate processes, watches the
//! registry, then stops the server with SIGTERM and shows it deregister.

use std::process::Stdio;
use std::time::Duration;

use futures::StreamExt;
use rmicro::config::Options;
use rmicro::prelude::*;
use rmicro::registry::EventKind;
use tokio::process::{Child, Command};

fn spawn(mode: &str) -> Result<Child, Error> {
    let exe = std::env::current_exe().map_err(|e| Error::internal(format!("cannot find this program: {e}")))?;
    Command::new(exe)
        .arg(mode)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::internal(format!("cannot start greeter {mode}: {e}")))
}

fn sigterm(child: &Child) -> Result<(), Error> {
    let pid = child.id().ok_or_else(|| Error::internal("the server already exited"))?;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .map_err(|e| Error::internal(format!("kill: {e}")))?;
    if status.success() { Ok(()) } else { Err(Error::internal("kill -TERM failed")) }
}

pub(crate) async fn run() -> Result<(), Error> {
    let registry = Options::from_env()?.registry().await?;
    let mut watcher = registry.watch(Some("greeter")).await?;
    let mut server = spawn("server")?;
    let created = tokio::time::timeout(Duration::from_secs(15), watcher.next()).await;
    if let Ok(Some(Ok(event))) = created {
        let node = event.service.nodes.first().map(|n| n.address.clone()).unwrap_or_default();
        println!("registry: {:?} greeter at {node}", event.kind);
    }
    let client = spawn("client")?.wait().await.map_err(|e| Error::internal(e.to_string()))?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    sigterm(&server)?;
    let deleted = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(event) = watcher.next().await {
            if matches!(&event, Ok(e) if e.kind == EventKind::Delete) {
                return Some(());
            }
        }
        None
    })
    .await;
    if let Ok(Some(_)) = deleted {
        println!("registry: greeter deregistered after SIGTERM");
    }
    let server = server.wait().await.map_err(|e| Error::internal(e.to_string()))?;
    println!("quickstart: client {client}, server {server}");
    if client.success() && server.success() { Ok(()) } else { Err(Error::internal("a process failed")) }
}
