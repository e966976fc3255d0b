//! tarpc over TCP with its bincode serde transport. The messages travel as their protobuf bytes
//! (`serde_bytes`), and the server decodes, answers and re-encodes them as the other peers do.

use futures::StreamExt;
use serde_bytes::ByteBuf;
use tarpc::server::{BaseChannel, Channel};
use tarpc::tokio_serde::formats::Bincode;
use tarpc::{client, context};

use super::Scenario;
use crate::load::{Measured, closed_loop};
use crate::messages::{check_reply, serve_bytes};

#[tarpc::service]
trait Bench {
    /// Decodes, sets two fields, re-encodes.
    async fn message(request: ByteBuf) -> ByteBuf;
    /// Decodes and re-encodes a payload.
    async fn echo(request: ByteBuf) -> ByteBuf;
}

#[derive(Clone)]
struct BenchServer;

impl Bench for BenchServer {
    async fn message(self, _: context::Context, request: ByteBuf) -> ByteBuf {
        ByteBuf::from(serve_bytes(true, &request).map(|b| b.to_vec()).unwrap_or_default())
    }

    async fn echo(self, _: context::Context, request: ByteBuf) -> ByteBuf {
        ByteBuf::from(serve_bytes(false, &request).map(|b| b.to_vec()).unwrap_or_default())
    }
}

pub(crate) async fn serve() -> Result<String, String> {
    let mut listener =
        tarpc::serde_transport::tcp::listen("127.0.0.1:0", Bincode::default).await.map_err(|e| e.to_string())?;
    listener.config_mut().max_frame_length(16 << 20);
    let address = listener.local_addr().to_string();
    tokio::spawn(async move {
        while let Some(Ok(transport)) = listener.next().await {
            let _ = transport.get_ref().set_nodelay(true);
            let channel = BaseChannel::with_defaults(transport);
            tokio::spawn(channel.execute(BenchServer.serve()).for_each(|call| async move {
                tokio::spawn(call);
            }));
        }
    });
    Ok(address)
}

pub(crate) async fn load(address: &str, scenario: Scenario) -> Result<Measured, String> {
    let mut connect = tarpc::serde_transport::tcp::connect(address, Bincode::default);
    connect.config_mut().max_frame_length(16 << 20);
    let transport = connect.await.map_err(|e| e.to_string())?;
    transport.get_ref().set_nodelay(true).map_err(|e| e.to_string())?;
    let mut config = client::Config::default();
    config.max_in_flight_requests = 4096;
    let client = BenchClient::new(config, transport).spawn();
    let request = scenario.payload.request();
    let is_message = request.is_message();
    let call = || async {
        let bytes = ByteBuf::from(request.to_bytes().to_vec());
        let reply = if is_message {
            client.message(context::current(), bytes).await
        } else {
            client.echo(context::current(), bytes).await
        };
        check_reply(is_message, &reply.map_err(|e| e.to_string())?)
    };
    Ok(closed_loop(call, scenario.concurrency, scenario.warm_up, scenario.window, super::announce).await)
}
