//! On a current-thread runtime a call runs first on the task of the listener that received it.
//! A panic while answering such a call must end that call only, as it would on a task of its
//! own: the listener's task goes on taking calls. Only a call that waits is reported running.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rmicro_core::Result;
use rmicro_core::prelude::*;
use rmicro_core::raw::{Arrivals, CallQueue, arrivals};
use rmicro_core::transport::{CallHead, Connection, IncomingCall, Listener, Reply, Requests, ServeCalls};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// A transport whose one listener takes the calls the test hands to [`Arrivals`].
#[derive(Debug)]
struct HandOver {
    accepting: Mutex<Option<CallQueue>>,
}

#[async_trait]
impl Transport for HandOver {
    fn name(&self) -> &'static str {
        "hand-over"
    }

    async fn listen(&self, _address: &str) -> Result<Box<dyn Listener>> {
        let accepting = self.accepting.lock().unwrap().take().expect("one listener");
        Ok(Box::new(HandOverListener { accepting }))
    }

    async fn dial(&self, _address: &str) -> Result<Arc<dyn Connection>> {
        Err(Error::unavailable("nothing to dial"))
    }
}

#[derive(Debug)]
struct HandOverListener {
    accepting: CallQueue,
}

#[async_trait]
impl Listener for HandOverListener {
    fn address(&self) -> String {
        "hand-over".to_owned()
    }

    async fn accept(&mut self) -> Option<IncomingCall> {
        self.accepting.accept().await
    }

    fn deliver_to(&mut self, server: Arc<dyn ServeCalls>) {
        self.accepting.deliver_to(server);
    }
}

/// A reply whose transport fails with a panic.
#[derive(Debug)]
struct PanickingReply;

#[async_trait]
impl Reply for PanickingReply {
    async fn send_header(&mut self, _metadata: Metadata) -> Result<()> {
        Ok(())
    }

    async fn send(&mut self, _message: Bytes) -> Result<()> {
        Ok(())
    }

    async fn finish(self: Box<Self>, _status: Result<()>) {
        panic!("the transport failed while finishing");
    }

    async fn answer(self: Box<Self>, _metadata: Metadata, _response: Bytes) {
        panic!("the transport failed while answering");
    }
}

/// A reply that hands the call's outcome to the test.
#[derive(Debug)]
struct ChannelReply(oneshot::Sender<Result<Bytes>>);

#[async_trait]
impl Reply for ChannelReply {
    async fn send_header(&mut self, _metadata: Metadata) -> Result<()> {
        Ok(())
    }

    async fn send(&mut self, _message: Bytes) -> Result<()> {
        Ok(())
    }

    async fn finish(self: Box<Self>, status: Result<()>) {
        let _ = self.0.send(status.map(|()| Bytes::new()));
    }

    async fn answer(self: Box<Self>, _metadata: Metadata, response: Bytes) {
        let _ = self.0.send(Ok(response));
    }
}

fn echo_call(request: &'static [u8], reply: Box<dyn Reply>) -> IncomingCall {
    call_to("Echo.Call", request, reply)
}

fn call_to(endpoint: &str, request: &'static [u8], reply: Box<dyn Reply>) -> IncomingCall {
    IncomingCall {
        head: CallHead {
            service: "echo".to_owned(),
            endpoint: endpoint.to_owned(),
            content_type: "application/octet-stream".to_owned(),
            ..CallHead::default()
        },
        requests: Requests::Whole(Bytes::from_static(request)),
        reply,
        cancel: CancellationToken::new(),
    }
}

/// A started server of `Echo.Call` (answers at once) and `Echo.Wait` (answers after 20 ms) on
/// a transport whose calls the test hands to the returned [`Arrivals`].
async fn echo_server() -> (Arrivals, Server) {
    let (calls, accepting): (Arrivals, CallQueue) = arrivals(8);
    let transport = HandOver { accepting: Mutex::new(Some(accepting)) };
    let server = Server::builder("echo").transport(Arc::new(transport)).build();
    server.handle("Echo.Call", |_ctx, request: Opaque| async move { Ok(request) });
    server.handle("Echo.Wait", |_ctx, request: Opaque| async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(request)
    });
    server.start().await.unwrap();
    (calls, server)
}

#[tokio::test(flavor = "current_thread")]
async fn a_panic_while_answering_ends_only_that_call() {
    let (calls, server) = echo_server().await;

    calls.reserve().await.expect("room for a call").spawn(echo_call(b"first", Box::new(PanickingReply)));
    let (answered, answer) = oneshot::channel();
    calls.reserve().await.expect("room for a call").spawn(echo_call(b"second", Box::new(ChannelReply(answered))));

    let answer = tokio::time::timeout(Duration::from_secs(5), answer).await.expect("the second call is served");
    assert_eq!(answer.expect("the second call is answered").unwrap(), Bytes::from_static(b"second"));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn only_a_call_that_waits_is_reported_running() {
    let (calls, server) = echo_server().await;
    // The first call waits in the listener's queue until the server takes it, and from then on
    // the server takes calls straight.
    let (answered, answer) = oneshot::channel();
    calls.reserve().await.expect("room for a call").spawn(echo_call(b"first", Box::new(ChannelReply(answered))));
    answer.await.expect("the first call is answered").unwrap();

    let (answered, mut answer) = oneshot::channel();
    let mut running = false;
    let call = call_to("Echo.Call", b"at once", Box::new(ChannelReply(answered)));
    calls.reserve().await.expect("room for a call").spawn_with(call, || running = true);
    assert!(!running, "a call answered on the listener's task was reported running");
    assert_eq!(answer.try_recv().expect("answered at once").unwrap(), Bytes::from_static(b"at once"));

    let (answered, answer) = oneshot::channel();
    let call = call_to("Echo.Wait", b"later", Box::new(ChannelReply(answered)));
    calls.reserve().await.expect("room for a call").spawn_with(call, || running = true);
    assert!(running, "a call that waits was not reported running");
    let answer = tokio::time::timeout(Duration::from_secs(5), answer).await.expect("the waiting call is served");
    assert_eq!(answer.expect("the waiting call is answered").unwrap(), Bytes::from_static(b"later"));
    server.stop().await.unwrap();
}
