//! rmicro over each of its transports: the generated handler behind a `Server`, the generated
//! typed client on a `Client` that finds the server through a registry and its selector, as an
//! application would.

use std::sync::Arc;

use rmicro::Error;
use rmicro::client::Client;
use rmicro::context::Context;
use rmicro::registry::{MemoryRegistry, Node, Registry, ServiceRecord};
use rmicro::server::Server;
use rmicro::transport::Transport;
use rmicro::transport_grpc::{GrpcConfig, GrpcTransport};
use rmicro::transport_http::{HttpConfig, HttpTransport};
use rmicro::transport_nats::{NatsConfig, NatsTransport};
use rmicro::transport_tcp::{TcpConfig, TcpTransport};

use super::Scenario;
use crate::load::{Measured, closed_loop};
use crate::messages::rpb;

const SERVICE: &str = "bench";

struct Handler;

impl rpb::BenchHandler for Handler {
    async fn message(&self, _: Context, mut request: rpb::BenchmarkMessage) -> Result<rpb::BenchmarkMessage, Error> {
        request.field1 = "OK".to_owned();
        request.field2 = 100;
        Ok(request)
    }

    async fn echo(&self, _: Context, request: rpb::Payload) -> Result<rpb::Payload, Error> {
        Ok(request)
    }
}

async fn transport(name: &str, nats_url: &str) -> Result<Arc<dyn Transport>, String> {
    let connected = match name {
        "http" => HttpTransport::connect(HttpConfig::default()).await.map(shared),
        "grpc" => GrpcTransport::connect(GrpcConfig::default()).await.map(shared),
        "tcp" => TcpTransport::connect(TcpConfig::default()).await.map(shared),
        "nats" => NatsTransport::connect(NatsConfig::default().with_address(nats_url)).await.map(shared),
        other => return Err(format!("rmicro has no transport {other}")),
    };
    connected.map_err(|e| e.to_string())
}

fn shared(transport: impl Transport) -> Arc<dyn Transport> {
    Arc::new(transport)
}

/// The content type the client sends: gRPC's own name over gRPC, rmicro's default elsewhere.
fn content_type(transport: &str) -> &'static str {
    if transport == "grpc" { "application/grpc" } else { rmicro::codec::DEFAULT_CONTENT_TYPE }
}

pub(crate) async fn serve(transport_name: &str, nats_url: &str) -> Result<(String, super::Running), String> {
    // Over NATS the address is a subject: the same one the raw async-nats peer uses.
    let address = match transport_name {
        "nats" => super::nats::subject_prefix(),
        _ => "127.0.0.1:0".to_owned(),
    };
    let server = Server::builder(SERVICE)
        .transport(transport(transport_name, nats_url).await?)
        .registry(Arc::new(MemoryRegistry::new()))
        .address(address)
        .build();
    rpb::register_bench_handler(&server, Handler);
    server.start().await.map_err(|e| e.to_string())?;
    let address = server.address().await.ok_or("the server has no address")?;
    Ok((address, Box::new(server)))
}

pub(crate) async fn load(
    transport_name: &str,
    address: &str,
    nats_url: &str,
    scenario: Scenario,
) -> Result<Measured, String> {
    let registry = Arc::new(MemoryRegistry::new());
    // The labels an rmicro server registers its node with, so that selection handles what it
    // would in a deployment.
    let labels = [
        ("server", "rmicro"),
        ("transport", transport_name),
        ("registry", "memory"),
        ("broker", "memory"),
        ("protocol", "rmicro"),
    ]
    .map(|(key, value)| (key.to_owned(), value.to_owned()));
    let node = Node { id: format!("{SERVICE}-1"), address: address.to_owned(), metadata: labels.into() };
    let service = ServiceRecord { name: SERVICE.to_owned(), nodes: vec![node], ..ServiceRecord::default() };
    registry.register(&service, None).await.map_err(|e| e.to_string())?;
    let client = Client::builder()
        .transport(transport(transport_name, nats_url).await?)
        .registry(registry)
        .content_type(content_type(transport_name))
        .build();
    let bench = rpb::BenchClient::new(SERVICE, client);
    let message = prost::Message::encode_to_vec(&crate::messages::benchmark_message());
    let message: rpb::BenchmarkMessage = prost::Message::decode(message.as_slice()).map_err(|e| e.to_string())?;
    let payload = scenario.payload.data_len().map(|n| rpb::Payload { data: vec![0xab; n] });
    let call = || async {
        match &payload {
            Some(payload) => bench.echo(payload).await.map(drop).map_err(|e| e.to_string()),
            None => {
                let reply = bench.message(&message).await.map_err(|e| e.to_string())?;
                if reply.get_ref().field2 == 100 { Ok(()) } else { Err("the server did not answer".to_owned()) }
            }
        }
    };
    Ok(closed_loop(call, scenario.concurrency, scenario.warm_up, scenario.window, super::announce).await)
}
