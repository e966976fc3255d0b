//! The dialling side: a tonic channel (one HTTP/2 connection) carrying every call.

use std::str::FromStr;

use async_trait::async_trait;
use bytes::Bytes;
use http::uri::PathAndQuery;
use rmicro_core::metadata::Metadata;
use rmicro_core::transport::{CallHead, ClientCall, Connection, MessageSink, MessageSource};
use rmicro_core::{Error, Result};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::client::Grpc;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

use crate::status::from_status;
use crate::wire::{self, GRPC_PROTO, RawCodec};

const STREAM_WINDOW: usize = 16;

#[derive(Debug)]
pub(crate) struct GrpcConnection {
    channel: Channel,
    max: usize,
}

pub(crate) async fn dial(
    address: &str,
    max: usize,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> Result<GrpcConnection> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Channel::from_shared(format!("{scheme}://{address}"))
        .map_err(|e| Error::bad_request(format!("gRPC address {address:?}: {e}")))?
        .tcp_nodelay(true);
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).map_err(|e| Error::bad_request(format!("gRPC TLS: {e}")))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| Error::unavailable(format!("cannot connect to {address}: {e}")).unsent())?;
    Ok(GrpcConnection { channel, max })
}

type Answer = std::result::Result<tonic::Response<Streaming<Bytes>>, Status>;

#[async_trait]
impl Connection for GrpcConnection {
    async fn open(&self, head: CallHead) -> Result<ClientCall> {
        let path = PathAndQuery::from_str(&wire::method_path(&head.service, &head.endpoint))
            .map_err(|e| Error::bad_request(format!("{}/{} is not a gRPC path: {e}", head.service, head.endpoint)))?;
        let (tx, rx) = mpsc::channel::<Bytes>(STREAM_WINDOW);
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        let mut metadata = head.metadata.clone();
        if head.content_type != GRPC_PROTO && head.content_type != "application/grpc" {
            metadata.insert("rmicro-content-type", head.content_type.clone());
        }
        wire::insert_metadata(request.metadata_mut(), &metadata);
        if let Some(timeout) = head.timeout {
            request.set_timeout(timeout);
        }
        let (channel, max) = (self.channel.clone(), self.max);
        let answer = tokio::spawn(async move {
            let mut grpc = Grpc::new(channel).max_decoding_message_size(max).max_encoding_message_size(max);
            grpc.ready().await.map_err(|e| Status::unavailable(format!("connection not ready: {e}")))?;
            grpc.streaming(request, path, RawCodec).await
        });
        Ok(ClientCall {
            requests: Box::new(RequestSink { tx: Some(tx), max }),
            responses: Box::new(Responses { state: State::Waiting(AbortOnDrop(answer)), header: None }),
        })
    }

    fn is_closed(&self) -> bool {
        false
    }
}

#[derive(Debug)]
struct RequestSink {
    tx: Option<mpsc::Sender<Bytes>>,
    max: usize,
}

#[async_trait]
impl MessageSink for RequestSink {
    async fn send(&mut self, message: Bytes) -> Result<()> {
        let tx = self.tx.as_ref().ok_or_else(|| Error::bad_request("send after close"))?;
        if message.len() > self.max {
            return Err(Error::new(
                rmicro_core::Code::PayloadTooLarge,
                format!("message of {} bytes exceeds the limit of {} bytes", message.len(), self.max),
            ));
        }
        tx.send(message).await.map_err(|_| Error::canceled("the server has ended the call; its status says why"))
    }

    async fn close(&mut self) -> Result<()> {
        self.tx = None;
        Ok(())
    }
}

/// Aborts the call's task, and so resets its HTTP/2 stream, when the call is dropped.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<Answer>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Debug)]
enum State {
    Waiting(AbortOnDrop),
    Streaming(Box<Streaming<Bytes>>),
    Done,
}

#[derive(Debug)]
struct Responses {
    state: State,
    header: Option<Metadata>,
}

#[async_trait]
impl MessageSource for Responses {
    async fn recv(&mut self) -> Result<Option<Bytes>> {
        loop {
            match &mut self.state {
                State::Waiting(task) => {
                    let answer =
                        (&mut task.0).await.map_err(|e| Error::internal(format!("the call's task failed: {e}")));
                    match answer? {
                        Ok(response) => {
                            self.header = Some(wire::metadata_from(response.metadata()));
                            self.state = State::Streaming(Box::new(response.into_inner()));
                        }
                        Err(status) => {
                            self.header.get_or_insert_with(|| wire::metadata_from(status.metadata()));
                            self.state = State::Done;
                            return Err(from_status(&status));
                        }
                    }
                }
                State::Streaming(stream) => {
                    return match stream.message().await {
                        Ok(Some(message)) => Ok(Some(message)),
                        Ok(None) => {
                            self.state = State::Done;
                            Ok(None)
                        }
                        Err(status) => {
                            self.state = State::Done;
                            Err(from_status(&status))
                        }
                    };
                }
                State::Done => return Ok(None),
            }
        }
    }

    fn header(&self) -> Option<&Metadata> {
        self.header.as_ref()
    }
}
