//! Service governance in the client and server, on the in-memory transport with injected
//! faults: dead, failing, flaky and slow nodes. Time is Tokio's paused clock, so latencies are
//! exact and the tests do not depend on the machine's speed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmicro_core::client::FanoutReply;
use rmicro_core::prelude::*;
use rmicro_core::registry::{self, MemoryRegistry};
use rmicro_core::selector::{
    BreakerPolicy, CircuitState, ConsistentHash, Random, RegistrySelector, RoundRobin, Strategy,
};
use rmicro_core::transport::MemoryTransport;
use rmicro_core::wrapper::{AuthLayer, ConcurrencyLimitLayer, Identity, RateLimitLayer, TokenLayer};

#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
struct Work {
    #[prost(uint64, tag = "1")]
    id: u64,
}

#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
struct Done {
    #[prost(string, tag = "1")]
    node: String,
}

/// How a node behaves.
#[derive(Clone, Copy)]
enum Fault {
    /// Answers after this long.
    Healthy(Duration),
    /// Runs the handler, then fails with a retryable error.
    Failing,
    /// Fails the first n calls (after running the handler), then answers.
    Flaky(usize),
}

struct Node {
    id: String,
    calls: Arc<AtomicUsize>,
    per_request: Arc<Mutex<HashMap<u64, usize>>>,
    healthy: Arc<AtomicBool>,
    /// Held so the node is stopped only with the cluster.
    _server: Server,
}

struct Cluster {
    transport: Arc<MemoryTransport>,
    registry: Arc<MemoryRegistry>,
    nodes: Vec<Node>,
}

impl Cluster {
    async fn new(faults: &[Fault]) -> Cluster {
        let mut cluster = Cluster {
            transport: Arc::new(MemoryTransport::new()),
            registry: Arc::new(MemoryRegistry::new()),
            nodes: vec![],
        };
        for (i, fault) in faults.iter().enumerate() {
            cluster.add(&format!("node-{i}"), *fault, []).await;
        }
        cluster
    }

    async fn add(&mut self, id: &str, fault: Fault, layers: impl IntoIterator<Item = ServerLayer>) {
        let mut builder =
            Server::builder("svc").id(id).transport(self.transport.clone()).registry(self.registry.clone());
        for layer in layers {
            builder = match layer {
                ServerLayer::Auth(l) => builder.layer(l),
                ServerLayer::Concurrency(l) => builder.layer(l),
                ServerLayer::Rate(l) => builder.layer(l),
            };
        }
        let server = builder.build();
        let (calls, per_request, healthy) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(HashMap::new())), Arc::new(AtomicBool::new(true)));
        let (c, p, h, node) = (calls.clone(), per_request.clone(), healthy.clone(), id.to_owned());
        let handler = move |_ctx: Context, work: Work| {
            let (c, p, h, node) = (c.clone(), p.clone(), h.clone(), node.clone());
            async move {
                let n = c.fetch_add(1, Ordering::SeqCst) + 1;
                *p.lock().unwrap().entry(work.id).or_default() += 1;
                let fails = match fault {
                    Fault::Healthy(latency) => {
                        tokio::time::sleep(latency).await;
                        false
                    }
                    Fault::Failing => true,
                    Fault::Flaky(first) => n <= first,
                };
                if fails || !h.load(Ordering::SeqCst) {
                    return Err(Error::unavailable(format!("{node} is failing")));
                }
                Ok(Done { node })
            }
        };
        server.handle("Svc.Work", handler.clone()).handle("Svc.Admin", handler.clone()).handle("Svc.Health", handler);
        server.start().await.unwrap();
        self.nodes.push(Node { id: id.to_owned(), calls, per_request, healthy, _server: server });
    }

    /// A node the registry lists but nothing serves (it died without deregistering).
    async fn add_dead(&self, id: &str) {
        let dead = registry::ServiceRecord {
            name: "svc".into(),
            version: "latest".into(),
            nodes: vec![registry::Node { id: id.into(), address: format!("memory:{id}"), ..Default::default() }],
            ..Default::default()
        };
        self.registry.register(&dead, None).await.unwrap();
    }

    fn selector(&self, strategy: impl Strategy, breaker: BreakerPolicy) -> RegistrySelector {
        RegistrySelector::builder(self.registry.clone()).strategy(strategy).breaker(breaker).build()
    }

    fn client(&self, selector: &RegistrySelector) -> rmicro_core::client::ClientBuilder {
        Client::builder().transport(self.transport.clone()).selector(Arc::new(selector.clone()))
    }

    fn calls(&self, i: usize) -> usize {
        self.nodes[i].calls.load(Ordering::SeqCst)
    }

    fn total_calls(&self) -> usize {
        (0..self.nodes.len()).map(|i| self.calls(i)).sum()
    }
}

enum ServerLayer {
    Auth(AuthLayer),
    Concurrency(ConcurrencyLimitLayer),
    Rate(RateLimitLayer),
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn lenient() -> BreakerPolicy {
    BreakerPolicy::new(1_000, 1.0, 1_000, Duration::from_secs(10))
}

async fn work(client: &Client, call: Call, id: u64) -> Result<Done, Error> {
    client.call::<_, Done>(call, &Work { id }).await.map(Response::into_inner)
}

fn call() -> Call {
    Call::new("svc", "Svc.Work")
}

#[tokio::test(start_paused = true)]
async fn failover_avoids_a_dead_node_with_no_failed_call() {
    let cluster = Cluster::new(&[Fault::Healthy(ms(1)), Fault::Healthy(ms(1))]).await;
    cluster.add_dead("dead").await;
    let selector = cluster.selector(Random, BreakerPolicy::default());
    let client = cluster.client(&selector).fail_mode(FailMode::Failover(2)).build();
    let mut failed = 0;
    for id in 0..1_000 {
        failed += usize::from(work(&client, call(), id).await.is_err());
    }
    eprintln!(
        "failover: {failed} failed of 1000 calls; handler runs per node {:?}",
        (cluster.calls(0), cluster.calls(1))
    );
    assert_eq!(failed, 0, "failed calls out of 1000");
    assert_eq!(cluster.total_calls(), 1_000, "each call ran one handler");
    assert_eq!(selector.circuit("svc", "dead"), CircuitState::Open, "the dead node was ejected");
}

#[tokio::test(start_paused = true)]
async fn failfast_surfaces_the_first_error() {
    let cluster = Cluster::new(&[Fault::Failing, Fault::Healthy(ms(1))]).await;
    let client = cluster.client(&cluster.selector(RoundRobin::new(), lenient())).fail_mode(FailMode::Failfast).build();
    let results: Vec<bool> = {
        let mut results = Vec::new();
        for id in 0..6 {
            results.push(work(&client, call().idempotent(), id).await.is_ok());
        }
        results
    };
    assert_eq!(results, [false, true, false, true, false, true], "every call to the failing node failed at once");
    assert_eq!((cluster.calls(0), cluster.calls(1)), (3, 3));
}

#[tokio::test(start_paused = true)]
async fn failtry_retries_the_same_node() {
    let cluster = Cluster::new(&[Fault::Flaky(2), Fault::Healthy(ms(1))]).await;
    let client =
        cluster.client(&cluster.selector(RoundRobin::new(), lenient())).fail_mode(FailMode::Failtry(3)).build();
    let done = work(&client, call().idempotent(), 1).await.unwrap();
    assert_eq!(done.node, "node-0");
    assert_eq!((cluster.calls(0), cluster.calls(1)), (3, 0), "two failures and a success, all on the first node");
}

#[tokio::test(start_paused = true)]
async fn failbackup_hedges_slow_calls_and_runs_no_handler_more_than_twice() {
    let cluster = Cluster::new(&[Fault::Healthy(ms(200)), Fault::Healthy(ms(1)), Fault::Healthy(ms(1))]).await;
    let client = cluster.client(&cluster.selector(Random, lenient())).fail_mode(FailMode::Failbackup(ms(10))).build();
    let mut latencies = Vec::new();
    for id in 0..200 {
        let started = tokio::time::Instant::now();
        work(&client, call().idempotent(), id).await.unwrap();
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100 - 1];
    let hedged_share = cluster.calls(0);
    eprintln!(
        "failbackup: p50 {:?}, p99 {p99:?}, max {:?}; slow node ran {hedged_share} handlers",
        latencies[100], latencies[199]
    );
    assert!(p99 < ms(20), "p99 {p99:?}");
    assert!(cluster.calls(0) > 0, "the slow node was tried");
    for node in &cluster.nodes {
        assert!(node.per_request.lock().unwrap().values().all(|&runs| runs <= 1), "{} ran a request twice", node.id);
    }
    let mut runs_per_call: HashMap<u64, usize> = HashMap::new();
    for node in &cluster.nodes {
        for (id, runs) in node.per_request.lock().unwrap().iter() {
            *runs_per_call.entry(*id).or_default() += runs;
        }
    }
    assert!(runs_per_call.values().all(|&n| n <= 2), "no call ran more than two handlers");
    assert!(runs_per_call.values().any(|&n| n == 2), "slow calls were hedged");
}

#[tokio::test(start_paused = true)]
async fn a_non_idempotent_call_is_never_executed_twice() {
    let cluster = Cluster::new(&[Fault::Failing, Fault::Failing]).await;
    let client = cluster.client(&cluster.selector(Random, lenient())).fail_mode(FailMode::Failover(3)).build();
    for id in 0..50 {
        let err = work(&client, call(), id).await.unwrap_err();
        assert_eq!(err.code, Code::Unavailable);
    }
    assert_eq!(cluster.total_calls(), 50, "each non-idempotent call reached one handler once");
    for id in 50..60 {
        work(&client, call().idempotent(), id).await.unwrap_err();
    }
    assert_eq!(cluster.total_calls(), 50 + 10 * 4, "idempotent calls were retried (4 attempts each)");
}

#[tokio::test(start_paused = true)]
async fn a_non_idempotent_call_is_retried_when_it_never_left_the_client() {
    let cluster = Cluster::new(&[Fault::Healthy(ms(1))]).await;
    cluster.add_dead("dead").await;
    let client =
        cluster.client(&cluster.selector(RoundRobin::new(), lenient())).fail_mode(FailMode::Failover(1)).build();
    for id in 0..20 {
        work(&client, call(), id).await.unwrap();
    }
    assert_eq!(cluster.calls(0), 20);
}

#[tokio::test(start_paused = true)]
async fn the_retry_budget_stops_a_retry_storm() {
    let cluster = Cluster::new(&[Fault::Failing]).await;
    let client = cluster
        .client(&cluster.selector(Random, lenient()))
        .fail_mode(FailMode::Failover(3))
        .retry_budget(Duration::from_secs(10), 1, 0.1)
        .build();
    for id in 0..200 {
        work(&client, call().idempotent(), id).await.unwrap_err();
    }
    let retries = cluster.total_calls() - 200;
    eprintln!("retry budget: {retries} retries for 200 failing calls (failover 3 would allow 600)");
    assert!(retries <= 200 / 10 + 10 + 1, "{retries} retries for 200 calls");
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_sends_nothing_while_open_probes_and_closes() {
    let cluster = Cluster::new(&[Fault::Healthy(ms(1)), Fault::Healthy(ms(1))]).await;
    cluster.nodes[1].healthy.store(false, Ordering::SeqCst);
    let selector = cluster.selector(RoundRobin::new(), BreakerPolicy::new(3, 1.0, 1_000, Duration::from_secs(5)));
    let client = cluster.client(&selector).fail_mode(FailMode::Failfast).build();
    for id in 0..20 {
        let _ = work(&client, call(), id).await;
    }
    assert_eq!(cluster.calls(1), 3, "three failures opened the circuit");
    assert_eq!(selector.circuit("svc", "node-1"), CircuitState::Open);
    for id in 20..40 {
        work(&client, call(), id).await.unwrap();
    }
    assert_eq!(cluster.calls(1), 3, "no traffic while open");

    cluster.nodes[1].healthy.store(true, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(selector.circuit("svc", "node-1"), CircuitState::HalfOpen);
    for id in 40..60 {
        work(&client, call(), id).await.unwrap();
    }
    assert_eq!(selector.circuit("svc", "node-1"), CircuitState::Closed, "the probe succeeded");
    assert!(cluster.calls(1) >= 3 + 9, "the recovered node takes its share again: {}", cluster.calls(1));
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_keeps_the_circuit_open() {
    let cluster = Cluster::new(&[Fault::Healthy(ms(1)), Fault::Failing]).await;
    let selector = cluster.selector(RoundRobin::new(), BreakerPolicy::new(2, 1.0, 1_000, Duration::from_secs(5)));
    let client = cluster.client(&selector).fail_mode(FailMode::Failfast).build();
    for id in 0..10 {
        let _ = work(&client, call(), id).await;
    }
    tokio::time::advance(Duration::from_secs(6)).await;
    for id in 10..20 {
        let _ = work(&client, call(), id).await;
    }
    assert_eq!(cluster.calls(1), 3, "two failures, then one failed probe");
    assert_eq!(selector.circuit("svc", "node-1"), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn consistent_hashing_sends_a_key_to_one_node() {
    let cluster = Cluster::new(&[Fault::Healthy(ms(1)), Fault::Healthy(ms(1)), Fault::Healthy(ms(1))]).await;
    let client = cluster.client(&cluster.selector(ConsistentHash::new(), lenient())).build();
    let mut nodes_per_key: HashMap<String, std::collections::HashSet<String>> = HashMap::new();
    for id in 0..300 {
        let key = format!("user-{}", id % 10);
        let done = work(&client, call().hash_key(key.clone()), id).await.unwrap();
        nodes_per_key.entry(key).or_default().insert(done.node);
    }
    assert!(nodes_per_key.values().all(|nodes| nodes.len() == 1), "{nodes_per_key:?}");
}

#[tokio::test(start_paused = true)]
async fn broadcast_needs_every_node_and_names_the_failures() {
    let cluster = Cluster::new(&[Fault::Healthy(ms(1)), Fault::Healthy(ms(1)), Fault::Healthy(ms(1))]).await;
    let client = cluster.client(&cluster.selector(Random, lenient())).build();
    let replies: Vec<FanoutReply<Done>> = client.broadcast(call(), &Work { id: 1 }).await.unwrap();
    let mut answered: Vec<String> = replies.into_iter().map(|r| r.response.into_inner().node).collect();
    answered.sort();
    assert_eq!(answered, ["node-0", "node-1", "node-2"]);

    cluster.nodes[2].healthy.store(false, Ordering::SeqCst);
    let err = client.broadcast::<_, Done>(call(), &Work { id: 2 }).await.unwrap_err();
    assert_eq!(err.code, Code::Unavailable);
    assert!(err.detail.contains("1 failed") && err.detail.contains("node-2"), "{err}");
    assert!(!err.detail.contains("node-0:"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn fork_returns_the_first_success() {
    let cluster = Cluster::new(&[Fault::Healthy(ms(300)), Fault::Failing, Fault::Healthy(ms(5))]).await;
    let client = cluster.client(&cluster.selector(Random, lenient())).build();
    let started = tokio::time::Instant::now();
    let reply: FanoutReply<Done> = client.fork(call(), &Work { id: 1 }).await.unwrap();
    assert_eq!(reply.response.into_inner().node, "node-2");
    assert!(started.elapsed() < ms(50), "did not wait for the slow node");

    cluster.nodes[0].healthy.store(false, Ordering::SeqCst);
    cluster.nodes[2].healthy.store(false, Ordering::SeqCst);
    let err = client.fork::<_, Done>(call(), &Work { id: 2 }).await.unwrap_err();
    assert!(err.detail.contains("3 failed"), "{err}");
}

fn verify(token: &str) -> Option<Identity> {
    match token {
        "alice-token" => Some(Identity::new("alice", ["admin"])),
        "bob-token" => Some(Identity::new("bob", Vec::<String>::new())),
        _ => None,
    }
}

#[tokio::test(start_paused = true)]
async fn calls_without_a_valid_token_are_unauthenticated() {
    let mut cluster = Cluster::new(&[]).await;
    let auth = AuthLayer::new(verify).public("Svc.Health").require_role("Svc.Admin", "admin");
    cluster.add("secure", Fault::Healthy(ms(1)), [ServerLayer::Auth(auth)]).await;
    let selector = cluster.selector(Random, lenient());
    let anonymous = cluster.client(&selector).build();
    let alice = cluster.client(&selector).layer(TokenLayer::bearer("alice-token")).build();
    let bob = cluster.client(&selector).layer(TokenLayer::bearer("bob-token")).build();
    let forger = cluster.client(&selector).layer(TokenLayer::bearer("forged")).build();

    assert_eq!(work(&anonymous, call(), 1).await.unwrap_err().code, Code::Unauthorized);
    assert_eq!(work(&forger, call(), 2).await.unwrap_err().code, Code::Unauthorized);
    assert!(work(&bob, call(), 3).await.is_ok());
    assert!(work(&anonymous, Call::new("svc", "Svc.Health"), 4).await.is_ok(), "public endpoint");
    let forbidden = work(&bob, Call::new("svc", "Svc.Admin"), 5).await.unwrap_err();
    assert_eq!((forbidden.code, forbidden.code.http_status()), (Code::Forbidden, 403));
    assert!(work(&alice, Call::new("svc", "Svc.Admin"), 6).await.is_ok());
    assert_eq!(cluster.total_calls(), 3, "refused calls never reached the handler");
}

#[tokio::test(start_paused = true)]
async fn a_full_server_sheds_load_with_a_retryable_error() {
    let mut cluster = Cluster::new(&[]).await;
    cluster.add("busy", Fault::Healthy(ms(100)), [ServerLayer::Concurrency(ConcurrencyLimitLayer::new(2))]).await;
    let client = cluster.client(&cluster.selector(Random, lenient())).fail_mode(FailMode::Failfast).build();
    let results = futures::future::join_all((0..3).map(|id| work(&client, call(), id))).await;
    let shed: Vec<&Error> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(shed.len(), 1, "two calls ran, the third was shed");
    assert_eq!(shed[0].code, Code::Unavailable);
    assert!(shed[0].is_retryable());
    assert!(work(&client, call(), 9).await.is_ok(), "capacity is back once calls finish");
}

#[tokio::test(start_paused = true)]
async fn a_rate_limited_server_refuses_calls_beyond_its_bucket() {
    let mut cluster = Cluster::new(&[]).await;
    let limit = RateLimitLayer::new(10, Duration::from_secs(1), 3);
    cluster.add("limited", Fault::Healthy(ms(0)), [ServerLayer::Rate(limit)]).await;
    let client = cluster.client(&cluster.selector(Random, lenient())).fail_mode(FailMode::Failfast).build();
    let mut outcomes = Vec::new();
    for id in 0..5 {
        outcomes.push(work(&client, call(), id).await.map_err(|e| e.code).map(|_| ()));
    }
    assert_eq!(outcomes, [Ok(()), Ok(()), Ok(()), Err(Code::TooManyRequests), Err(Code::TooManyRequests)]);
    tokio::time::advance(ms(150)).await;
    assert!(work(&client, call(), 9).await.is_ok(), "the bucket refills at 10 per second");
}
