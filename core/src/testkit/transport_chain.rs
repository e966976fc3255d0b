//! The transport suite's call-chain check: A's handler calls B, whose handler calls C, with
//! nothing passed by hand. C must see what is left of the first call's deadline and its
//! metadata, and cancelling the first call must cancel C's handler.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::transport::TransportUnderTest;
use crate::client::Call;
use crate::codec::Json;
use crate::registry::{MemoryRegistry, Registry};
use crate::server::ServerStream;
use crate::service::Service;

const SETTLE: Duration = Duration::from_secs(10);

/// What C's handler saw of a call.
#[derive(Debug)]
enum Seen {
    /// C answered at once, with this much of the deadline left and this `x-chain` and
    /// `authorization` metadata.
    Answered { remaining: Option<Duration>, chain: Option<String>, authorization: Option<String> },
    /// C's handler was running and waiting.
    Waiting,
    /// C's handler was dropped before it answered; the call's context goes with it.
    Ended(crate::context::Context),
}

/// Reports C's waiting handler when it is dropped.
struct EndReport {
    ctx: crate::context::Context,
    report: mpsc::UnboundedSender<Seen>,
}

impl Drop for EndReport {
    fn drop(&mut self) {
        let _ = self.report.send(Seen::Ended(self.ctx.clone()));
    }
}

fn answered(ctx: &crate::context::Context) -> Seen {
    let metadata = |key| ctx.metadata().get(key).map(str::to_owned);
    Seen::Answered { remaining: ctx.remaining(), chain: metadata("x-chain"), authorization: metadata("authorization") }
}

/// A second listen address beside `base`: a Unix socket path needs one of its own, a port of 0
/// or a transport's own choice does not.
fn address_beside(base: &str, tag: &str) -> String {
    if base.starts_with("unix:") { format!("{base}-{tag}") } else { base.to_owned() }
}

fn service(t: &TransportUnderTest, registry: &Arc<dyn Registry>, name: &str) -> Service {
    Service::builder(name)
        .transport(t.transport.clone())
        .registry(registry.clone())
        .address(address_beside(&t.listen_address, name))
        .build()
}

/// A's handler calls B, B's handler calls C, each with a plain call: C sees the first call's
/// remaining deadline and metadata (but its `authorization`), for a unary chain and for B opening a stream to C; and a
/// first call dropped midway cancels C's handler.
pub async fn a_call_chain_carries_deadline_metadata_and_cancellation(t: TransportUnderTest) {
    let registry: Arc<dyn Registry> = Arc::new(MemoryRegistry::new());
    let names = [super::unique("chain-a"), super::unique("chain-b"), super::unique("chain-c")];
    let [a, b, c] = names.clone().map(|name| service(&t, &registry, &name));
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<Seen>();

    let report = seen_tx.clone();
    c.server().handle("Chain.C", move |ctx, hang: Json<bool>| {
        let report = report.clone();
        async move {
            if !hang.0 {
                let _ = report.send(answered(&ctx));
                return Ok(Json(true));
            }
            let _ = report.send(Seen::Waiting);
            // A cancelled handler is dropped where it waits: the guard reports it then.
            let _ended = EndReport { ctx, report };
            std::future::pending::<()>().await;
            Ok(Json(false))
        }
    });
    let report = seen_tx;
    c.server().handle_stream("Chain.CStream", move |ctx, mut stream: ServerStream<Json<bool>, Json<bool>>| {
        let report = report.clone();
        async move {
            while stream.recv().await?.is_some() {
                let _ = report.send(answered(&ctx));
                stream.send(&Json(true)).await?;
            }
            Ok(())
        }
    });
    let (client_b, c_name) = (b.client().clone(), names[2].clone());
    b.server().handle("Chain.B", move |_ctx, mode: Json<String>| {
        let (client, c_name) = (client_b.clone(), c_name.clone());
        async move {
            let json = |endpoint| Call::new(&c_name, endpoint).content_type("application/json");
            if mode.0 == "stream" {
                let mut stream = client.stream::<Json<bool>, Json<bool>>(json("Chain.CStream")).await?;
                stream.send(&Json(false)).await?;
                let answer = stream.recv().await?.map(|j| j.0).unwrap_or_default();
                stream.close_send().await?;
                return Ok(Json(answer));
            }
            let hang = mode.0 == "hang";
            Ok(client.call::<_, Json<bool>>(json("Chain.C"), &Json(hang)).await?.into_inner())
        }
    });
    let (client_a, b_name) = (a.client().clone(), names[1].clone());
    a.server().handle("Chain.A", move |_ctx, mode: Json<String>| {
        let (client, b_name) = (client_a.clone(), b_name.clone());
        async move {
            let call = Call::new(&b_name, "Chain.B").content_type("application/json");
            Ok(client.call::<_, Json<bool>>(call, &mode).await?.into_inner())
        }
    });
    for service in [&a, &b, &c] {
        service.start().await.unwrap();
    }

    let caller = a.client().clone();
    let first = |mode: &str, timeout: Duration| {
        let call = Call::new(&names[0], "Chain.A")
            .content_type("application/json")
            .timeout(timeout)
            .metadata("x-chain", "from-the-caller")
            .metadata("authorization", "Bearer for-a-only");
        let caller = caller.clone();
        let mode = Json(mode.to_owned());
        async move { caller.call::<_, Json<bool>>(call, &mode).await }
    };
    for mode in ["unary", "stream"] {
        assert!(first(mode, Duration::from_millis(300)).await.unwrap().into_inner().0, "{mode} chain answered");
        match tokio::time::timeout(SETTLE, seen.recv()).await.unwrap().unwrap() {
            Seen::Answered { remaining, chain, authorization } => {
                let remaining = remaining.unwrap_or_else(|| panic!("{mode}: C saw no deadline"));
                assert!(
                    remaining < Duration::from_millis(300) && !remaining.is_zero(),
                    "{mode}: C had {remaining:?} left"
                );
                assert_eq!(chain.as_deref(), Some("from-the-caller"), "{mode}: the caller's metadata reached C");
                assert_eq!(authorization, None, "{mode}: the caller's credentials stayed with A");
            }
            other => panic!("{mode}: C saw {other:?}"),
        }
    }

    let hanging = tokio::spawn(first("hang", Duration::from_secs(30)));
    assert!(matches!(tokio::time::timeout(SETTLE, seen.recv()).await.unwrap(), Some(Seen::Waiting)));
    hanging.abort();
    let Some(Seen::Ended(ctx)) = tokio::time::timeout(SETTLE, seen.recv()).await.unwrap() else {
        panic!("dropping the first call ended C's handler");
    };
    tokio::time::timeout(SETTLE, ctx.cancelled()).await.expect("C's call was cancelled");
    for service in [&a, &b, &c] {
        service.stop().await.unwrap();
    }
}
