//! The listener every transport builds: an address, the queue of calls ([`CallQueue`]), and
//! what the transport keeps beside them ([`Listening`]), which alone differs between transports.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::CallQueue;
use crate::transport::{IncomingCall, Listener, ServeCalls};

/// How long a shutdown waits for connections to deliver what they carry.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What a transport's listener keeps beside its queue of calls: its tasks, and how they stop.
/// Stopping to accept belongs in `Drop`; [`shutdown`](Listening::shutdown) is the orderly end
/// (see [`Listener::shutdown`]).
pub trait Listening: Send + Sync + fmt::Debug + 'static {
    /// Stops taking calls, lets those in progress finish, then closes connections once what
    /// they carry is delivered. `address` is the listener's, for logs.
    fn shutdown(self, address: &str) -> impl Future<Output = ()> + Send;
}

/// A [`Listener`] made of an address, the [`CallQueue`] end of [`arrivals`](super::arrivals)
/// and the transport's [`Listening`] part.
#[derive(Debug)]
pub struct QueueListener<L> {
    address: String,
    calls: CallQueue,
    listening: L,
}

impl<L: Listening> QueueListener<L> {
    /// The listener at `address` taking `calls`, with `listening` to stop it.
    pub fn new(address: impl Into<String>, calls: CallQueue, listening: L) -> QueueListener<L> {
        QueueListener { address: address.into(), calls, listening }
    }
}

#[async_trait]
impl<L: Listening> Listener for QueueListener<L> {
    fn address(&self) -> String {
        self.address.clone()
    }

    async fn accept(&mut self) -> Option<IncomingCall> {
        self.calls.accept().await
    }

    fn deliver_to(&mut self, server: Arc<dyn ServeCalls>) {
        self.calls.deliver_to(server);
    }

    async fn shutdown(self: Box<Self>) {
        let QueueListener { address, listening, .. } = *self;
        listening.shutdown(&address).await;
    }
}

/// A socket's accept loop and the connection tasks it started: what a listener on a socket
/// keeps. Dropped, it stops accepting (and, [`closing_on_drop`](AcceptLoop::closing_on_drop),
/// closes its connections); shut down, it also asks every connection to finish (`closing`
/// fires) and waits up to [`SHUTDOWN_GRACE`] for them.
#[derive(Debug)]
pub struct AcceptLoop {
    acceptor: JoinHandle<()>,
    connections: TaskTracker,
    closing: CancellationToken,
    close_on_drop: bool,
}

impl AcceptLoop {
    /// Spawns `accept`, given where to start connections and the token that asks them to close.
    pub fn spawn<F>(accept: impl FnOnce(TaskTracker, CancellationToken) -> F) -> AcceptLoop
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (connections, closing) = (TaskTracker::new(), CancellationToken::new());
        let acceptor = tokio::spawn(accept(connections.clone(), closing.clone()));
        AcceptLoop { acceptor, connections, closing, close_on_drop: false }
    }

    /// Closes the connections too when dropped, for a transport whose connections should not
    /// outlive their listener.
    pub fn closing_on_drop(mut self) -> AcceptLoop {
        self.close_on_drop = true;
        self
    }

    /// Stops accepting connections; those open go on.
    pub fn stop_accepting(&self) {
        self.acceptor.abort();
    }
}

impl Drop for AcceptLoop {
    fn drop(&mut self) {
        self.acceptor.abort();
        if self.close_on_drop {
            self.closing.cancel();
        }
    }
}

impl Listening for AcceptLoop {
    async fn shutdown(self, address: &str) {
        self.acceptor.abort();
        self.closing.cancel();
        self.connections.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.connections.wait()).await.is_err() {
            tracing::warn!(%address, "connections still open after the shutdown grace period");
        }
    }
}
