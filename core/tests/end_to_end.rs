//! A typed service over the in-memory backends, end to end: errors, deadlines, cancellation,
//! graceful stop, bad bodies, metadata, streams, events, retries and layers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rmicro_core::broker::SubscribeOptions;
use rmicro_core::client::ClientRequest;
use rmicro_core::prelude::*;
use rmicro_core::registry::{self, MemoryRegistry, Watcher};
use rmicro_core::server::ServerRequest;
use rmicro_core::transport::MemoryTransport;
use tokio::sync::mpsc;

#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
struct GetUser {
    #[prost(int64, tag = "1")]
    id: i64,
    #[prost(uint64, tag = "2")]
    sleep_ms: u64,
}

#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
struct User {
    #[prost(int64, tag = "1")]
    id: i64,
    #[prost(string, tag = "2")]
    name: String,
}

#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
struct UserCreated {
    #[prost(int64, tag = "1")]
    id: i64,
}

/// A `users` service: `Users.Get` knows users 1 and 2 (sleeping first when asked), and reports
/// when a call was cancelled before it finished.
struct Fixture {
    service: Service,
    cancelled: Arc<AtomicUsize>,
    handled: Arc<AtomicUsize>,
    remaining_ms: mpsc::UnboundedReceiver<u128>,
}

/// Counts handler futures dropped before they completed.
struct CancelProbe(Arc<AtomicUsize>, bool);

impl Drop for CancelProbe {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn users(
    builder: impl FnOnce(rmicro_core::service::ServiceBuilder) -> rmicro_core::service::ServiceBuilder,
) -> Fixture {
    let service = builder(Service::builder("users").version("1.2.0")).build();
    let cancelled = Arc::new(AtomicUsize::new(0));
    let handled = Arc::new(AtomicUsize::new(0));
    let (remaining_tx, remaining_ms) = mpsc::unbounded_channel();
    let (c, h) = (cancelled.clone(), handled.clone());
    service.server().handle("Users.Get", move |ctx: Context, req: GetUser| {
        let (cancelled, handled, remaining) = (c.clone(), h.clone(), remaining_tx.clone());
        async move {
            handled.fetch_add(1, Ordering::SeqCst);
            if let Some(left) = ctx.remaining() {
                let _ = remaining.send(left.as_millis());
            }
            let mut probe = CancelProbe(cancelled, false);
            tokio::time::sleep(Duration::from_millis(req.sleep_ms)).await;
            probe.1 = true;
            if let Some(user) = ctx.metadata().get("x-user") {
                ctx.set_reply_metadata("x-served-for", user);
            }
            match req.id {
                1 => Ok(User { id: 1, name: "ada".into() }),
                2 => Ok(User { id: 2, name: "grace".into() }),
                13 => panic!("user 13 brings bad luck"),
                id => Err(Error::not_found(format!("no user {id}"))),
            }
        }
    });
    service.start().await.unwrap();
    Fixture { service, cancelled, handled, remaining_ms }
}

fn get(id: i64) -> GetUser {
    GetUser { id, sleep_ms: 0 }
}

#[tokio::test]
async fn a_typed_call_returns_the_handlers_reply() {
    let f = users(|b| b).await;
    let reply: Response<User> = f.service.client().call(Call::new("users", "Users.Get"), &get(1)).await.unwrap();
    assert_eq!(reply.into_inner(), User { id: 1, name: "ada".into() });
    f.service.stop().await.unwrap();
}

#[tokio::test]
async fn a_handler_error_arrives_with_its_code_and_detail() {
    let f = users(|b| b).await;
    let err = f.service.client().call::<_, User>(Call::new("users", "Users.Get"), &get(7)).await.unwrap_err();
    assert_eq!(err.code, Code::NotFound);
    assert_eq!(err.detail, "no user 7");
    assert_eq!(err.id, "users", "the error names the service that raised it");
    f.service.stop().await.unwrap();
}

#[tokio::test]
async fn a_deadline_cancels_the_handler_and_propagates_the_remaining_time() {
    let mut f = users(|b| b).await;
    let call = Call::new("users", "Users.Get").timeout(Duration::from_millis(50));
    let started = tokio::time::Instant::now();
    let err = f.service.client().call::<_, User>(call, &GetUser { id: 1, sleep_ms: 2_000 }).await.unwrap_err();
    assert_eq!(err.code, Code::DeadlineExceeded, "{err}");
    assert!(started.elapsed() < Duration::from_millis(1_000), "the client gave up at its deadline");
    let remaining = f.remaining_ms.recv().await.unwrap();
    assert!(remaining <= 50, "the server saw the caller's remaining time, {remaining} ms");
    rmicro_core::testkit::eventually(Duration::from_secs(2), "handler cancelled on the server", || async {
        f.cancelled.load(Ordering::SeqCst) == 1
    })
    .await;
    f.service.stop().await.unwrap();
}

#[tokio::test]
async fn graceful_stop_finishes_in_flight_calls_and_refuses_new_ones() {
    let f = users(|b| b).await;
    let registry_view = f.service.client().clone();
    let client = f.service.client().clone();
    let in_flight = tokio::spawn(async move {
        client.call::<_, User>(Call::new("users", "Users.Get"), &GetUser { id: 2, sleep_ms: 1_500 }).await
    });
    while f.handled.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let address = f.service.server().address().await.unwrap();
    let server = f.service.server().clone();
    let stopping = tokio::spawn(async move { server.stop().await });
    let mut refused = None;
    for _ in 0..200 {
        let call = Call::new("users", "Users.Get").address(address.clone()).retries(0);
        if let Err(e) = registry_view.call::<_, User>(call, &get(1)).await {
            refused = Some(e);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused = refused.expect("calls are refused once the stop began");
    assert_eq!(refused.code, Code::Unavailable, "a call after the stop began is refused: {refused}");
    assert!(!in_flight.is_finished(), "refused while the first call was still in flight");
    let finished = in_flight.await.unwrap().unwrap();
    assert_eq!(finished.get_ref().name, "grace", "the in-flight call completed");
    stopping.await.unwrap().unwrap();
    assert_eq!(f.cancelled.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn stop_deregisters_before_draining() {
    let registry = Arc::new(MemoryRegistry::new());
    let f = users(|b| b.registry(registry.clone())).await;
    let mut watcher: Watcher = registry.watch(Some("users")).await.unwrap();
    let client = f.service.client().clone();
    let in_flight = tokio::spawn(async move {
        client.call::<_, User>(Call::new("users", "Users.Get"), &GetUser { id: 1, sleep_ms: 1_500 }).await
    });
    while f.handled.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let server = f.service.server().clone();
    let stopping = tokio::spawn(async move { server.stop().await });
    use futures::StreamExt;
    let event = watcher.next().await.unwrap().unwrap();
    assert_eq!(event.kind, registry::EventKind::Delete);
    assert!(!in_flight.is_finished(), "the node was deregistered while the call was still in flight");
    in_flight.await.unwrap().unwrap();
    stopping.await.unwrap().unwrap();
    assert_eq!(registry.get_service("users").await.unwrap_err().code, Code::NotFound);
}

#[tokio::test]
async fn a_body_that_does_not_decode_is_a_bad_request_and_the_server_serves_on() {
    let f = users(|b| b).await;
    let client = f.service.client();
    let garbage = Bytes::from_static(b"\xff\xff\xff\xff\xff\x01");
    let err = client.call_bytes(Call::new("users", "Users.Get"), garbage).await.unwrap_err();
    assert_eq!(err.code, Code::BadRequest, "{err}");
    assert!(err.detail.contains("GetUser"), "the error names the expected type: {err}");
    let json = client
        .call_bytes(Call::new("users", "Users.Get").content_type("application/json"), Bytes::from_static(b"{\"id\": "))
        .await
        .unwrap_err();
    assert_eq!(json.code, Code::BadRequest, "{json}");
    let ok: Response<User> = client.call(Call::new("users", "Users.Get"), &get(2)).await.unwrap();
    assert_eq!(ok.get_ref().name, "grace");
    f.service.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_endpoints_and_content_types_get_clear_errors() {
    let f = users(|b| b).await;
    let client = f.service.client();
    let missing = client.call::<_, User>(Call::new("users", "Users.Delete"), &get(1)).await.unwrap_err();
    assert_eq!(missing.code, Code::NotFound);
    assert!(missing.detail.contains("Users.Delete"), "{missing}");
    let xml = client
        .call_bytes(Call::new("users", "Users.Get").content_type("application/xml"), Bytes::from_static(b"<id>1</id>"))
        .await
        .unwrap_err();
    assert_eq!(xml.code, Code::UnsupportedMediaType);
    assert_eq!(xml.code.http_status(), 415);
    let nobody = client.call::<_, User>(Call::new("nobody", "Nobody.Home"), &get(1)).await.unwrap_err();
    assert_eq!(nobody.code, Code::Unavailable, "{nobody}");
    f.service.stop().await.unwrap();
}

#[tokio::test]
async fn the_server_answers_in_the_content_type_it_was_called_with() {
    let f = users(|b| b).await;
    let reply = f
        .service
        .client()
        .call_bytes(
            Call::new("users", "Users.Get").content_type("application/json"),
            Bytes::from_static(br#"{"id":1,"sleep_ms":0}"#),
        )
        .await
        .unwrap();
    assert_eq!(reply.body, Bytes::from_static(br#"{"id":1,"name":"ada"}"#));
    f.service.stop().await.unwrap();
}

#[tokio::test]
async fn metadata_travels_to_the_handler_and_back() {
    let f = users(|b| b).await;
    let reply: Response<User> =
        f.service.client().call(Call::new("users", "Users.Get").metadata("X-User", "root"), &get(1)).await.unwrap();
    assert_eq!(reply.metadata().get("x-served-for"), Some("root"));
    f.service.stop().await.unwrap();
}

#[tokio::test]
async fn a_panicking_handler_is_an_internal_error_and_the_server_serves_on() {
    let f = users(|b| b).await;
    let client = f.service.client();
    let err = client.call::<_, User>(Call::new("users", "Users.Get"), &get(13)).await.unwrap_err();
    assert_eq!(err.code, Code::Internal, "{err}");
    assert!(client.call::<_, User>(Call::new("users", "Users.Get"), &get(1)).await.is_ok());
    f.service.stop().await.unwrap();
}

#[tokio::test]
async fn non_retryable_errors_run_the_handler_once() {
    let f = users(|b| b.client(|c| c.retries(3))).await;
    let err = f.service.client().call::<_, User>(Call::new("users", "Users.Get"), &get(99)).await.unwrap_err();
    assert_eq!(err.code, Code::NotFound);
    assert_eq!(f.handled.load(Ordering::SeqCst), 1);
    f.service.stop().await.unwrap();
}

#[tokio::test]
async fn retries_move_past_a_dead_node() {
    let registry = Arc::new(MemoryRegistry::new());
    let f = users(|b| b.registry(registry.clone()).client(|c| c.retries(2))).await;
    let dead = registry::ServiceRecord {
        name: "users".into(),
        version: "1.2.0".into(),
        nodes: vec![registry::Node { id: "dead".into(), address: "memory:dead".into(), ..Default::default() }],
        ..Default::default()
    };
    registry.register(&dead, None).await.unwrap();
    for _ in 0..20 {
        let reply: Response<User> = f.service.client().call(Call::new("users", "Users.Get"), &get(1)).await.unwrap();
        assert_eq!(reply.get_ref().id, 1);
    }
    assert_eq!(f.handled.load(Ordering::SeqCst), 20, "each call ran the handler once");
    f.service.stop().await.unwrap();
}

#[tokio::test]
async fn calling_an_address_nobody_listens_on_is_unavailable_after_retries() {
    let client = Client::builder().retries(2).build();
    let started = tokio::time::Instant::now();
    let err = client.call::<_, User>(Call::new("users", "Users.Get").address("memory:404"), &get(1)).await.unwrap_err();
    assert_eq!(err.code, Code::Unavailable);
    assert!(started.elapsed() >= Duration::from_millis(50), "two retries backed off");
}

#[tokio::test]
async fn streams_carry_many_messages_both_ways() {
    let service = Service::builder("counter").build();
    service.server().handle_stream(
        "Counter.Double",
        |ctx: Context, mut stream: ServerStream<UserCreated, UserCreated>| async move {
            ctx.set_reply_metadata("x-stream", "doubling");
            while let Some(n) = stream.recv().await? {
                stream.send(&UserCreated { id: n.id * 2 }).await?;
            }
            Ok(())
        },
    );
    service.server().handle_stream(
        "Counter.Countdown",
        |_ctx, mut stream: ServerStream<UserCreated, UserCreated>| async move {
            let from = stream.recv().await?.map_or(0, |n| n.id);
            for id in (0..from).rev() {
                stream.send(&UserCreated { id }).await?;
            }
            Err(Error::new(Code::Conflict, "liftoff"))
        },
    );
    service.start().await.unwrap();
    let mut doubling =
        service.client().stream::<UserCreated, UserCreated>(Call::new("counter", "Counter.Double")).await.unwrap();
    for id in 1..=10 {
        doubling.send(&UserCreated { id }).await.unwrap();
        assert_eq!(doubling.recv().await.unwrap(), Some(UserCreated { id: id * 2 }));
    }
    assert_eq!(doubling.header().and_then(|h| h.get("x-stream")), Some("doubling"));
    doubling.close_send().await.unwrap();
    assert_eq!(doubling.recv().await.unwrap(), None);

    let mut countdown =
        service.client().stream::<UserCreated, UserCreated>(Call::new("counter", "Counter.Countdown")).await.unwrap();
    countdown.send(&UserCreated { id: 3 }).await.unwrap();
    countdown.close_send().await.unwrap();
    let mut got = Vec::new();
    let status = loop {
        match countdown.recv().await {
            Ok(Some(n)) => got.push(n.id),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    assert_eq!(got, [2, 1, 0]);
    let err = status.unwrap_err();
    assert_eq!((err.code, err.detail.as_str(), err.id.as_str()), (Code::Conflict, "liftoff", "counter"));
    service.stop().await.unwrap();
}

#[tokio::test]
async fn a_published_event_reaches_the_subscriber_with_metadata() {
    let service = Service::builder("audit").build();
    let (tx, mut rx) = mpsc::unbounded_channel();
    service.server().subscribe(
        "user.created",
        SubscribeOptions::default().queue("audit"),
        move |ctx: Context, event: UserCreated| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((event.id, ctx.metadata().get("x-origin").map(str::to_owned)));
                Ok(())
            }
        },
    );
    service.start().await.unwrap();
    let metadata: Metadata = [("x-origin", "signup")].into_iter().collect();
    service.client().publish_with("user.created", &UserCreated { id: 5 }, metadata).await.unwrap();
    let received = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await.unwrap().unwrap();
    assert_eq!(received, (5, Some("signup".to_owned())));
    service.stop().await.unwrap();
}

#[tokio::test]
async fn the_node_is_registered_again_before_its_ttl_lapses() {
    let registry = Arc::new(MemoryRegistry::new());
    let f = users(|b| {
        b.registry(registry.clone())
            .server(|s| s.register_ttl(Duration::from_millis(1_000)).register_interval(Duration::from_millis(200)))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let found = registry.get_service("users").await.unwrap();
    assert_eq!(found[0].nodes.len(), 1, "the renewed node outlived its TTL");
    assert_eq!(found[0].nodes[0].id, f.service.server().id());
    assert_eq!(found[0].endpoints[0].name, "Users.Get");
    assert_eq!(found[0].endpoints[0].request, "GetUser");
    f.service.stop().await.unwrap();
}

#[tokio::test]
async fn layers_wrap_calls_on_both_sides() {
    let seen_tenant = Arc::new(std::sync::Mutex::new(None));
    let seen = seen_tenant.clone();
    let f = users(move |b| {
        b.client(|c| {
            c.layer(TraceLayer::client()).layer(from_fn(|mut req: ClientRequest, next: Next<_, _>| async move {
                req.metadata.insert("x-tenant", "acme");
                next.run(req).await
            }))
        })
        .server(move |s| {
            s.layer(TraceLayer::server()).layer(from_fn(move |req: ServerRequest, next: Next<_, _>| {
                let seen = seen.clone();
                async move {
                    *seen.lock().unwrap() = req.context.metadata().get("x-tenant").map(str::to_owned);
                    next.run(req).await
                }
            }))
        })
    })
    .await;
    let _: Response<User> = f.service.client().call(Call::new("users", "Users.Get"), &get(1)).await.unwrap();
    assert_eq!(seen_tenant.lock().unwrap().as_deref(), Some("acme"));
    f.service.stop().await.unwrap();
}

#[tokio::test]
async fn a_handler_passes_its_deadline_and_metadata_down_the_chain() {
    let transport = Arc::new(MemoryTransport::new());
    let registry = Arc::new(MemoryRegistry::new());
    let mut f = users(|b| b.transport(transport.clone()).registry(registry.clone())).await;
    let front = Service::builder("front").transport(transport).registry(registry).build();
    let client = front.client().clone();
    front.server().handle("Front.Get", move |ctx: Context, req: GetUser| {
        let client = client.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            let user: Response<User> = client.call(Call::new("users", "Users.Get").context(&ctx), &req).await?;
            if let Some(served_for) = user.metadata().get("x-served-for") {
                ctx.set_reply_metadata("x-served-for", served_for);
            }
            Ok(user.into_inner())
        }
    });
    front.start().await.unwrap();
    let reply: Response<User> = front
        .client()
        .call(Call::new("front", "Front.Get").timeout(Duration::from_millis(300)).metadata("x-user", "chain"), &get(1))
        .await
        .unwrap();
    assert_eq!(reply.get_ref().name, "ada");
    assert_eq!(reply.metadata().get("x-served-for"), Some("chain"), "metadata reached the second hop");
    let remaining = f.remaining_ms.recv().await.unwrap();
    assert!(remaining <= 270, "the second hop got what was left of the first hop's 300 ms: {remaining} ms");
    front.stop().await.unwrap();
    f.service.stop().await.unwrap();
}

/// A registry that refuses to register, to show a failed start leaves nothing behind.
#[derive(Debug)]
struct RefusingRegistry;

#[async_trait]
impl Registry for RefusingRegistry {
    fn name(&self) -> &'static str {
        "refusing"
    }
    async fn register(&self, _: &registry::ServiceRecord, _: Option<Duration>) -> Result<(), Error> {
        Err(Error::unavailable("registry is down"))
    }
    async fn deregister(&self, _: &registry::ServiceRecord) -> Result<(), Error> {
        Ok(())
    }
    async fn get_service(&self, name: &str) -> Result<Vec<registry::ServiceRecord>, Error> {
        Err(Error::not_found(name.to_owned()))
    }
    async fn list_services(&self) -> Result<Vec<registry::ServiceRecord>, Error> {
        Ok(Vec::new())
    }
    async fn watch(&self, _: Option<&str>) -> Result<Watcher, Error> {
        Ok(Box::pin(futures::stream::pending()))
    }
}

#[tokio::test]
async fn a_failed_start_leaves_no_listener_behind() {
    let transport = Arc::new(MemoryTransport::new());
    let server = Server::builder("broken")
        .transport(transport.clone())
        .registry(Arc::new(RefusingRegistry))
        .address("memory:broken")
        .build();
    let err = server.start().await.unwrap_err();
    assert_eq!(err.code, Code::Unavailable);
    assert!(server.address().await.is_none());
    let dialled = transport.dial("memory:broken").await.expect_err("nothing listens after a failed start");
    assert_eq!(dialled.code, Code::Unavailable);
}
