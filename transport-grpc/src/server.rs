//! The listening side: an h2c server whose every request is a gRPC call, framed by tonic and
//! handed to rmicro as an `IncomingCall`.

use std::convert::Infallible;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::future::{self, BoxFuture};
use futures::stream::BoxStream;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rmicro_core::metadata::Metadata;
use rmicro_core::raw::{AcceptLoop, Arrivals, QueueListener};
use rmicro_core::transport::{self, CallHead, IncomingCall, MessageSource, Reply};
use rmicro_core::{Error, Result};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;
use tonic::body::Body;
use tonic::server::{Grpc, StreamingService};
use tonic::{Status, Streaming};

use crate::status::{from_status, refused, to_status};
use crate::wire::{self, GRPC_PROTO, PassThroughCodec};

const ACCEPT_BACKLOG: usize = 1024;
const STREAM_WINDOW: usize = 16;

/// A listener: the queue of calls, and the accept loop with its connections.
pub(crate) type GrpcListener = QueueListener<AcceptLoop>;

pub(crate) async fn listen(address: &str, max: usize, tls: Option<TlsAcceptor>) -> Result<GrpcListener> {
    let address = if address.is_empty() { "127.0.0.1:0" } else { address };
    let tcp =
        TcpListener::bind(address).await.map_err(|e| Error::unavailable(format!("cannot listen on {address}: {e}")))?;
    let local = tcp.local_addr().map_err(|e| Error::internal(format!("listener has no address: {e}")))?;
    let (tx, calls) = rmicro_core::raw::arrivals(ACCEPT_BACKLOG);
    let accepting = AcceptLoop::spawn(|connections, closing| accept(tcp, tx, max, tls, connections, closing));
    Ok(QueueListener::new(local.to_string(), calls, accepting))
}

async fn accept(
    tcp: TcpListener,
    calls: Arrivals,
    max: usize,
    tls: Option<TlsAcceptor>,
    connections: TaskTracker,
    closing: CancellationToken,
) {
    loop {
        let Ok((stream, peer)) = tcp.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (calls, closing, tls) = (calls.clone(), closing.clone(), tls.clone());
        connections.spawn(async move {
            match tls {
                Some(tls) => match tls.accept(stream).await {
                    Ok(stream) => serve_connection(TokioIo::new(stream), calls, max, closing, peer).await,
                    Err(e) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                },
                None => serve_connection(TokioIo::new(stream), calls, max, closing, peer).await,
            }
        });
    }
}

/// Serves one connection (plain or TLS) until it ends or, on shutdown, finishes its calls.
async fn serve_connection<I>(io: I, calls: Arrivals, max: usize, closing: CancellationToken, peer: std::net::SocketAddr)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |req| serve(req, calls.clone(), max));
    let builder = auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        _ = closing.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(%peer, error = %e, "gRPC connection ended with an error");
    }
}

/// The call head of a gRPC request, or the status to refuse it with.
fn head_of(req: &Request<Incoming>) -> std::result::Result<CallHead, Status> {
    let (service, endpoint) = wire::parse_path(req.uri().path())
        .ok_or_else(|| Status::unimplemented(format!("{} is not a gRPC method path", req.uri().path())))?;
    let headers = req.headers();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let content_type = match header("rmicro-content-type") {
        Some(explicit) => explicit.to_owned(),
        None => match header("content-type").unwrap_or("application/grpc") {
            "application/grpc" => GRPC_PROTO.to_owned(),
            other => other.to_owned(),
        },
    };
    Ok(CallHead {
        service,
        endpoint,
        content_type,
        metadata: wire::metadata_from(headers),
        timeout: header("grpc-timeout").and_then(wire::parse_timeout),
        stream: true,
    })
}

async fn serve(req: Request<Incoming>, calls: Arrivals, max: usize) -> std::result::Result<Response<Body>, Infallible> {
    let is_grpc = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"));
    if !is_grpc {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        response.headers_mut().insert("grpc-status", HeaderValue::from_static("3"));
        return Ok(response);
    }
    let head = match head_of(&req) {
        Ok(head) => head,
        Err(status) => return Ok(status.into_http()),
    };
    let mut grpc = Grpc::new(PassThroughCodec).max_decoding_message_size(max).max_encoding_message_size(max);
    Ok(grpc.streaming(Dispatch { calls, head: Some(head) }, req).await)
}

/// Hands a decoded gRPC call to the rmicro server and turns its reply into a gRPC response.
struct Dispatch {
    calls: Arrivals,
    head: Option<CallHead>,
}

/// A stream's frames after its opening.
#[derive(Debug)]
enum Frame {
    Message(Bytes),
    End(Result<()>),
}

/// How a reply begins. A unary answer or a status before any message comes whole, with no
/// channel of frames: a channel's first block holds 32 frames, allocated per call.
#[derive(Debug)]
enum Opening {
    /// A unary call's whole answer: header, the one response and a good status.
    Answer { header: Metadata, body: Bytes },
    /// The call's status, with no message before it.
    End(Result<()>),
    /// A stream: its header, then its frames.
    Stream { header: Metadata, frames: mpsc::Receiver<Frame> },
}

type ResponseStream = BoxStream<'static, std::result::Result<Bytes, Status>>;

impl StreamingService<Bytes> for Dispatch {
    type Response = Bytes;
    type ResponseStream = ResponseStream;
    type Future = BoxFuture<'static, std::result::Result<tonic::Response<ResponseStream>, Status>>;

    fn call(&mut self, request: tonic::Request<Streaming<Bytes>>) -> Self::Future {
        let (calls, head) = (self.calls.clone(), self.head.take());
        Box::pin(async move {
            let head = head.ok_or_else(|| Status::internal("the call was already dispatched"))?;
            let Some(arrival) = calls.reserve().await else {
                return Err(refused(&Error::unavailable("the server is not accepting calls")));
            };
            let cancel = CancellationToken::new();
            let guard = cancel.clone().drop_guard();
            let (opened, opening) = oneshot::channel();
            let call = IncomingCall {
                head,
                requests: transport::Requests::Stream(Box::new(Requests {
                    stream: request.into_inner(),
                    cancel: cancel.clone(),
                })),
                reply: Box::new(GrpcReply::Opening(Some(opened))),
                cancel,
            };
            arrival.run(call).await;
            let (header, responses) = match opening.await {
                Ok(Opening::Answer { header, body }) => {
                    guard.disarm();
                    (header, futures::stream::once(future::ready(Ok(body))).boxed())
                }
                Ok(Opening::End(Ok(()))) => {
                    guard.disarm();
                    (Metadata::new(), futures::stream::empty().boxed())
                }
                Ok(Opening::End(Err(e))) => {
                    guard.disarm();
                    return Err(to_status(&e));
                }
                Ok(Opening::Stream { header, frames }) => (header, responses(frames, guard)),
                Err(_) => return Err(Status::internal("the server ended the call without a status")),
            };
            let mut response = tonic::Response::new(responses);
            wire::insert_metadata(response.metadata_mut(), &header);
            Ok(response)
        })
    }
}

/// A stream's response messages, ending with the call's status; the guard cancels the call if
/// the caller goes away before the end.
fn responses(frames: mpsc::Receiver<Frame>, guard: DropGuard) -> ResponseStream {
    struct State {
        frames: mpsc::Receiver<Frame>,
        guard: Option<DropGuard>,
    }
    let state = State { frames, guard: Some(guard) };
    futures::stream::unfold(state, |mut state| async move {
        state.guard.as_ref()?;
        let frame = match state.frames.recv().await {
            Some(frame) => frame,
            None => Frame::End(Err(Error::internal("the server ended the call without a status"))),
        };
        match frame {
            Frame::Message(body) => Some((Ok(body), state)),
            Frame::End(status) => {
                if let Some(guard) = state.guard.take() {
                    guard.disarm();
                }
                status.err().map(|e| (Err(to_status(&e)), state))
            }
        }
    })
    .boxed()
}

#[derive(Debug)]
struct Requests {
    stream: Streaming<Bytes>,
    cancel: CancellationToken,
}

#[async_trait]
impl MessageSource for Requests {
    async fn recv(&mut self) -> Result<Option<Bytes>> {
        match self.stream.message().await {
            Ok(message) => Ok(message),
            Err(_) if self.cancel.is_cancelled() => Err(Error::canceled("the caller went away")),
            Err(status) => Err(from_status(&status)),
        }
    }
}

/// The server's reply: whole while it is a unary answer or a bare status, a stream of frames
/// from its first header or message on.
#[derive(Debug)]
enum GrpcReply {
    Opening(Option<oneshot::Sender<Opening>>),
    Streaming(mpsc::Sender<Frame>),
}

fn gone() -> Error {
    Error::canceled("the caller went away")
}

impl GrpcReply {
    /// The stream's frames, opening the stream with `header` if this is its first part.
    fn stream(&mut self, header: Metadata) -> Result<&mpsc::Sender<Frame>> {
        if let GrpcReply::Opening(opened) = self {
            let (frames, rx) = mpsc::channel(STREAM_WINDOW);
            opened.take().ok_or_else(gone)?.send(Opening::Stream { header, frames: rx }).map_err(|_| gone())?;
            *self = GrpcReply::Streaming(frames);
        }
        match self {
            GrpcReply::Streaming(frames) => Ok(frames),
            GrpcReply::Opening(_) => Err(gone()),
        }
    }
}

#[async_trait]
impl Reply for GrpcReply {
    /// Opens the stream; a later header has nowhere to go on gRPC and is dropped.
    async fn send_header(&mut self, metadata: Metadata) -> Result<()> {
        self.stream(metadata)?;
        Ok(())
    }

    async fn send(&mut self, message: Bytes) -> Result<()> {
        self.stream(Metadata::new())?.send(Frame::Message(message)).await.map_err(|_| gone())
    }

    async fn finish(self: Box<Self>, status: Result<()>) {
        match *self {
            GrpcReply::Opening(Some(opened)) => {
                let _ = opened.send(Opening::End(status));
            }
            GrpcReply::Opening(None) => {}
            GrpcReply::Streaming(frames) => {
                let _ = frames.send(Frame::End(status)).await;
            }
        }
    }

    /// The whole answer in one piece, where the provided method would open a stream.
    async fn answer(self: Box<Self>, metadata: Metadata, response: Bytes) {
        match *self {
            GrpcReply::Opening(Some(opened)) => {
                let _ = opened.send(Opening::Answer { header: metadata, body: response });
            }
            GrpcReply::Opening(None) => {}
            GrpcReply::Streaming(frames) => {
                if frames.send(Frame::Message(response)).await.is_ok() {
                    let _ = frames.send(Frame::End(Ok(()))).await;
                }
            }
        }
    }
}
