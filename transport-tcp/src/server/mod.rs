//! The listening side: an accept loop ([`listen`]), and per connection a reader that turns
//! `Open` frames into incoming calls and routes later frames to them through the connection's
//! call table ([`connection`]), beside its writer; each call answers through its reply
//! ([`reply`]) and a stream reads its requests from [`requests`].

mod connection;
mod reply;
mod requests;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use rmicro_core::raw::{AcceptLoop, Arrivals, Listening, QueueListener, SHUTDOWN_GRACE};
use rmicro_core::{Error, Result};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{Plain, ReadHalf, WriteHalf, unix_path};

/// What the accept loop and every connection share.
#[derive(Debug)]
struct ListenerState {
    max: usize,
    /// Set by shutdown: new calls are refused, calls in progress go on.
    refusing: AtomicBool,
    /// Calls accepted and not yet finished, over all connections.
    live: AtomicUsize,
}

/// A listener: the queue of calls, and what stops it ([`TcpListening`]).
pub(crate) type TcpListener = QueueListener<TcpListening>;

/// The accept loop, the state its connections share, and the Unix socket file to remove.
#[derive(Debug)]
pub(crate) struct TcpListening {
    accepting: AcceptLoop,
    state: Arc<ListenerState>,
    _socket_file: SocketFile,
}

impl Listening for TcpListening {
    /// Refuses new calls, lets those in progress finish, then closes every connection after
    /// writing what it still has queued.
    async fn shutdown(self, address: &str) {
        self.accepting.stop_accepting();
        self.state.refusing.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while self.state.live.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.accepting.shutdown(address).await;
    }
}

/// A Unix socket's file, removed when the listener goes.
#[derive(Debug)]
struct SocketFile(Option<String>);

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
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
    let state = Arc::new(ListenerState { max, refusing: AtomicBool::new(false), live: AtomicUsize::new(0) });
    let (calls, incoming) = rmicro_core::raw::arrivals(1024);
    let shared = state.clone();
    let accepting = AcceptLoop::spawn(|connections, closing| accept(socket, tls, shared, calls, connections, closing))
        .closing_on_drop();
    let socket_file = SocketFile(unix_path(&address).map(str::to_owned));
    Ok(QueueListener::new(address, incoming, TcpListening { accepting, state, _socket_file: socket_file }))
}

/// A socket file nothing listens on is left over from a process that died; it would make bind
/// fail.
async fn remove_stale_socket(path: &str) {
    if std::path::Path::new(path).exists() && tokio::net::UnixStream::connect(path).await.is_err() {
        let _ = std::fs::remove_file(path);
    }
}

async fn accept(
    socket: Socket,
    tls: Option<TlsAcceptor>,
    state: Arc<ListenerState>,
    calls: Arrivals,
    connections: TaskTracker,
    closing: CancellationToken,
) {
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
                let (tls, state, calls, closing) = (tls.clone(), state.clone(), calls.clone(), closing.clone());
                connections.spawn(async move {
                    match halves(stream, tls).await {
                        Ok((read, write)) => connection::serve(read, write, peer, state, calls, closing).await,
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
