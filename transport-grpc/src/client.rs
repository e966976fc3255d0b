//! The dialling side: a tonic channel (one HTTP/2 connection) carrying every call.

use std::str::FromStr;

use async_trait::async_trait;
use bytes::Bytes;
use http::uri::PathAndQuery;
use rmicro_core::metadata::Metadata;
use rmicro_core::raw::too_large;
use rmicro_core::transport::EncodedResponse;
use rmicro_core::transport::{CallHead, ClientCall, Connection, MessageSink, MessageSource};
use rmicro_core::{Error, Result};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::client::Grpc;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

use crate::status::from_status;
use crate::wire::{self, GRPC_PROTO, PassThroughCodec};

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

impl GrpcConnection {
    fn grpc(&self) -> Grpc<Channel> {
        Grpc::new(self.channel.clone()).max_decoding_message_size(self.max).max_encoding_message_size(self.max)
    }
}

/// The gRPC request for `head` around `body`: metadata, content type and timeout.
fn request<T>(head: &CallHead, body: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(body);
    let mut metadata = head.metadata.clone();
    if head.content_type != GRPC_PROTO && head.content_type != "application/grpc" {
        metadata.insert("rmicro-content-type", head.content_type.clone());
    }
    wire::insert_metadata(request.metadata_mut(), &metadata);
    if let Some(timeout) = head.timeout {
        if let Ok(value) = AsciiMetadataValue::try_from(wire::format_timeout(timeout)) {
            request.metadata_mut().insert("grpc-timeout", value);
        }
    }
    request
}

/// The gRPC path of the endpoint `head` calls.
fn path(head: &CallHead) -> Result<PathAndQuery> {
    PathAndQuery::from_str(&wire::method_path(&head.service, &head.endpoint))
        .map_err(|e| Error::bad_request(format!("{}/{} is not a gRPC path: {e}", head.service, head.endpoint)))
}

#[async_trait]
impl Connection for GrpcConnection {
    async fn open(&self, head: CallHead) -> Result<ClientCall> {
        let path = path(&head)?;
        if !head.stream {
            let (tx, rx) = oneshot::channel();
            let unary = Unary { grpc: self.grpc(), path, head };
            return Ok(ClientCall {
                requests: Box::new(UnarySink { unary: Some((unary, tx)), request: None, max: self.max }),
                responses: Box::new(Responses { state: State::Sending(rx), header: None }),
            });
        }
        let (tx, rx) = mpsc::channel::<Bytes>(STREAM_WINDOW);
        let request = request(&head, ReceiverStream::new(rx));
        let mut grpc = self.grpc();
        let answer = tokio::spawn(async move {
            grpc.ready().await.map_err(|e| Status::unavailable(format!("connection not ready: {e}")))?;
            grpc.streaming(request, path, PassThroughCodec).await
        });
        Ok(ClientCall {
            requests: Box::new(RequestSink { tx: Some(tx), max: self.max }),
            responses: Box::new(Responses { state: State::Waiting(AbortOnDrop(answer)), header: None }),
        })
    }

    /// One gRPC unary request, made in the caller's task: no task per call, as a generated tonic
    /// client does it. Dropping the future resets the HTTP/2 stream.
    async fn unary(&self, head: &CallHead, request: Bytes) -> Result<EncodedResponse> {
        if request.len() > self.max {
            return Err(too_large(request.len(), self.max));
        }
        match send_unary(self.grpc(), path(head)?, self::request(head, request)).await {
            Ok(response) => {
                Ok(EncodedResponse::new(wire::metadata_from(response.metadata().as_ref()), response.into_inner()))
            }
            Err(status) => Err(from_status(&status)),
        }
    }

    fn is_closed(&self) -> bool {
        false
    }
}

/// A unary call: one gRPC unary request, made when the call is closed.
#[derive(Debug)]
struct Unary {
    grpc: Grpc<Channel>,
    path: PathAndQuery,
    head: CallHead,
}

type UnaryAnswer = std::result::Result<tonic::Response<Bytes>, Status>;

/// Sends one gRPC unary request once the channel is ready, and waits for its answer.
async fn send_unary(mut grpc: Grpc<Channel>, path: PathAndQuery, request: tonic::Request<Bytes>) -> UnaryAnswer {
    grpc.ready().await.map_err(|e| Status::unavailable(format!("connection not ready: {e}")))?;
    grpc.unary(request, path, PassThroughCodec).await
}

/// Holds a unary call's one request until the call is closed, then sends it and hands the
/// answer's task to the call's responses.
#[derive(Debug)]
struct UnarySink {
    unary: Option<(Unary, oneshot::Sender<AbortOnDrop<UnaryAnswer>>)>,
    request: Option<Bytes>,
    max: usize,
}

#[async_trait]
impl MessageSink for UnarySink {
    async fn send(&mut self, message: Bytes) -> Result<()> {
        if message.len() > self.max {
            return Err(too_large(message.len(), self.max));
        }
        if self.request.replace(message).is_some() {
            return Err(Error::bad_request("a unary call carries one request message"));
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<()> {
        if let Some((unary, answer)) = self.unary.take() {
            let body = self.request.take().unwrap_or_default();
            let Unary { grpc, path, head } = unary;
            let _ = answer.send(AbortOnDrop(tokio::spawn(send_unary(grpc, path, request(&head, body)))));
        }
        Ok(())
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
            return Err(too_large(message.len(), self.max));
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
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Debug)]
enum State {
    /// A unary call not closed yet.
    Sending(oneshot::Receiver<AbortOnDrop<UnaryAnswer>>),
    Unary(AbortOnDrop<UnaryAnswer>),
    /// A unary call's response, returned by the next `recv`.
    Answered(Bytes),
    Waiting(AbortOnDrop<Answer>),
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
                State::Sending(sent) => match sent.await {
                    Ok(task) => self.state = State::Unary(task),
                    Err(_) => {
                        self.state = State::Done;
                        return Err(Error::canceled("the call was dropped before it was sent"));
                    }
                },
                State::Unary(task) => {
                    let answer =
                        (&mut task.0).await.map_err(|e| Error::internal(format!("the call's task failed: {e}")));
                    self.state = State::Done;
                    match answer? {
                        Ok(response) => {
                            self.header = Some(wire::metadata_from(response.metadata().as_ref()));
                            self.state = State::Answered(response.into_inner());
                        }
                        Err(status) => {
                            self.header.get_or_insert_with(|| wire::metadata_from(status.metadata().as_ref()));
                            return Err(from_status(&status));
                        }
                    }
                }
                State::Answered(_) => {
                    let State::Answered(body) = std::mem::replace(&mut self.state, State::Done) else { continue };
                    return Ok(Some(body));
                }
                State::Waiting(task) => {
                    let answer =
                        (&mut task.0).await.map_err(|e| Error::internal(format!("the call's task failed: {e}")));
                    match answer? {
                        Ok(response) => {
                            self.header = Some(wire::metadata_from(response.metadata().as_ref()));
                            self.state = State::Streaming(Box::new(response.into_inner()));
                        }
                        Err(status) => {
                            self.header.get_or_insert_with(|| wire::metadata_from(status.metadata().as_ref()));
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
