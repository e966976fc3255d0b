//! The listening side: an accept loop, and per connection a reader that turns `Open` frames into
//! incoming calls and routes later frames to them, beside the connection's writer.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{BufMut, Bytes};
use rmicro_core::metadata::Metadata;
use rmicro_core::raw::{Accepting, Arrivals};
use rmicro_core::transport::{CallHead, IncomingCall, Listener, MessageSource, Reply, Requests, ServeCalls};
use rmicro_core::{Error, Result};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::call_ids::CallIds;
use crate::frame::{self, Frame, Kind, Reader, Table};
use crate::io::{FrameReader, Outbox, ReadEnd};
use crate::{Plain, ReadHalf, WINDOW, WriteHalf, max_frame, too_large, unavailable, unix_path};

const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What the accept loop and every connection share.
#[derive(Debug)]
struct ListenerState {
    max: usize,
    /// Set by shutdown: new calls are refused, calls in progress go on.
    refusing: AtomicBool,
    /// Fires when connections should close.
    closing: CancellationToken,
    /// Calls accepted and not yet finished, over all connections.
    live: AtomicUsize,
    connections: TaskTracker,
}

pub(crate) struct TcpListener {
    address: String,
    incoming: Accepting,
    acceptor: JoinHandle<()>,
    state: Arc<ListenerState>,
}

impl std::fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpListener").field("address", &self.address).finish_non_exhaustive()
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.state.closing.cancel();
        if let Some(path) = unix_path(&self.address) {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[async_trait]
impl Listener for TcpListener {
    fn address(&self) -> String {
        self.address.clone()
    }

    async fn accept(&mut self) -> Option<IncomingCall> {
        self.incoming.accept().await
    }

    fn deliver_to(&mut self, server: std::sync::Arc<dyn ServeCalls>) {
        self.incoming.deliver_to(server);
    }

    /// Refuses new calls, lets those in progress finish, then closes every connection after
    /// writing what it still has queued.
    async fn shutdown(self: Box<Self>) {
        self.acceptor.abort();
        self.state.refusing.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while self.state.live.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.state.closing.cancel();
        self.state.connections.close();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.state.connections.wait()).await;
    }
}

enum Socket {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

pub(crate) async fn listen(address: &str, max: usize, tls: Option<TlsAcceptor>) -> Result<TcpListener> {
    let failed = |e: std::io::Error| Error::internal(format!("listening on {address}: {e}"));
    let (socket, address) = match unix_path(address) {
        Some(path) => {
            remove_stale_socket(path).await;
            let socket = tokio::net::UnixListener::bind(path).map_err(failed)?;
            (Socket::Unix(socket), address.to_owned())
        }
        None => {
            let address = if address.is_empty() { "127.0.0.1:0" } else { address };
            let socket = tokio::net::TcpListener::bind(address).await.map_err(failed)?;
            let bound = socket.local_addr().map_err(failed)?.to_string();
            (Socket::Tcp(socket), bound)
        }
    };
    let state = Arc::new(ListenerState {
        max,
        refusing: AtomicBool::new(false),
        closing: CancellationToken::new(),
        live: AtomicUsize::new(0),
        connections: TaskTracker::new(),
    });
    let (calls, incoming) = rmicro_core::raw::arrivals(1024);
    let acceptor = tokio::spawn(accept(socket, tls, state.clone(), calls));
    Ok(TcpListener { address, incoming, acceptor, state })
}

/// A socket file nothing listens on is left over from a process that died; it would make bind
/// fail.
async fn remove_stale_socket(path: &str) {
    if std::path::Path::new(path).exists() && tokio::net::UnixStream::connect(path).await.is_err() {
        let _ = std::fs::remove_file(path);
    }
}

async fn accept(socket: Socket, tls: Option<TlsAcceptor>, state: Arc<ListenerState>, calls: Arrivals) {
    loop {
        let accepted = match &socket {
            Socket::Tcp(socket) => socket.accept().await.map(|(stream, peer)| {
                let _ = stream.set_nodelay(true);
                (Plain::Tcp(stream), peer.to_string())
            }),
            Socket::Unix(socket) => socket.accept().await.map(|(stream, _)| (Plain::Unix(stream), "unix".to_owned())),
        };
        match accepted {
            Ok((stream, peer)) => {
                let (tls, state, calls) = (tls.clone(), state.clone(), calls.clone());
                state.connections.clone().spawn(async move {
                    match halves(stream, tls).await {
                        Ok((read, write)) => serve_connection(read, write, peer, state, calls).await,
                        Err(e) => tracing::warn!(%peer, error = %e, "TLS handshake failed"),
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn halves(stream: Plain, tls: Option<TlsAcceptor>) -> std::io::Result<(ReadHalf, WriteHalf)> {
    match tls {
        Some(tls) => Ok(crate::split(tls.accept(stream.boxed()).await?)),
        None => Ok(stream.split()),
    }
}

/// A call in progress on a connection.
#[derive(Debug)]
struct Slot {
    requests: Option<mpsc::UnboundedSender<Bytes>>,
    cancel: CancellationToken,
    credit: Option<Arc<Semaphore>>,
}

#[derive(Debug)]
struct ServerConnection {
    peer: String,
    outbox: Outbox,
    calls: Mutex<CallIds<Slot>>,
    state: Arc<ListenerState>,
}

impl ServerConnection {
    fn calls(&self) -> MutexGuard<'_, CallIds<Slot>> {
        self.calls.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Answers an `Open` without running anything.
    fn refuse(&self, call: u32, error: Error, refused: bool) {
        let flags = frame::END_ERROR | if refused { frame::END_REFUSED } else { 0 };
        let _ = self.outbox.push(Kind::End, flags, call, |_, _| {}, Bytes::from(error.to_json()));
    }

    async fn dispatch(
        self: &Arc<Self>,
        frame: Frame,
        table: &mut Table,
        calls: &Arrivals,
    ) -> std::result::Result<(), String> {
        let Frame { kind, flags, call, mut body } = frame;
        match kind {
            Kind::Open => {
                let mut reader = Reader::new(&mut body);
                let timeout = if flags & frame::OPEN_TIMEOUT != 0 {
                    Some(Duration::from_millis(reader.u32("timeout")?.into()))
                } else {
                    None
                };
                let head = CallHead {
                    service: reader.string(table, "service")?,
                    endpoint: reader.string(table, "endpoint")?,
                    content_type: reader.string(table, "content type")?,
                    metadata: reader.metadata(table)?,
                    timeout,
                    stream: flags & frame::OPEN_STREAM != 0,
                };
                let request = (flags & frame::OPEN_LAST != 0).then(|| reader.rest());
                if self.calls().contains_key(&call) {
                    return Err(format!("call id {call} is already in use"));
                }
                self.open(call, head, request, calls).await;
            }
            Kind::Message => {
                if let Some(Slot { requests: Some(requests), .. }) = self.calls().get(&call) {
                    let _ = requests.send(body);
                }
            }
            Kind::Close => {
                if let Some(slot) = self.calls().get_mut(&call) {
                    slot.requests = None;
                }
            }
            Kind::Cancel => {
                if let Some(slot) = self.calls().get_mut(&call) {
                    slot.requests = None;
                    slot.cancel.cancel();
                }
            }
            Kind::Credit => {
                let more = Reader::new(&mut body).u32("credit")?.min(WINDOW);
                if let Some(Slot { credit: Some(credit), .. }) = self.calls().get(&call) {
                    credit.add_permits(more as usize);
                }
            }
            Kind::Header | Kind::End => return Err(format!("a client sent a {kind:?} frame")),
        }
        Ok(())
    }

    async fn open(self: &Arc<Self>, call: u32, head: CallHead, request: Option<Bytes>, calls: &Arrivals) {
        let max = self.state.max;
        if self.state.refusing.load(Ordering::SeqCst) {
            return self.refuse(call, unavailable("the server is shutting down"), true);
        }
        if let Some(request) = request.as_ref().filter(|r| r.len() > max) {
            return self.refuse(call, too_large(request.len(), max), false);
        }
        let Some(arrival) = calls.reserve().await else {
            return self.refuse(call, unavailable("the server is not accepting calls"), true);
        };
        let cancel = CancellationToken::new();
        let credit = head.stream.then(|| Arc::new(Semaphore::new(WINDOW as usize)));
        let (requests, slot_requests) = match request {
            Some(request) => (Requests::Whole(request), None),
            None => {
                let (tx, rx) = mpsc::unbounded_channel();
                let requests =
                    StreamRequests { rx, cancel: cancel.clone(), connection: self.clone(), call, consumed: 0 };
                (Requests::Stream(Box::new(requests)), Some(tx))
            }
        };
        self.calls().insert(call, Slot { requests: slot_requests, cancel: cancel.clone(), credit: credit.clone() });
        self.state.live.fetch_add(1, Ordering::SeqCst);
        let reply = TcpReply {
            connection: self.clone(),
            call,
            stream: head.stream,
            header: None,
            response: None,
            credit,
            finished: false,
        };
        arrival.spawn(IncomingCall { head, requests, reply: Box::new(reply), cancel });
    }

    /// The connection is gone: calls in progress learn that their caller went away.
    fn cancel_all(&self) {
        for (_, slot) in self.calls().drain() {
            slot.cancel.cancel();
        }
    }
}

async fn serve_connection(read: ReadHalf, write: WriteHalf, peer: String, state: Arc<ListenerState>, calls: Arrivals) {
    let connection =
        Arc::new(ServerConnection { peer, outbox: Outbox::default(), calls: Mutex::default(), state: state.clone() });
    let writer = connection.clone();
    let writer = tokio::spawn(async move { writer.outbox.drain(write).await });
    let mut reader = FrameReader::new(read, max_frame(state.max)).pausing();
    let mut table = Table::default();
    // Made once: a wait for cancellation joins the token's list of waiters when first polled and
    // leaves it when dropped, each under the token's lock, which a wait made per frame repeats.
    let mut closing = std::pin::pin!(state.closing.cancelled());
    let end = loop {
        let frame = tokio::select! {
            biased;
            _ = &mut closing => break None,
            frame = reader.next() => frame,
        };
        match frame {
            Ok(frame) => {
                if let Err(why) = connection.dispatch(frame, &mut table, &calls).await {
                    break Some(ReadEnd::Malformed(why));
                }
            }
            Err(end) => break Some(end),
        }
    };
    let why = match &end {
        Some(end @ ReadEnd::Malformed(_)) => {
            tracing::warn!(peer = %connection.peer, reason = %end, "closing the connection");
            end.to_string()
        }
        Some(end) => end.to_string(),
        None => "the server closed the connection".to_owned(),
    };
    connection.cancel_all();
    connection.outbox.close(&why);
    let _ = writer.await;
}

/// A stream's request messages, as they arrive.
struct StreamRequests {
    rx: mpsc::UnboundedReceiver<Bytes>,
    cancel: CancellationToken,
    connection: Arc<ServerConnection>,
    call: u32,
    consumed: u32,
}

impl std::fmt::Debug for StreamRequests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamRequests").field("call", &self.call).finish_non_exhaustive()
    }
}

#[async_trait]
impl MessageSource for StreamRequests {
    async fn recv(&mut self) -> Result<Option<Bytes>> {
        let max = self.connection.state.max;
        match self.rx.recv().await {
            Some(message) if message.len() > max => Err(too_large(message.len(), max)),
            Some(message) => {
                self.consumed += 1;
                if self.consumed % (WINDOW / 2) == 0 {
                    let grant = |buf: &mut bytes::BytesMut, _: &mut _| buf.put_u32(WINDOW / 2);
                    let _ = self.connection.outbox.push(Kind::Credit, 0, self.call, grant, Bytes::new());
                }
                Ok(Some(message))
            }
            None if self.cancel.is_cancelled() => Err(Error::canceled("the caller went away")),
            None => Ok(None),
        }
    }
}

/// The server's answer. A unary call's header, response and status leave as one `End` frame; a
/// stream's as they come, within the caller's credit. Dropped unfinished, it tells the caller.
struct TcpReply {
    connection: Arc<ServerConnection>,
    call: u32,
    stream: bool,
    header: Option<Metadata>,
    response: Option<Bytes>,
    credit: Option<Arc<Semaphore>>,
    finished: bool,
}

impl std::fmt::Debug for TcpReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpReply").field("call", &self.call).finish_non_exhaustive()
    }
}

impl TcpReply {
    fn end(&mut self, status: Result<()>) {
        self.finished = true;
        self.connection.calls().remove(&self.call);
        self.connection.state.live.fetch_sub(1, Ordering::SeqCst);
        let header = self.header.take().filter(|header| !header.is_empty());
        let mut flags = if header.is_some() { frame::END_HEADER } else { 0 };
        let body = match (status, self.response.take()) {
            (Err(error), _) => {
                flags |= frame::END_ERROR;
                Bytes::from(error.to_json())
            }
            (Ok(()), Some(response)) => {
                flags |= frame::END_REPLY;
                response
            }
            (Ok(()), None) => Bytes::new(),
        };
        let write_header = |buf: &mut bytes::BytesMut, interner: &mut frame::Interner| {
            if let Some(header) = &header {
                interner.put_metadata(buf, header);
            }
        };
        let _ = self.connection.outbox.push(Kind::End, flags, self.call, write_header, body);
    }
}

#[async_trait]
impl Reply for TcpReply {
    async fn send_header(&mut self, metadata: Metadata) -> Result<()> {
        frame::check_head([], &metadata)?;
        if !self.stream {
            self.header = Some(metadata);
            return Ok(());
        }
        let write = |buf: &mut bytes::BytesMut, interner: &mut frame::Interner| interner.put_metadata(buf, &metadata);
        self.connection.outbox.push(Kind::Header, 0, self.call, write, Bytes::new()).map_err(unavailable)
    }

    async fn send(&mut self, message: Bytes) -> Result<()> {
        let max = self.connection.state.max;
        if message.len() > max {
            return Err(too_large(message.len(), max));
        }
        if !self.stream {
            if self.response.replace(message).is_some() {
                return Err(Error::internal("a unary call answers with one message"));
            }
            return Ok(());
        }
        if let Some(credit) = &self.credit {
            credit.acquire().await.map_err(|_| Error::canceled("the call ended"))?.forget();
        }
        self.connection.outbox.push(Kind::Message, 0, self.call, |_, _| {}, message).map_err(unavailable)
    }

    async fn finish(mut self: Box<Self>, status: Result<()>) {
        self.end(status);
    }

    async fn answer(mut self: Box<Self>, metadata: Metadata, response: Bytes) {
        let max = self.connection.state.max;
        let status = match frame::check_head([], &metadata) {
            Err(e) => Err(e),
            Ok(()) if response.len() > max => Err(too_large(response.len(), max)),
            Ok(()) => {
                self.header = Some(metadata);
                self.response = Some(response);
                Ok(())
            }
        };
        self.end(status);
    }
}

impl Drop for TcpReply {
    fn drop(&mut self) {
        if !self.finished {
            self.end(Err(unavailable("the server stopped before answering")));
        }
    }
}
