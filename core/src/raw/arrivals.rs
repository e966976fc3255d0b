//! How a listener's tasks hand over the calls they receive.
//!
//! A listener starts out queueing its calls for [`Listener::accept`](crate::transport::Listener::accept).
//! Once a server hands it a [`ServeCalls`] ([`Listener::deliver_to`](crate::transport::Listener::deliver_to)),
//! its tasks give each call to the server themselves: no queue, no task woken in between, as a
//! generated tonic server runs its handler on the HTTP/2 stream's own task.

use std::sync::{Arc, OnceLock};

use tokio::sync::mpsc;

use crate::transport::{IncomingCall, ServeCalls};

/// Where a listener's tasks put incoming calls. Cheap to clone: one per connection.
#[derive(Clone, Debug)]
pub struct Arrivals {
    queue: mpsc::Sender<IncomingCall>,
    server: Arc<OnceLock<Arc<dyn ServeCalls>>>,
}

/// The listener's end: the queued calls, and the switch to delivering them straight.
#[derive(Debug)]
pub struct CallQueue {
    queue: mpsc::Receiver<IncomingCall>,
    server: Arc<OnceLock<Arc<dyn ServeCalls>>>,
}

/// A channel for incoming calls that queues up to `backlog` of them until a server takes them.
pub fn arrivals(backlog: usize) -> (Arrivals, CallQueue) {
    let (tx, rx) = mpsc::channel(backlog);
    let server = Arc::new(OnceLock::new());
    (Arrivals { queue: tx, server: server.clone() }, CallQueue { queue: rx, server })
}

/// Room for one call, taken before the call is built so that a listener that can take no more
/// refuses it with nothing started.
#[derive(Debug)]
pub enum Arrival<'a> {
    /// The server takes the call itself.
    Served(&'a dyn ServeCalls),
    /// The call waits in the queue for `accept`.
    Queued(mpsc::Permit<'a, IncomingCall>),
}

impl Arrivals {
    /// Room for one call; `None` once the listener takes no more.
    pub async fn reserve(&self) -> Option<Arrival<'_>> {
        if self.queue.is_closed() {
            return None;
        }
        if let Some(server) = self.server.get() {
            return Some(Arrival::Served(server.as_ref()));
        }
        self.queue.reserve().await.ok().map(Arrival::Queued)
    }
}

impl Arrival<'_> {
    /// Hands the call over; the server serves it on a task of its own (on a current-thread
    /// runtime, first on the caller's task, up to where the call would wait).
    pub fn spawn(self, call: IncomingCall) {
        self.spawn_with(call, || {});
    }

    /// As [`spawn`](Self::spawn), and runs `if_running` when the call may go on after this
    /// returns, before it can go on: not for a call served to its end on the caller's task. A
    /// transport keeps there what only a call in progress needs, such as where a cancel from the
    /// caller finds it.
    pub fn spawn_with(self, call: IncomingCall, if_running: impl FnOnce()) {
        match self {
            Arrival::Served(server) => {
                let mut once = Some(if_running);
                server.spawn(call, &mut || once.take().into_iter().for_each(|f| f()));
            }
            Arrival::Queued(permit) => {
                if_running();
                permit.send(call);
            }
        }
    }

    /// Hands the call over; the server serves it on the caller's task, which this awaits. Suits
    /// a transport that has a task per call already.
    pub async fn run(self, call: IncomingCall) {
        match self {
            Arrival::Served(server) => server.serve(call).await,
            Arrival::Queued(permit) => permit.send(call),
        }
    }
}

impl CallQueue {
    /// The next queued call; `None` once every [`Arrivals`] is gone.
    pub async fn accept(&mut self) -> Option<IncomingCall> {
        self.queue.recv().await
    }

    /// From now on, calls go to `server` instead of the queue (calls queued already stay there
    /// for `accept`). Only the first server counts.
    pub fn deliver_to(&self, server: Arc<dyn ServeCalls>) {
        let _ = self.server.set(server);
    }
}
