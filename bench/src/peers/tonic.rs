//! Plain tonic: the generated server and client, one HTTP/2 connection.

use tonic::transport::{Endpoint, Server};
use tonic::{Request, Response, Status};

use super::Scenario;
use crate::load::{Measured, closed_loop};
use crate::messages::pb::bench_client::BenchClient;
use crate::messages::pb::bench_server::{Bench, BenchServer};
use crate::messages::{Request as Payload, answer_message, pb};

struct Service;

#[tonic::async_trait]
impl Bench for Service {
    async fn message(&self, request: Request<pb::BenchmarkMessage>) -> Result<Response<pb::BenchmarkMessage>, Status> {
        Ok(Response::new(answer_message(request.into_inner())))
    }

    async fn echo(&self, request: Request<pb::Payload>) -> Result<Response<pb::Payload>, Status> {
        Ok(Response::new(request.into_inner()))
    }
}

pub(crate) async fn serve() -> Result<String, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let address = listener.local_addr().map_err(|e| e.to_string())?.to_string();
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(Server::builder().add_service(BenchServer::new(Service)).serve_with_incoming(incoming));
    Ok(address)
}

pub(crate) async fn load(address: &str, scenario: Scenario) -> Result<Measured, String> {
    let channel = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| e.to_string())?
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let client = BenchClient::new(channel);
    let request = scenario.payload.request();
    let call = || async {
        let mut client = client.clone();
        match &request {
            Payload::Message(message) => {
                let reply = client.message((**message).clone()).await.map_err(|e| e.to_string())?.into_inner();
                if reply.field2 == 100 { Ok(()) } else { Err("the server did not answer the message".to_owned()) }
            }
            Payload::Payload(payload) => client.echo(payload.clone()).await.map(drop).map_err(|e| e.to_string()),
        }
    };
    Ok(closed_loop(call, scenario.concurrency, scenario.warm_up, scenario.window, super::announce).await)
}
