//! The calling side: per connection one reader task hands each frame to its call by id, and one
//! writer task drains the outbox; a call sends through its [`call::Sink`] and receives from its
//! [`call::Responses`].

mod call;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{BufMut, Bytes};
use rmicro_core::metadata::Metadata;
use rmicro_core::raw::SendCredit;
use rmicro_core::transport::EncodedResponse;
use rmicro_core::transport::{CallHead, ClientCall, Connection};
use rmicro_core::{Error, Result};
use rustls::pki_types::ServerName;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use crate::call_ids::CallIds;
use crate::frame::{self, Frame, Kind, Reader, Table};
use crate::io::{FrameReader, Outbox, ReadEnd};
use crate::{Plain, ReadHalf, max_frame, too_large, unavailable, unix_path};
use call::{Inbound, Responses, Sink};

/// How a call ended, as the server's `End` frame says.
#[derive(Debug)]
struct Ended {
    header: Metadata,
    reply: Option<Bytes>,
    status: Result<()>,
}

#[derive(Debug)]
enum Event {
    Header(Metadata),
    Message(Bytes),
    End(Ended),
}

/// Where a call's frames go.
#[derive(Debug)]
enum Route {
    Unary(oneshot::Sender<Ended>),
    Stream { events: mpsc::UnboundedSender<Event>, credit: SendCredit },
}

#[derive(Debug, Default)]
struct Routes {
    next: u32,
    calls: CallIds<Route>,
    /// Why the connection closed, once it has.
    closed: Option<String>,
}

#[derive(Debug)]
struct Shared {
    address: String,
    outbox: Outbox,
    routes: Mutex<Routes>,
    max: usize,
}

impl Shared {
    fn routes(&self) -> MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a call, or says why the connection can take none.
    fn route(&self, route: impl FnOnce() -> Route) -> Result<u32> {
        let mut routes = self.routes();
        if let Some(why) = &routes.closed {
            return Err(unavailable(why.clone()).unsent());
        }
        // Ids wrap after 2^32 calls; skip any still held by a long-lived call.
        let mut id = routes.next;
        while routes.calls.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        routes.next = id.wrapping_add(1);
        routes.calls.insert(id, route());
        Ok(id)
    }

    /// Fails every call in progress and takes no new ones.
    fn close(&self, why: &str) {
        let calls = {
            let mut routes = self.routes();
            routes.closed.get_or_insert_with(|| why.to_owned());
            std::mem::take(&mut routes.calls)
        };
        self.outbox.close(why);
        for (_, route) in calls {
            let ended = Ended { header: Metadata::new(), reply: None, status: Err(unavailable(why.to_owned())) };
            match route {
                Route::Unary(done) => drop(done.send(ended)),
                Route::Stream { events, credit } => {
                    credit.close();
                    drop(events.send(Event::End(ended)))
                }
            }
        }
    }

    fn open(&self, call: u32, head: &CallHead, last: Option<Bytes>) -> Result<()> {
        let mut flags = if head.stream { frame::OPEN_STREAM } else { 0 };
        if last.is_some() {
            flags |= frame::OPEN_LAST;
        }
        if head.timeout.is_some() {
            flags |= frame::OPEN_TIMEOUT;
        }
        let millis = head.timeout.map(|t| t.as_millis().clamp(1, u32::MAX as u128) as u32);
        self.outbox
            .push(
                Kind::Open,
                flags,
                call,
                |buf, interner| {
                    if let Some(millis) = millis {
                        buf.put_u32(millis);
                    }
                    interner.put_str(buf, &head.service);
                    interner.put_str(buf, &head.endpoint);
                    interner.put_str(buf, &head.content_type);
                    interner.put_metadata(buf, &head.metadata);
                },
                last.unwrap_or_default(),
            )
            .map_err(|why| unavailable(why).unsent())
    }

    fn send(&self, kind: Kind, call: u32, body: Bytes) -> Result<()> {
        self.outbox.push(kind, 0, call, |_, _| {}, body).map_err(unavailable)
    }

    /// Forgets a call its caller gave up on, and tells the server.
    fn cancel(&self, call: u32) {
        self.routes().calls.remove(&call);
        let _ = self.send(Kind::Cancel, call, Bytes::new());
    }

    fn grant(&self, call: u32, credit: u32) {
        let _ = self.outbox.push(Kind::Credit, 0, call, |buf, _| buf.put_u32(credit), Bytes::new());
    }

    /// Hands a frame to its call. Metadata is decoded even for calls that are gone, to keep the
    /// string table in step with the server's.
    fn dispatch(&self, frame: Frame, table: &mut Table) -> std::result::Result<(), String> {
        let Frame { kind, flags, call, mut body } = frame;
        match kind {
            Kind::Header => {
                let metadata = Reader::new(&mut body).metadata(table)?;
                if let Some(Route::Stream { events, .. }) = self.routes().calls.get(&call) {
                    let _ = events.send(Event::Header(metadata));
                }
            }
            Kind::Message => {
                if let Some(Route::Stream { events, .. }) = self.routes().calls.get(&call) {
                    let _ = events.send(Event::Message(body));
                }
            }
            Kind::Credit => {
                let more = Reader::new(&mut body).u32("credit")?;
                if let Some(Route::Stream { credit, .. }) = self.routes().calls.get(&call) {
                    credit.grant(more.into());
                }
            }
            Kind::End => {
                let mut reader = Reader::new(&mut body);
                let header = if flags & frame::END_HEADER != 0 { reader.metadata(table)? } else { Metadata::new() };
                let rest = reader.rest();
                let (reply, status) = if flags & frame::END_ERROR != 0 {
                    let error = Error::from_json(&rest);
                    (None, Err(if flags & frame::END_REFUSED != 0 { error.unsent() } else { error }))
                } else {
                    ((flags & frame::END_REPLY != 0).then_some(rest), Ok(()))
                };
                let ended = Ended { header, reply, status };
                match self.routes().calls.remove(&call) {
                    Some(Route::Unary(done)) => drop(done.send(ended)),
                    Some(Route::Stream { events, credit }) => {
                        credit.close();
                        drop(events.send(Event::End(ended)))
                    }
                    None => {}
                }
            }
            Kind::Open | Kind::Close | Kind::Cancel => return Err(format!("a server sent a {kind:?} frame")),
        }
        Ok(())
    }
}

/// A connection to one listener.
pub(crate) struct TcpConnection {
    shared: Arc<Shared>,
    reader: JoinHandle<()>,
}

impl std::fmt::Debug for TcpConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpConnection").field("address", &self.shared.address).finish_non_exhaustive()
    }
}

impl Drop for TcpConnection {
    fn drop(&mut self) {
        self.reader.abort();
        self.shared.close("the connection was dropped");
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) async fn dial(
    address: &str,
    max: usize,
    tls: Option<(TlsConnector, ServerName<'static>)>,
) -> Result<TcpConnection> {
    let refused = |e: std::io::Error| unavailable(format!("connecting to {address}: {e}")).unsent();
    let connect = async {
        let plain = match unix_path(address) {
            Some(path) => Plain::Unix(tokio::net::UnixStream::connect(path).await.map_err(refused)?),
            None => {
                let stream = tokio::net::TcpStream::connect(address).await.map_err(refused)?;
                stream.set_nodelay(true).map_err(refused)?;
                Plain::Tcp(stream)
            }
        };
        let Some((connector, name)) = tls else { return Ok(plain.split()) };
        let stream = connector
            .connect(name, plain.boxed())
            .await
            .map_err(|e| unavailable(format!("TLS handshake with {address}: {e}")).unsent())?;
        Ok(crate::split(stream))
    };
    let (read, write) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| unavailable(format!("connecting to {address}: no answer in {CONNECT_TIMEOUT:?}")).unsent())??;
    let shared =
        Arc::new(Shared { address: address.to_owned(), outbox: Outbox::default(), routes: Mutex::default(), max });
    let writer = shared.clone();
    tokio::spawn(async move { writer.outbox.drain(write).await });
    let reader = tokio::spawn(read_frames(shared.clone(), FrameReader::new(read, max_frame(max))));
    Ok(TcpConnection { shared, reader })
}

async fn read_frames(shared: Arc<Shared>, mut reader: FrameReader<ReadHalf>) {
    let mut table = Table::default();
    let end = loop {
        match reader.next().await {
            Ok(frame) => {
                if let Err(why) = shared.dispatch(frame, &mut table) {
                    break ReadEnd::Malformed(why);
                }
            }
            Err(end) => break end,
        }
    };
    if let ReadEnd::Malformed(_) = end {
        tracing::warn!(address = %shared.address, reason = %end, "closing the connection");
    }
    shared.close(&format!("the connection to {} closed: {end}", shared.address));
}

#[async_trait]
impl Connection for TcpConnection {
    async fn open(&self, head: CallHead) -> Result<ClientCall> {
        frame::check_head([head.service.as_str(), &head.endpoint, &head.content_type], &head.metadata)?;
        let shared = self.shared.clone();
        if !head.stream {
            let (done, ended) = oneshot::channel();
            let call = shared.route(|| Route::Unary(done))?;
            let responses = Responses::new(shared.clone(), call, Inbound::Unary(Some(ended)));
            let requests = Sink { shared, call, unary: Some((head, None)), credit: None };
            return Ok(ClientCall { requests: Box::new(requests), responses: Box::new(responses) });
        }
        let (events_tx, events) = mpsc::unbounded_channel();
        let credit = SendCredit::new();
        let call = shared.route(|| Route::Stream { events: events_tx, credit: credit.clone() })?;
        let responses = Responses::new(shared.clone(), call, Inbound::Stream(events));
        shared.open(call, &head, None)?;
        let requests = Sink { shared, call, unary: None, credit: Some(credit) };
        Ok(ClientCall { requests: Box::new(requests), responses: Box::new(responses) })
    }

    /// One `Open` frame carrying the request out, one `End` frame carrying the answer back.
    async fn unary(&self, head: &CallHead, request: Bytes) -> Result<EncodedResponse> {
        frame::check_head([head.service.as_str(), &head.endpoint, &head.content_type], &head.metadata)?;
        let shared = &self.shared;
        if request.len() > shared.max {
            return Err(too_large(request.len(), shared.max));
        }
        let (done, ended) = oneshot::channel();
        let call = shared.route(|| Route::Unary(done))?;
        let mut awaiting = Awaiting { shared, call, answered: false };
        shared.open(call, head, Some(request))?;
        let ended = ended.await;
        awaiting.answered = true;
        let Ended { header, reply, status } =
            ended.map_err(|_| unavailable(format!("the connection to {} closed", shared.address)))?;
        status?;
        match reply {
            Some(body) if body.len() > shared.max => Err(too_large(body.len(), shared.max)),
            Some(body) => Ok(EncodedResponse::new(header, body)),
            None => Err(Error::internal("the server sent no response")),
        }
    }

    fn is_closed(&self) -> bool {
        self.shared.outbox.is_closed()
    }
}

/// A unary call waiting for its answer. Dropped unanswered, the call is forgotten here and
/// cancelled on the server.
struct Awaiting<'a> {
    shared: &'a Shared,
    call: u32,
    answered: bool,
}

impl Drop for Awaiting<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.shared.cancel(self.call);
        }
    }
}
