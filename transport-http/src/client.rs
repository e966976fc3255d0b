//! The dialling side: one h2c connection per dial, carrying every call as its own HTTP/2 stream.

use std::convert::Infallible;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Future, StreamExt};
use http::{HeaderValue, Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, BodyStream, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rmicro_core::metadata::Metadata;
use rmicro_core::transport::{CallHead, ClientCall, Connection, MessageSink, MessageSource};
use rmicro_core::{Error, Result};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use crate::wire::{self, Body, Deframer};

/// Largest error body read from a failed response.
const MAX_ERROR_BODY: usize = 64 * 1024;
const STREAM_WINDOW: usize = 16;

#[derive(Debug)]
pub(crate) struct HttpConnection {
    address: String,
    sender: SendRequest<Body>,
    max_message_size: usize,
}

pub(crate) async fn dial(address: &str, max_message_size: usize) -> Result<HttpConnection> {
    let tcp = TcpStream::connect(address)
        .await
        .map_err(|e| Error::unavailable(format!("cannot connect to {address}: {e}")).unsent())?;
    let _ = tcp.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| Error::unavailable(format!("h2 handshake with {address} failed: {e}")).unsent())?;
    let peer = address.to_owned();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(peer, error = %e, "connection closed with an error");
        }
    });
    Ok(HttpConnection { address: address.to_owned(), sender, max_message_size })
}

impl HttpConnection {
    fn request(&self, head: &CallHead, body: Body) -> Result<Request<Body>> {
        let uri = format!("http://{}/{}/{}", self.address, head.service, head.endpoint);
        let mut request =
            Request::post(uri).header(http::header::CONTENT_TYPE, head.content_type.as_str()).body(body).map_err(
                |e| Error::bad_request(format!("cannot make a request of {}/{}: {e}", head.service, head.endpoint)),
            )?;
        let headers = request.headers_mut();
        wire::insert_metadata(headers, &head.metadata)?;
        if let Some(timeout) = head.timeout {
            headers.insert(wire::TIMEOUT, HeaderValue::from(timeout.as_millis().max(1) as u64));
        }
        if head.stream {
            headers.insert(wire::STREAM, HeaderValue::from_static("1"));
        }
        Ok(request)
    }
}

#[async_trait]
impl Connection for HttpConnection {
    async fn open(&self, head: CallHead) -> Result<ClientCall> {
        let mut sender = self.sender.clone();
        sender
            .ready()
            .await
            .map_err(|e| Error::unavailable(format!("connection to {} is closed: {e}", self.address)).unsent())?;
        let responses =
            |state| Responses { state, header: None, max: self.max_message_size, address: self.address.clone() };
        if !head.stream {
            let request = self.request(&head, Body::default())?;
            let (tx, rx) = oneshot::channel();
            return Ok(ClientCall {
                requests: Box::new(UnarySink { pending: Some((sender, request, tx)), body: None }),
                responses: Box::new(responses(State::Sending(rx))),
            });
        }
        let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(STREAM_WINDOW);
        let body = BoxBody::new(StreamBody::new(ReceiverStream::new(rx)));
        let request = self.request(&head, body)?;
        let response = Box::pin(sender.send_request(request));
        Ok(ClientCall {
            requests: Box::new(RequestSink { tx: Some(tx) }),
            responses: Box::new(responses(State::Waiting(response))),
        })
    }

    fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

#[derive(Debug)]
struct RequestSink {
    tx: Option<mpsc::Sender<Result<Frame<Bytes>, Infallible>>>,
}

#[async_trait]
impl MessageSink for RequestSink {
    async fn send(&mut self, message: Bytes) -> Result<()> {
        let tx = self.tx.as_ref().ok_or_else(|| Error::bad_request("send after close"))?;
        tx.send(Ok(Frame::data(wire::frame(wire::MESSAGE, &message))))
            .await
            .map_err(|_| Error::canceled("the server has ended the call; its status says why"))
    }

    async fn close(&mut self) -> Result<()> {
        self.tx = None;
        Ok(())
    }
}

/// Holds a unary call's request until the call is closed, then sends it whole, so the body
/// leaves with the request head and needs no channel.
struct UnarySink {
    pending: Option<(SendRequest<Body>, Request<Body>, oneshot::Sender<ResponseFuture>)>,
    body: Option<Bytes>,
}

impl std::fmt::Debug for UnarySink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnarySink").field("sent", &self.pending.is_none()).finish_non_exhaustive()
    }
}

#[async_trait]
impl MessageSink for UnarySink {
    async fn send(&mut self, message: Bytes) -> Result<()> {
        if self.body.replace(message).is_some() {
            return Err(Error::bad_request("a unary call carries one request message"));
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<()> {
        if let Some((mut sender, request, response)) = self.pending.take() {
            let body = self.body.take().unwrap_or_default();
            let request = request.map(|_| BoxBody::new(Full::new(body)));
            let _ = response.send(Box::pin(sender.send_request(request)));
        }
        Ok(())
    }
}

type ResponseFuture = Pin<Box<dyn Future<Output = hyper::Result<Response<Incoming>>> + Send>>;

enum State {
    /// A unary call not closed yet.
    Sending(oneshot::Receiver<ResponseFuture>),
    Waiting(ResponseFuture),
    Unary(Option<Bytes>),
    Streaming(BodyStream<Incoming>, Deframer),
    Done,
}

struct Responses {
    state: State,
    header: Option<Metadata>,
    max: usize,
    address: String,
}

impl std::fmt::Debug for Responses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responses").field("address", &self.address).finish_non_exhaustive()
    }
}

impl Responses {
    /// Reads the response head (and a unary body, or an error body).
    async fn start(&mut self, response: ResponseFuture) -> Result<()> {
        let response =
            response.await.map_err(|e| Error::unavailable(format!("call to {} failed: {e}", self.address)))?;
        let (parts, body) = response.into_parts();
        self.header = Some(wire::metadata_from(&parts.headers));
        if !parts.status.is_success() {
            let refused = parts.headers.contains_key(wire::REFUSED);
            let text = Limited::new(body, MAX_ERROR_BODY).collect().await.map(|c| c.to_bytes()).unwrap_or_default();
            let mut error = Error::from_json(&text);
            if text.is_empty() {
                error = Error::new(parts.status.as_u16().into(), format!("HTTP {}", parts.status));
            }
            self.state = State::Done;
            return Err(if refused { error.unsent() } else { error });
        }
        if parts.headers.get(wire::STREAM).is_some_and(|v| v == "1") {
            self.state = State::Streaming(BodyStream::new(body), Deframer::new(self.max));
        } else {
            let body = Limited::new(body, self.max).collect().await.map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                    wire::too_large(self.max + 1, self.max)
                } else {
                    Error::unavailable(format!("reading the response from {}: {e}", self.address))
                }
            })?;
            self.state = State::Unary(Some(body.to_bytes()));
        }
        Ok(())
    }
}

#[async_trait]
impl MessageSource for Responses {
    async fn recv(&mut self) -> Result<Option<Bytes>> {
        loop {
            match std::mem::replace(&mut self.state, State::Done) {
                State::Sending(sent) => match sent.await {
                    Ok(response) => self.state = State::Waiting(response),
                    Err(_) => return Err(Error::canceled("the call was dropped before it was sent")),
                },
                State::Waiting(response) => self.start(response).await?,
                State::Unary(message) => {
                    let done = message.is_none();
                    self.state = if done { State::Done } else { State::Unary(None) };
                    return Ok(message);
                }
                State::Done => return Ok(None),
                State::Streaming(mut body, mut deframer) => loop {
                    match deframer.next()? {
                        Some((wire::MESSAGE, message)) => {
                            self.state = State::Streaming(body, deframer);
                            return Ok(Some(message));
                        }
                        Some((_, status)) if status.is_empty() => return Ok(None),
                        Some((_, status)) => return Err(Error::from_json(&status)),
                        None => {}
                    }
                    match body.next().await {
                        Some(Ok(frame)) => {
                            if let Ok(data) = frame.into_data() {
                                deframer.push(&data);
                            }
                        }
                        Some(Err(e)) => {
                            return Err(Error::unavailable(format!("stream from {} broke: {e}", self.address)));
                        }
                        None => {
                            return Err(Error::unavailable(format!(
                                "stream from {} ended without a status",
                                self.address
                            )));
                        }
                    }
                },
            }
        }
    }

    fn header(&self) -> Option<&Metadata> {
        self.header.as_ref()
    }
}
