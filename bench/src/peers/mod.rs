//! The systems under test. Each has a server (`serve`, run in its own process until killed) and
//! a load generator (`load`, one client in another process).

pub(crate) mod nats;
pub(crate) mod raw_tcp;
pub(crate) mod rmicro;
pub(crate) mod tarpc;
pub(crate) mod tonic;

use std::time::Duration;

use crate::load::Measured;
use crate::messages::Payload;

/// One measured scenario as the load process runs it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scenario {
    pub(crate) payload: Payload,
    pub(crate) concurrency: usize,
    pub(crate) warm_up: Duration,
    pub(crate) window: Duration,
}

/// Tells the orchestrator on stdout when the measured window opens and closes.
pub(crate) fn announce(open: bool) {
    println!("{}", if open { "WINDOW OPEN" } else { "WINDOW CLOSED" });
}

/// The systems and the transports each is measured on, in table order.
pub(crate) const SYSTEMS: &[(&str, &str)] = &[
    ("raw-tcp", "tcp"),
    ("tarpc", "tcp"),
    ("rmicro", "tcp"),
    ("tonic", "grpc"),
    ("rmicro", "grpc"),
    ("rmicro", "http"),
    ("async-nats", "nats"),
    ("rmicro", "nats"),
];

/// What keeps a server running while it is held.
pub(crate) type Running = Box<dyn std::any::Any>;

/// Starts `system`'s server; returns the address its clients dial.
pub(crate) async fn serve(system: &str, transport: &str, nats_url: &str) -> Result<(String, Running), String> {
    let spawned = |address: String| (address, Box::new(()) as Running);
    match system {
        "raw-tcp" => raw_tcp::serve().await.map(spawned),
        "tarpc" => tarpc::serve().await.map(spawned),
        "tonic" => tonic::serve().await.map(spawned),
        "async-nats" => nats::serve(nats_url).await.map(spawned),
        "rmicro" => rmicro::serve(transport, nats_url).await,
        other => Err(format!("unknown system {other}")),
    }
}

/// Runs one scenario against `system`'s server at `address`.
pub(crate) async fn load(
    system: &str,
    transport: &str,
    address: &str,
    nats_url: &str,
    scenario: Scenario,
) -> Result<Measured, String> {
    match system {
        "raw-tcp" => raw_tcp::load(address, scenario).await,
        "tarpc" => tarpc::load(address, scenario).await,
        "tonic" => tonic::load(address, scenario).await,
        "async-nats" => nats::load(nats_url, address, scenario).await,
        "rmicro" => rmicro::load(transport, address, nats_url, scenario).await,
        other => Err(format!("unknown system {other}")),
    }
}
