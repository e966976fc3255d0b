//! An in-process transport with a network transport's semantics: calls are multiplexed on one
//! connection, streams are flow-controlled, oversized messages are refused, and dropping a call
//! cancels it on the server.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{
    CallHead, ClientCall, Connection, DEFAULT_MAX_MESSAGE_SIZE, IncomingCall, Listener, MessageSink, MessageSource,
    Reply, Requests, Transport,
};
use crate::error::{Code, Error, Result};
use crate::metadata::Metadata;
use crate::raw::too_large;

/// How many messages may wait unread on a stream before the sender waits (flow control).
const STREAM_WINDOW: usize = 16;
/// How many opened calls may wait for the server to accept them.
const ACCEPT_BACKLOG: usize = 1024;

/// The in-memory transport. Clones share one address space; separate `new()` instances do not.
#[derive(Clone, Debug)]
pub struct MemoryTransport {
    hub: Arc<Hub>,
    max_message_size: usize,
}

#[derive(Debug, Default)]
struct Hub {
    listeners: Mutex<HashMap<String, mpsc::Sender<Opened>>>,
    next_port: AtomicU64,
}

impl Default for MemoryTransport {
    fn default() -> MemoryTransport {
        MemoryTransport::new()
    }
}

impl MemoryTransport {
    /// A transport with its own address space.
    pub fn new() -> MemoryTransport {
        MemoryTransport { hub: Arc::default(), max_message_size: DEFAULT_MAX_MESSAGE_SIZE }
    }

    /// Sets the largest message either side accepts (default 4 MiB).
    pub fn max_message_size(mut self, bytes: usize) -> MemoryTransport {
        self.max_message_size = bytes;
        self
    }

    fn listeners(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::Sender<Opened>>> {
        self.hub.listeners.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl Transport for MemoryTransport {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn listen(&self, address: &str) -> Result<Box<dyn Listener>> {
        let address = if address.is_empty() || address.ends_with(":0") {
            format!("memory:{}", self.hub.next_port.fetch_add(1, Ordering::Relaxed) + 1)
        } else {
            address.to_owned()
        };
        let (tx, rx) = mpsc::channel(ACCEPT_BACKLOG);
        let mut listeners = self.listeners();
        if listeners.get(&address).is_some_and(|l| !l.is_closed()) {
            return Err(Error::new(Code::Conflict, format!("memory address {address} is in use")));
        }
        listeners.insert(address.clone(), tx);
        Ok(Box::new(MemoryListener { address, calls: rx, transport: self.clone() }))
    }

    async fn dial(&self, address: &str) -> Result<Arc<dyn Connection>> {
        let calls =
            self.listeners().get(address).filter(|l| !l.is_closed()).cloned().ok_or_else(|| refused(address))?;
        Ok(Arc::new(MemoryConnection { address: address.to_owned(), calls, max_message_size: self.max_message_size }))
    }
}

fn refused(address: &str) -> Error {
    Error::unavailable(format!("connection refused: nothing listens on {address}")).unsent()
}

/// A call on its way to the listener, with a way to refuse it should the listener close first.
#[derive(Debug)]
struct Opened {
    call: IncomingCall,
    refuse: mpsc::Sender<Frame>,
}

#[derive(Debug)]
struct MemoryListener {
    address: String,
    calls: mpsc::Receiver<Opened>,
    transport: MemoryTransport,
}

#[async_trait]
impl Listener for MemoryListener {
    fn address(&self) -> String {
        self.address.clone()
    }

    async fn accept(&mut self) -> Option<IncomingCall> {
        self.calls.recv().await.map(|opened| opened.call)
    }
}

impl Drop for MemoryListener {
    fn drop(&mut self) {
        self.calls.close();
        while let Ok(opened) = self.calls.try_recv() {
            let refused =
                Err(Error::unavailable(format!("{} stopped listening before accepting the call", self.address)));
            let _ = opened.refuse.try_send(Frame::End(refused));
        }
        let mut listeners = self.transport.listeners();
        if listeners.get(&self.address).is_some_and(mpsc::Sender::is_closed) {
            listeners.remove(&self.address);
        }
    }
}

#[derive(Debug)]
struct MemoryConnection {
    address: String,
    calls: mpsc::Sender<Opened>,
    max_message_size: usize,
}

#[async_trait]
impl Connection for MemoryConnection {
    async fn open(&self, head: CallHead) -> Result<ClientCall> {
        let (request_tx, request_rx) = mpsc::channel(STREAM_WINDOW);
        let (frame_tx, frame_rx) = mpsc::channel(STREAM_WINDOW);
        let cancel = CancellationToken::new();
        let incoming = IncomingCall {
            head,
            requests: Requests::Stream(Box::new(QueuedRequests {
                rx: request_rx,
                cancel: cancel.clone(),
                max_message_size: self.max_message_size,
            })),
            reply: Box::new(MemoryReply { frames: frame_tx.clone() }),
            cancel: cancel.clone(),
        };
        let opened = Opened { call: incoming, refuse: frame_tx };
        self.calls.send(opened).await.map_err(|_| refused(&self.address))?;
        Ok(ClientCall {
            requests: Box::new(RequestSink { tx: Some(request_tx) }),
            responses: Box::new(Responses {
                frames: frame_rx,
                header: None,
                finished: false,
                cancel_on_drop: Some(cancel.drop_guard()),
                max_message_size: self.max_message_size,
            }),
        })
    }

    fn is_closed(&self) -> bool {
        self.calls.is_closed()
    }
}

#[derive(Debug)]
struct RequestSink {
    tx: Option<mpsc::Sender<Bytes>>,
}

#[async_trait]
impl MessageSink for RequestSink {
    async fn send(&mut self, message: Bytes) -> Result<()> {
        let tx = self.tx.as_ref().ok_or_else(|| Error::bad_request("send after close"))?;
        tx.send(message).await.map_err(|_| Error::canceled("the server has ended the call; its status says why"))
    }

    async fn close(&mut self) -> Result<()> {
        self.tx = None;
        Ok(())
    }
}

#[derive(Debug)]
struct QueuedRequests {
    rx: mpsc::Receiver<Bytes>,
    cancel: CancellationToken,
    max_message_size: usize,
}

#[async_trait]
impl MessageSource for QueuedRequests {
    async fn recv(&mut self) -> Result<Option<Bytes>> {
        match self.rx.recv().await {
            Some(message) if message.len() > self.max_message_size => {
                Err(too_large(message.len(), self.max_message_size))
            }
            Some(message) => Ok(Some(message)),
            None if self.cancel.is_cancelled() => Err(Error::canceled("the caller went away")),
            None => Ok(None),
        }
    }
}

#[derive(Debug)]
enum Frame {
    Header(Metadata),
    Message(Bytes),
    End(Result<()>),
}

#[derive(Debug)]
struct MemoryReply {
    frames: mpsc::Sender<Frame>,
}

#[async_trait]
impl Reply for MemoryReply {
    async fn send_header(&mut self, metadata: Metadata) -> Result<()> {
        self.frames.send(Frame::Header(metadata)).await.map_err(|_| gone())
    }

    async fn send(&mut self, message: Bytes) -> Result<()> {
        self.frames.send(Frame::Message(message)).await.map_err(|_| gone())
    }

    async fn finish(self: Box<Self>, status: Result<()>) {
        let _ = self.frames.send(Frame::End(status)).await;
    }
}

fn gone() -> Error {
    Error::canceled("the caller went away")
}

#[derive(Debug)]
struct Responses {
    frames: mpsc::Receiver<Frame>,
    header: Option<Metadata>,
    finished: bool,
    cancel_on_drop: Option<DropGuard>,
    max_message_size: usize,
}

impl Responses {
    fn end(&mut self) {
        self.finished = true;
        self.header.get_or_insert_with(Metadata::new);
        if let Some(guard) = self.cancel_on_drop.take() {
            guard.disarm();
        }
    }
}

#[async_trait]
impl MessageSource for Responses {
    async fn recv(&mut self) -> Result<Option<Bytes>> {
        if self.finished {
            return Ok(None);
        }
        loop {
            match self.frames.recv().await {
                Some(Frame::Header(metadata)) => self.header = Some(metadata),
                Some(Frame::Message(message)) if message.len() > self.max_message_size => {
                    return Err(too_large(message.len(), self.max_message_size));
                }
                Some(Frame::Message(message)) => {
                    self.header.get_or_insert_with(Metadata::new);
                    return Ok(Some(message));
                }
                Some(Frame::End(status)) => {
                    self.end();
                    return status.map(|()| None);
                }
                None => {
                    self.end();
                    return Err(Error::internal("the server ended the call without a status"));
                }
            }
        }
    }

    fn header(&self) -> Option<&Metadata> {
        self.header.as_ref()
    }
}
