//! Bad input on raw sockets: a malformed or oversized frame closes only the connection it came
//! on, with a logged reason; the listener and its other connections serve on. And an orderly
//! shutdown lets a call in progress finish while refusing new ones.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use rmicro_core::Code;
use rmicro_core::transport::{CallHead, Connection, Listener, Transport};
use rmicro_transport_tcp::{TcpConfig, TcpTransport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// Everything logged in this test binary.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let subscriber =
            tracing_subscriber::fmt().with_ansi(false).with_writer(move || SharedWriter(sink.clone())).finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    })
    .clone()
}

struct SharedWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn head(endpoint: &str) -> CallHead {
    CallHead { service: "echo".into(), endpoint: endpoint.into(), content_type: "raw".into(), ..CallHead::default() }
}

/// Serves `Echo.Unary` (echo) and `Echo.Slow` (echo after 300 ms).
fn serve(mut listener: Box<dyn Listener>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(mut call) = listener.accept().await {
            tokio::spawn(async move {
                let body = call.requests.into_source().recv().await.unwrap().unwrap_or_default();
                if call.head.endpoint == "Echo.Slow" {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                call.reply.send(body).await.unwrap();
                call.reply.finish(Ok(())).await;
            });
        }
    })
}

async fn echo(conn: &dyn Connection, endpoint: &str, body: &'static [u8]) -> rmicro_core::Result<Bytes> {
    let mut call = conn.open(head(endpoint)).await?;
    call.requests.send(Bytes::from_static(body)).await?;
    call.requests.close().await?;
    Ok(call.responses.recv().await?.unwrap_or_default())
}

/// Sends `bytes` on a fresh raw connection and says whether the server then closed it.
async fn closed_after(address: &str, bytes: &[u8]) -> bool {
    let mut raw = tokio::net::TcpStream::connect(address).await.unwrap();
    raw.write_all(bytes).await.unwrap();
    let mut rest = Vec::new();
    matches!(tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut rest)).await, Ok(Ok(0)))
}

fn frame(kind: u8, call: u32, body: &[u8]) -> Vec<u8> {
    let mut frame = ((6 + body.len()) as u32).to_be_bytes().to_vec();
    frame.extend([kind, 0]);
    frame.extend(call.to_be_bytes());
    frame.extend(body);
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_only_their_connection() {
    let logs = logs();
    let transport = TcpTransport::connect(TcpConfig::default().with_max_message_size(MAX_MESSAGE_SIZE)).await.unwrap();
    let listener = transport.listen("127.0.0.1:0").await.unwrap();
    let address = listener.address();
    let _server = serve(listener);
    let good = transport.dial(&address).await.unwrap();
    assert_eq!(echo(&*good, "Echo.Unary", b"before").await.unwrap(), Bytes::from_static(b"before"));

    let oversized = (100u32 << 20).to_be_bytes();
    let unknown_kind = frame(42, 1, b"");
    let truncated_open = frame(1, 1, &[0, 0, 200, b'e']);
    let server_frame_from_client = frame(7, 1, b"");
    let cases: [(&str, &[u8], &str); 4] = [
        ("oversized", &oversized, "a frame of 104857600 bytes exceeds the limit of 131082 bytes"),
        ("unknown kind", &unknown_kind, "unknown frame kind 42"),
        ("truncated open", &truncated_open, "frame ends inside its service"),
        ("End from a client", &server_frame_from_client, "a client sent a End frame"),
    ];
    for (case, bytes, reason) in cases {
        assert!(closed_after(&address, bytes).await, "{case}: the server closed the connection");
        let logged = String::from_utf8_lossy(&logs.lock().unwrap()).to_string();
        assert!(logged.contains(reason), "{case}: the log names the reason `{reason}`:\n{logged}");
        assert_eq!(echo(&*good, "Echo.Unary", b"after").await.unwrap(), Bytes::from_static(b"after"), "{case}");
    }
    assert!(!good.is_closed());
    let fresh = transport.dial(&address).await.unwrap();
    assert_eq!(echo(&*fresh, "Echo.Unary", b"new").await.unwrap(), Bytes::from_static(b"new"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_sending_garbage_fails_the_calls_on_that_connection() {
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut stream, _) = socket.accept().await.unwrap();
        let mut open = [0u8; 64];
        let _ = stream.read(&mut open).await.unwrap();
        stream.write_all(&frame(99, 0, b"")).await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let conn = TcpTransport::connect(TcpConfig::default()).await.unwrap().dial(&address).await.unwrap();
    let err = echo(&*conn, "Echo.Unary", b"x").await.unwrap_err();
    assert_eq!(err.code, Code::Unavailable, "{err}");
    assert!(err.detail.contains("unknown frame kind 99"), "{err}");
    assert!(err.is_retryable());
    assert!(conn.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_calls_in_progress_and_refuses_new_ones() {
    let transport = TcpTransport::connect(TcpConfig::default()).await.unwrap();
    let listener = transport.listen("").await.unwrap();
    let address = listener.address();
    let conn = transport.dial(&address).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let mut listener = listener;
        let mut slow = listener.accept().await.unwrap();
        let _ = stop.send(());
        let handler = tokio::spawn(async move {
            let body = slow.requests.into_source().recv().await.unwrap().unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            slow.reply.send(body).await.unwrap();
            slow.reply.finish(Ok(())).await;
        });
        listener.shutdown().await;
        handler.await.unwrap();
    });
    let in_flight = {
        let conn = conn.clone();
        tokio::spawn(async move { echo(&*conn, "Echo.Slow", b"slow").await })
    };
    stopped.await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let refused = echo(&*conn, "Echo.Unary", b"late").await.unwrap_err();
    assert_eq!(refused.code, Code::Unavailable, "{refused}");
    assert!(refused.is_unsent(), "a refused call may be retried elsewhere: {refused}");
    assert_eq!(in_flight.await.unwrap().unwrap(), Bytes::from_static(b"slow"));
    server.await.unwrap();
    assert!(transport.dial(&address).await.is_err(), "the listener no longer accepts connections");
}
