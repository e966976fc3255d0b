//! The listening side: accepts TCP connections, serves HTTP/1.1 and h2c on each, and turns every
//! request into an `IncomingCall`.

use std::convert::Infallible;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, BodyStream, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rmicro_core::metadata::Metadata;
use rmicro_core::raw::{AcceptLoop, Arrivals, QueueListener};
use rmicro_core::transport::{CallHead, IncomingCall, MessageSource, Reply, Requests};
use rmicro_core::{Code, Error, Result};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

use crate::wire::{self, Body, Deframer};

const ACCEPT_BACKLOG: usize = 1024;
const STREAM_WINDOW: usize = 16;

/// A listener: the queue of calls, and the accept loop with its connections.
pub(crate) type HttpListener = QueueListener<AcceptLoop>;

pub(crate) async fn listen(address: &str, max_message_size: usize) -> Result<HttpListener> {
    let address = if address.is_empty() { "127.0.0.1:0" } else { address };
    let tcp =
        TcpListener::bind(address).await.map_err(|e| Error::unavailable(format!("cannot listen on {address}: {e}")))?;
    let local = tcp.local_addr().map_err(|e| Error::internal(format!("listener has no address: {e}")))?;
    let (tx, calls) = rmicro_core::raw::arrivals(ACCEPT_BACKLOG);
    let accepting =
        AcceptLoop::spawn(|connections, closing| accept_connections(tcp, tx, max_message_size, connections, closing));
    Ok(QueueListener::new(local.to_string(), calls, accepting))
}

async fn accept_connections(
    tcp: TcpListener,
    calls: Arrivals,
    max: usize,
    connections: TaskTracker,
    closing: CancellationToken,
) {
    loop {
        let (stream, peer) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (calls, closing) = (calls.clone(), closing.clone());
        connections.spawn(async move {
            let service = service_fn(move |req| serve(req, calls.clone(), max));
            let builder = auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                _ = closing.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

/// Reads what is called from the request line and headers.
fn head_of(req: &Request<Incoming>) -> Result<CallHead> {
    if req.method() != Method::POST {
        return Err(Error::bad_request(format!("calls are POST requests, not {}", req.method())));
    }
    let headers = req.headers();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let mut segments = req.uri().path().trim_matches('/').splitn(2, '/');
    let (service, endpoint) = match (segments.next(), segments.next()) {
        (Some(service), Some(endpoint)) if !service.is_empty() => (service.to_owned(), endpoint.to_owned()),
        (Some(endpoint), None) if !endpoint.is_empty() => {
            (header(wire::SERVICE).unwrap_or_default().to_owned(), endpoint.to_owned())
        }
        _ => return Err(Error::bad_request("the path must be /{service}/{endpoint}, e.g. /greeter/Greeter.Hello")),
    };
    let timeout = match header(wire::TIMEOUT) {
        Some(ms) => Some(Duration::from_millis(
            ms.trim()
                .parse()
                .map_err(|_| Error::bad_request(format!("{} must be milliseconds, not {ms:?}", wire::TIMEOUT)))?,
        )),
        None => None,
    };
    Ok(CallHead {
        service,
        endpoint,
        content_type: header(http::header::CONTENT_TYPE.as_str()).unwrap_or("application/json").to_owned(),
        metadata: wire::metadata_from(headers),
        timeout,
        stream: header(wire::STREAM) == Some("1"),
    })
}

async fn serve(req: Request<Incoming>, calls: Arrivals, max: usize) -> Result<Response<Body>, Infallible> {
    let head = match head_of(&req) {
        Ok(head) => head,
        Err(e) => return Ok(wire::error_response(&e, true)),
    };
    let stream = head.stream;
    let content_type = head.content_type.clone();
    let body = req.into_body();
    let cancel = CancellationToken::new();
    let requests = if stream {
        let framed =
            FramedRequests { body: BodyStream::new(body), deframer: Deframer::new(max), cancel: cancel.clone() };
        Requests::Stream(Box::new(framed))
    } else {
        match Limited::new(body, max).collect().await {
            Ok(collected) => Requests::Whole(collected.to_bytes()),
            Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
                return Ok(wire::error_response(&wire::too_large(max + 1, max).with_id("rmicro.transport.http"), true));
            }
            Err(e) => return Ok(wire::error_response(&Error::bad_request(format!("reading the body: {e}")), true)),
        }
    };
    let Some(arrival) = calls.reserve().await else {
        return Ok(wire::error_response(&Error::unavailable("the server is not accepting calls"), true));
    };
    let (frames_tx, mut frames) = mpsc::channel(STREAM_WINDOW);
    let guard = cancel.clone().drop_guard();
    arrival.run(IncomingCall { head, requests, reply: Box::new(HttpReply { frames: frames_tx }), cancel }).await;
    if stream {
        Ok(streaming_response(frames, guard).await)
    } else {
        Ok(unary_response(&mut frames, guard, &content_type).await)
    }
}

#[derive(Debug)]
enum ReplyFrame {
    Header(Metadata),
    Message(Bytes),
    End(Result<()>),
}

async fn unary_response(
    frames: &mut mpsc::Receiver<ReplyFrame>,
    guard: DropGuard,
    content_type: &str,
) -> Response<Body> {
    let (mut header, mut message) = (Metadata::new(), None);
    let status = loop {
        match frames.recv().await {
            Some(ReplyFrame::Header(md)) => header = md,
            Some(ReplyFrame::Message(body)) => message = Some(body),
            Some(ReplyFrame::End(status)) => break status,
            None => break Err(Error::internal("the server ended the call without a status")),
        }
    };
    guard.disarm();
    let result = status.and_then(|()| message.ok_or_else(|| Error::internal("the handler sent no response")));
    let body = match result {
        Ok(body) => body,
        Err(e) => return wire::error_response(&e, false),
    };
    let mut response = Response::new(wire::full(body));
    if let Ok(content_type) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(http::header::CONTENT_TYPE, content_type);
    }
    if let Err(e) = wire::insert_metadata(response.headers_mut(), &header) {
        return wire::error_response(&e, false);
    }
    response
}

async fn streaming_response(mut frames: mpsc::Receiver<ReplyFrame>, guard: DropGuard) -> Response<Body> {
    let mut header = Metadata::new();
    let mut first = None;
    match frames.recv().await {
        Some(ReplyFrame::Header(md)) => header = md,
        other => first = other,
    }
    let replay = futures::stream::iter(first);
    let rest = futures::stream::unfold(frames, |mut frames| async move { frames.recv().await.map(|f| (f, frames)) });
    let mut guard = Some(guard);
    let mut ended = false;
    let framed = replay.chain(rest).filter_map(move |f| {
        let data = match f {
            ReplyFrame::Header(_) => None,
            ReplyFrame::Message(body) => Some(wire::frame(wire::MESSAGE, &body)),
            ReplyFrame::End(status) if !ended => {
                ended = true;
                if let Some(guard) = guard.take() {
                    guard.disarm();
                }
                Some(wire::status_frame(&status))
            }
            ReplyFrame::End(_) => None,
        };
        std::future::ready(data.map(|d| Ok::<_, Infallible>(Frame::data(d))))
    });
    let mut response = Response::new(BoxBody::new(StreamBody::new(framed)));
    response.headers_mut().insert(wire::STREAM, HeaderValue::from_static("1"));
    if let Err(e) = wire::insert_metadata(response.headers_mut(), &header) {
        return wire::error_response(&e, false);
    }
    *response.status_mut() = StatusCode::OK;
    response
}

struct FramedRequests {
    body: BodyStream<Incoming>,
    deframer: Deframer,
    cancel: CancellationToken,
}

impl std::fmt::Debug for FramedRequests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FramedRequests").finish_non_exhaustive()
    }
}

#[async_trait]
impl MessageSource for FramedRequests {
    async fn recv(&mut self) -> Result<Option<Bytes>> {
        loop {
            match self.deframer.next()? {
                Some((wire::MESSAGE, body)) => return Ok(Some(body)),
                Some((kind, _)) => {
                    return Err(Error::bad_request(format!("a request stream cannot carry frame kind {kind}")));
                }
                None => {}
            }
            match self.body.next().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.deframer.push(&data);
                    }
                }
                Some(Err(e)) if self.cancel.is_cancelled() => {
                    return Err(Error::canceled(format!("the caller went away: {e}")));
                }
                Some(Err(e)) => return Err(Error::new(Code::Canceled, format!("reading the request stream: {e}"))),
                None if self.deframer.has_partial() => {
                    return Err(Error::bad_request("the request stream ended inside a frame"));
                }
                None => return Ok(None),
            }
        }
    }
}

#[derive(Debug)]
struct HttpReply {
    frames: mpsc::Sender<ReplyFrame>,
}

fn gone() -> Error {
    Error::canceled("the caller went away")
}

#[async_trait]
impl Reply for HttpReply {
    async fn send_header(&mut self, metadata: Metadata) -> Result<()> {
        self.frames.send(ReplyFrame::Header(metadata)).await.map_err(|_| gone())
    }

    async fn send(&mut self, message: Bytes) -> Result<()> {
        self.frames.send(ReplyFrame::Message(message)).await.map_err(|_| gone())
    }

    async fn finish(self: Box<Self>, status: Result<()>) {
        let _ = self.frames.send(ReplyFrame::End(status)).await;
    }
}
