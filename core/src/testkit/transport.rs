//! The transport suite. The factory returns a [`TransportUnderTest`]: the transport, the address
//! to listen on, and the message size limit it was configured with.
//!
//! Each check listens, runs the kit's echo server on the listener, dials it and calls:
//! `Echo.Unary` answers with the request, `Echo.Answer` too but through
//! [`Reply::answer`](crate::transport::Reply::answer), `Echo.Stream` echoes each message,
//! `Echo.Fail` returns an error, `Echo.Hang` waits until cancelled and reports it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::client::Call;
use crate::codec::Json;
use crate::error::{Code, Error, Result};
use crate::metadata::Metadata;
use crate::server::ServerStream;
use crate::service::Service;
use crate::transport::{CallHead, ClientCall, Connection, IncomingCall, Listener, Transport};

pub use super::transport_chain::a_call_chain_carries_deadline_metadata_and_cancellation;

const SETTLE: Duration = Duration::from_secs(10);

/// A transport as the suite needs it.
#[derive(Debug, Clone)]
pub struct TransportUnderTest {
    /// The transport.
    pub transport: Arc<dyn Transport>,
    /// The address to listen on (e.g. `127.0.0.1:0`, or empty for the transport's choice).
    pub listen_address: String,
    /// The largest message the transport was configured to accept.
    pub max_message_size: usize,
}

/// Expands to one `#[tokio::test]` per transport check, each calling `$factory().await` for a
/// fresh [`TransportUnderTest`].
#[macro_export]
macro_rules! transport_conformance {
    ($factory:expr) => {
        $crate::__conformance_tests!(
            transport,
            $factory,
            unary_round_trip,
            empty_messages_round_trip,
            metadata_round_trips,
            error_status_crosses_intact,
            bidi_stream_echoes,
            concurrent_calls_share_one_connection,
            deadline_reaches_server,
            dropped_call_cancels_handler,
            oversized_message_is_refused_and_connection_serves_on,
            call_to_closed_listener_is_unavailable,
            unknown_call_gets_an_answer,
            unary_calls_answer_in_one_exchange,
            dropped_unary_call_cancels_handler,
            a_server_serves_unary_calls_and_streams,
            a_call_chain_carries_deadline_metadata_and_cancellation
        );
    };
}

/// What the echo server saw of a hanging call.
#[derive(Debug)]
struct Hung {
    timeout: Option<Duration>,
    cancelled: bool,
}

fn head(endpoint: &str) -> CallHead {
    CallHead {
        service: "echo".into(),
        endpoint: endpoint.into(),
        content_type: "application/octet-stream".into(),
        ..CallHead::default()
    }
}

/// Listens and serves echo calls until the returned listener task is aborted.
async fn echo_server(t: &TransportUnderTest) -> (String, mpsc::UnboundedReceiver<Hung>, tokio::task::JoinHandle<()>) {
    let mut listener: Box<dyn Listener> = t.transport.listen(&t.listen_address).await.unwrap();
    let address = listener.address();
    let (hung_tx, hung_rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Some(call) = listener.accept().await {
            tokio::spawn(serve_echo(call, hung_tx.clone()));
        }
    });
    (address, hung_rx, task)
}

async fn serve_echo(call: IncomingCall, hung: mpsc::UnboundedSender<Hung>) {
    let IncomingCall { head, requests, mut reply, cancel } = call;
    let mut requests = requests.into_source();
    if head.endpoint == "Echo.Answer" {
        return match requests.recv().await {
            Ok(Some(body)) => reply.answer(echoed_metadata(&head), body).await,
            Ok(None) => reply.finish(Err(Error::bad_request("no request"))).await,
            Err(e) => reply.finish(Err(e)).await,
        };
    }
    let status: Result<()> = async {
        match head.endpoint.as_str() {
            "Echo.Unary" => {
                let body = requests.recv().await?.ok_or_else(|| Error::bad_request("no request"))?;
                reply.send_header(echoed_metadata(&head)).await?;
                reply.send(body).await
            }
            "Echo.Stream" => {
                while let Some(body) = requests.recv().await? {
                    reply.send(body).await?;
                }
                Ok(())
            }
            "Echo.Fail" => Err(Error::new(Code::Forbidden, "you shall not pass: rule 7").with_id("echo")),
            "Echo.Hang" => {
                let cancelled = tokio::time::timeout(SETTLE, cancel.cancelled()).await.is_ok();
                let _ = hung.send(Hung { timeout: head.timeout, cancelled });
                Err(Error::canceled("cancelled"))
            }
            other => Err(Error::not_found(format!("echo has no endpoint {other}"))),
        }
    }
    .await;
    reply.finish(status).await;
}

/// The call's metadata, plus the endpoint that answered.
fn echoed_metadata(head: &CallHead) -> Metadata {
    let mut metadata = head.metadata.clone();
    metadata.insert("x-echo-endpoint", head.endpoint.clone());
    metadata
}

async fn unary(conn: &dyn Connection, endpoint: &str, body: Bytes) -> Result<(Bytes, Metadata)> {
    let mut call: ClientCall = conn.open(head(endpoint)).await?;
    call.requests.send(body).await?;
    call.requests.close().await?;
    let reply = call.responses.recv().await?.ok_or_else(|| Error::internal("no reply"))?;
    assert_eq!(call.responses.recv().await?, None, "a unary call ends after its one reply");
    Ok((reply, call.responses.header().cloned().unwrap_or_default()))
}

/// One request, one response with the same bytes.
pub async fn unary_round_trip(t: TransportUnderTest) {
    let (address, _, server) = echo_server(&t).await;
    let conn = t.transport.dial(&address).await.unwrap();
    let (reply, _) = unary(&*conn, "Echo.Unary", Bytes::from_static(b"ping \x00\xff")).await.unwrap();
    assert_eq!(reply, Bytes::from_static(b"ping \x00\xff"));
    server.abort();
}

/// An empty request gets its empty response, and the connection serves on (empty protobuf
/// messages encode to no bytes at all).
pub async fn empty_messages_round_trip(t: TransportUnderTest) {
    let (address, _, server) = echo_server(&t).await;
    let conn = t.transport.dial(&address).await.unwrap();
    for _ in 0..3 {
        assert_eq!(unary(&*conn, "Echo.Unary", Bytes::new()).await.unwrap().0, Bytes::new());
    }
    let mut h = head("Echo.Stream");
    h.stream = true;
    let mut call = conn.open(h).await.unwrap();
    call.requests.send(Bytes::new()).await.unwrap();
    assert_eq!(call.responses.recv().await.unwrap(), Some(Bytes::new()));
    call.requests.close().await.unwrap();
    assert_eq!(call.responses.recv().await.unwrap(), None);
    server.abort();
}

/// Request metadata reaches the server; the server's header metadata comes back.
pub async fn metadata_round_trips(t: TransportUnderTest) {
    let (address, _, server) = echo_server(&t).await;
    let conn = t.transport.dial(&address).await.unwrap();
    let mut h = head("Echo.Unary");
    h.metadata.insert("X-Request-Id", "r-42");
    h.metadata.insert("x-user", "ada lovelace");
    let mut call = conn.open(h).await.unwrap();
    call.requests.send(Bytes::from_static(b"m")).await.unwrap();
    call.requests.close().await.unwrap();
    call.responses.recv().await.unwrap();
    let header = call.responses.header().cloned().unwrap();
    assert_eq!(header.get("x-request-id"), Some("r-42"));
    assert_eq!(header.get("x-user"), Some("ada lovelace"));
    assert_eq!(header.get("x-echo-endpoint"), Some("Echo.Unary"));
    server.abort();
}

/// An error status arrives with its code, detail and id unchanged.
pub async fn error_status_crosses_intact(t: TransportUnderTest) {
    let (address, _, server) = echo_server(&t).await;
    let conn = t.transport.dial(&address).await.unwrap();
    let err = unary(&*conn, "Echo.Fail", Bytes::from_static(b"x")).await.unwrap_err();
    assert_eq!(err.code, Code::Forbidden);
    assert_eq!(err.detail, "you shall not pass: rule 7");
    assert_eq!(err.id, "echo");
    server.abort();
}

/// A stream echoes each message in order while both sides are open, then ends cleanly.
pub async fn bidi_stream_echoes(t: TransportUnderTest) {
    let (address, _, server) = echo_server(&t).await;
    let conn = t.transport.dial(&address).await.unwrap();
    let mut h = head("Echo.Stream");
    h.stream = true;
    let mut call = conn.open(h).await.unwrap();
    for i in 0..20 {
        let body = Bytes::from(format!("frame {i}"));
        call.requests.send(body.clone()).await.unwrap();
        assert_eq!(call.responses.recv().await.unwrap(), Some(body), "echo of frame {i}");
    }
    call.requests.close().await.unwrap();
    assert_eq!(call.responses.recv().await.unwrap(), None);
    server.abort();
}

/// 100 concurrent calls on one connection all complete with their own answers.
pub async fn concurrent_calls_share_one_connection(t: TransportUnderTest) {
    let (address, _, server) = echo_server(&t).await;
    let conn = t.transport.dial(&address).await.unwrap();
    let calls = (0..100).map(|i| {
        let conn = conn.clone();
        async move {
            let body = Bytes::from(format!("call {i}"));
            let (reply, _) = unary(&*conn, "Echo.Unary", body.clone()).await.unwrap();
            assert_eq!(reply, body);
        }
    });
    tokio::time::timeout(SETTLE, futures::future::join_all(calls)).await.expect("100 calls completed");
    server.abort();
}

/// The caller's remaining time reaches the server with the call.
pub async fn deadline_reaches_server(t: TransportUnderTest) {
    let (address, mut hung, server) = echo_server(&t).await;
    let conn = t.transport.dial(&address).await.unwrap();
    let mut h = head("Echo.Hang");
    h.timeout = Some(Duration::from_millis(50));
    let mut call = conn.open(h).await.unwrap();
    call.requests.send(Bytes::from_static(b"x")).await.unwrap();
    call.requests.close().await.unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(25), call.responses.recv()).await;
    assert!(waited.is_err(), "the hanging call must not answer before its deadline");
    tokio::time::sleep(Duration::from_millis(25)).await;
    drop(call);
    let seen = tokio::time::timeout(SETTLE, hung.recv()).await.unwrap().unwrap();
    let timeout = seen.timeout.expect("the server saw the caller's deadline");
    assert!(timeout <= Duration::from_millis(50) && timeout > Duration::ZERO, "remaining time {timeout:?}");
    assert!(seen.cancelled, "the call was cancelled on the server once the caller gave up");
    server.abort();
}

/// Dropping a call before it is answered cancels the handler.
pub async fn dropped_call_cancels_handler(t: TransportUnderTest) {
    let (address, mut hung, server) = echo_server(&t).await;
    let conn = t.transport.dial(&address).await.unwrap();
    let mut call = conn.open(head("Echo.Hang")).await.unwrap();
    call.requests.send(Bytes::from_static(b"x")).await.unwrap();
    call.requests.close().await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(call);
    let seen = tokio::time::timeout(SETTLE, hung.recv()).await.unwrap().unwrap();
    assert!(seen.cancelled, "dropping the call cancelled the handler");
    server.abort();
}

/// A message over the limit is refused with a clear error, and the connection keeps serving.
pub async fn oversized_message_is_refused_and_connection_serves_on(t: TransportUnderTest) {
    let (address, _, server) = echo_server(&t).await;
    let conn = t.transport.dial(&address).await.unwrap();
    let oversized = Bytes::from(vec![7u8; t.max_message_size + 1]);
    let err = unary(&*conn, "Echo.Unary", oversized).await.unwrap_err();
    assert_eq!(err.code, Code::PayloadTooLarge, "{err}");
    assert!(err.detail.contains(&t.max_message_size.to_string()), "the error names the limit: {err}");
    let (reply, _) = unary(&*conn, "Echo.Unary", Bytes::from_static(b"still here")).await.unwrap();
    assert_eq!(reply, Bytes::from_static(b"still here"));
    let at_limit = Bytes::from(vec![1u8; t.max_message_size.min(1 << 20)]);
    assert_eq!(unary(&*conn, "Echo.Unary", at_limit.clone()).await.unwrap().0, at_limit);
    server.abort();
}

/// Once the listener is gone, calls fail as unavailable (retryable), not with a hang or panic.
pub async fn call_to_closed_listener_is_unavailable(t: TransportUnderTest) {
    let listener = t.transport.listen(&t.listen_address).await.unwrap();
    let address = listener.address();
    drop(listener);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let result =
        async { unary(&*t.transport.dial(&address).await?, "Echo.Unary", Bytes::from_static(b"x")).await }.await;
    let err = result.unwrap_err();
    assert_eq!(err.code, Code::Unavailable, "{err}");
    assert!(err.is_retryable());
}

/// A call the server does not know gets a status back, and the connection serves on.
pub async fn unknown_call_gets_an_answer(t: TransportUnderTest) {
    let (address, _, server) = echo_server(&t).await;
    let conn = t.transport.dial(&address).await.unwrap();
    let err = unary(&*conn, "Echo.Missing", Bytes::from_static(b"x")).await.unwrap_err();
    assert_eq!(err.code, Code::NotFound);
    assert!(unary(&*conn, "Echo.Unary", Bytes::from_static(b"y")).await.is_ok());
    server.abort();
}

/// `Connection::unary` (the client's path for unary calls) carries metadata both ways, the
/// response bytes, error statuses and size limits, whichever way the server answers.
pub async fn unary_calls_answer_in_one_exchange(t: TransportUnderTest) {
    let (address, _, server) = echo_server(&t).await;
    let conn = t.transport.dial(&address).await.unwrap();
    for endpoint in ["Echo.Answer", "Echo.Unary"] {
        let mut h = head(endpoint);
        h.metadata.insert("x-trace", "t-42");
        let answer = conn.unary(&h, Bytes::from_static(b"ping \x00\xff")).await.unwrap();
        assert_eq!(answer.body, Bytes::from_static(b"ping \x00\xff"), "{endpoint}");
        assert_eq!(answer.metadata.get("x-trace"), Some("t-42"), "{endpoint}");
        assert_eq!(answer.metadata.get("x-echo-endpoint"), Some(endpoint));
        assert_eq!(conn.unary(&h, Bytes::new()).await.unwrap().body, Bytes::new(), "{endpoint}: empty");
    }
    let failed = conn.unary(&head("Echo.Fail"), Bytes::from_static(b"x")).await.unwrap_err();
    assert_eq!(
        (failed.code, failed.detail.as_str(), failed.id.as_str()),
        (Code::Forbidden, "you shall not pass: rule 7", "echo")
    );
    let missing = conn.unary(&head("Echo.Missing"), Bytes::from_static(b"x")).await.unwrap_err();
    assert_eq!(missing.code, Code::NotFound);
    let oversized = Bytes::from(vec![7u8; t.max_message_size + 1]);
    let too_large = conn.unary(&head("Echo.Answer"), oversized).await.unwrap_err();
    assert_eq!(too_large.code, Code::PayloadTooLarge, "{too_large}");
    let at_limit = Bytes::from(vec![1u8; t.max_message_size.min(1 << 20) - 1024]);
    assert_eq!(conn.unary(&head("Echo.Answer"), at_limit.clone()).await.unwrap().body, at_limit);
    server.abort();
}

/// A unary call dropped before its answer cancels the handler, which saw the caller's deadline.
pub async fn dropped_unary_call_cancels_handler(t: TransportUnderTest) {
    let (address, mut hung, server) = echo_server(&t).await;
    let conn = t.transport.dial(&address).await.unwrap();
    let mut h = head("Echo.Hang");
    h.timeout = Some(Duration::from_secs(5));
    let waited = tokio::time::timeout(Duration::from_millis(50), conn.unary(&h, Bytes::from_static(b"x"))).await;
    assert!(waited.is_err(), "the hanging call must not answer");
    let seen = tokio::time::timeout(SETTLE, hung.recv()).await.unwrap().unwrap();
    assert!(seen.timeout.is_some_and(|t| t <= Duration::from_secs(5) && t > Duration::from_secs(4)), "{seen:?}");
    assert!(seen.cancelled, "dropping the call cancelled the handler");
    server.abort();
}

/// A [`Server`](crate::server::Server) on the transport, which its listener may hand calls to
/// straight (`Listener::deliver_to`), serves many unary calls at once and a stream longer than
/// any transport's flow-control window.
pub async fn a_server_serves_unary_calls_and_streams(t: TransportUnderTest) {
    let name = super::unique("suite");
    let service = Service::builder(&name).transport(t.transport.clone()).address(t.listen_address.clone()).build();
    service.server().handle("Echo.Next", |_ctx, n: Json<u64>| async move { Ok(Json(n.0 + 1)) });
    service.server().handle_stream("Echo.Count", |_ctx, mut stream: ServerStream<Json<u64>, Json<u64>>| async move {
        while let Some(n) = stream.recv().await? {
            for i in 0..n.0 {
                stream.send(&Json(i)).await?;
            }
        }
        Ok(())
    });
    service.start().await.unwrap();
    let client = service.client();
    let call = || Call::new(&name, "Echo.Next").content_type("application/json");
    let answers = futures::future::join_all((0..64u64).map(|n| client.call::<_, Json<u64>>(call(), &Json(n)))).await;
    let answers: Vec<u64> = answers.into_iter().map(|a| a.unwrap().into_inner().0).collect();
    assert_eq!(answers, (1..=64).collect::<Vec<_>>());
    let count = Call::new(&name, "Echo.Count").content_type("application/json");
    let mut stream = client.stream::<Json<u64>, Json<u64>>(count).await.unwrap();
    stream.send(&Json(100)).await.unwrap();
    stream.close_send().await.unwrap();
    let mut got = Vec::new();
    while let Some(n) = tokio::time::timeout(SETTLE, stream.recv()).await.unwrap().unwrap() {
        got.push(n.0);
    }
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    service.stop().await.unwrap();
}
