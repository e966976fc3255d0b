//! An in-test Consul agent: the HTTP endpoints `rmicro-registry-consul` calls, behaving as
//! Consul's HTTP API documentation describes them.
//!
//! - `PUT /v1/agent/service/register`: `ID` (default `Name`), `Name` (required), `Tags`,
//!   `Address`, `Port`, `Meta`, one `Check` (or `Checks`) with `CheckID` (default
//!   `service:<ID>` for a single check), `TTL`, `Status` (default `critical`) and
//!   `DeregisterCriticalServiceAfter`. Registering an ID again replaces it.
//! - `PUT /v1/agent/service/deregister/:id`; `PUT /v1/agent/check/pass/:check_id`.
//! - A TTL check not passed within its TTL turns `critical`; a service critical for longer than
//!   its `DeregisterCriticalServiceAfter` is deregistered.
//! - `GET /v1/health/service/:service` (`passing` keeps entries whose checks all pass) and
//!   `GET /v1/catalog/services` (which lists `consul` itself), each with `X-Consul-Index`, and
//!   as blocking queries: with `index`, the request waits until the index moves past it or
//!   `wait` (default 5 minutes, at most 10) passes.
//! - With an ACL token set, requests without it (`X-Consul-Token` or `?token=`) get
//!   `403 Permission denied`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

struct Check {
    id: String,
    ttl: Option<Duration>,
    status: String,
    last_pass: Instant,
    critical_since: Option<Instant>,
    deregister_after: Option<Duration>,
}

struct Instance {
    service: Value,
    checks: Vec<Check>,
}

#[derive(Default)]
struct State {
    services: BTreeMap<String, Instance>,
}

struct Agent {
    state: Mutex<State>,
    index: watch::Sender<u64>,
    token: Option<String>,
}

impl Agent {
    fn bump(&self) {
        self.index.send_modify(|i| *i += 1);
    }

    fn index(&self) -> u64 {
        *self.index.borrow()
    }
}

/// A running fake agent; dropped, it stops.
#[derive(Debug)]
pub(crate) struct FakeConsul {
    pub(crate) address: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeConsul {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Consul's duration syntax: `10s`, `250ms`, `5m`, `1h`.
fn duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let n: f64 = number.parse().ok()?;
    let seconds = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

impl FakeConsul {
    pub(crate) async fn start(token: Option<&str>) -> FakeConsul {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let agent =
            Arc::new(Agent { state: Mutex::default(), index: watch::channel(1).0, token: token.map(str::to_owned) });
        let ticker = agent.clone();
        let task = tokio::spawn(async move {
            let ttl_checks = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    expire(&ticker);
                }
            });
            loop {
                let Ok((stream, _)) = listener.accept().await else { break };
                let agent = agent.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(agent.clone(), req));
                    let _ =
                        auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
                });
            }
            ttl_checks.abort();
        });
        FakeConsul { address, task }
    }
}

/// TTL checks not passed in time turn critical; services critical too long are removed.
fn expire(agent: &Agent) {
    let now = Instant::now();
    let mut changed = false;
    let mut state = agent.state.lock().unwrap();
    for instance in state.services.values_mut() {
        for check in &mut instance.checks {
            if let Some(ttl) = check.ttl {
                if check.status != "critical" && now.duration_since(check.last_pass) > ttl {
                    check.status = "critical".into();
                    check.critical_since = Some(now);
                    changed = true;
                }
            }
        }
    }
    let before = state.services.len();
    state.services.retain(|_, instance| {
        !instance.checks.iter().any(|c| match (c.critical_since, c.deregister_after) {
            (Some(since), Some(after)) => now.duration_since(since) > after,
            _ => false,
        })
    });
    changed |= state.services.len() != before;
    drop(state);
    if changed {
        agent.bump();
    }
}

fn reply(status: StatusCode, index: Option<u64>, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Some(index) = index {
        response.headers_mut().insert("X-Consul-Index", index.into());
        response.headers_mut().insert("Content-Type", http::HeaderValue::from_static("application/json"));
    }
    response
}

fn query(req: &Request<Incoming>) -> BTreeMap<String, String> {
    req.uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (p.to_owned(), String::new()),
        })
        .collect()
}

/// Waits, for a blocking query, until the index passes `index` or `wait` elapses.
async fn block(agent: &Agent, query: &BTreeMap<String, String>) {
    let Some(index) = query.get("index").and_then(|i| i.parse::<u64>().ok()) else { return };
    let wait =
        query.get("wait").and_then(|w| duration(w)).unwrap_or(Duration::from_secs(300)).min(Duration::from_secs(600));
    let mut changes = agent.index.subscribe();
    let _ = tokio::time::timeout(wait, changes.wait_for(|now| *now > index)).await;
}

async fn handle(agent: Arc<Agent>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let query = query(&req);
    if let Some(token) = &agent.token {
        let sent = req
            .headers()
            .get("X-Consul-Token")
            .and_then(|v| v.to_str().ok())
            .or(query.get("token").map(String::as_str));
        if sent != Some(token.as_str()) {
            return Ok(reply(StatusCode::FORBIDDEN, None, "Permission denied"));
        }
    }
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    Ok(match (method, segments.as_slice()) {
        (Method::PUT, ["v1", "agent", "service", "register"]) => register(&agent, &body),
        (Method::PUT, ["v1", "agent", "service", "deregister", id]) => {
            let removed = agent.state.lock().unwrap().services.remove(*id).is_some();
            if removed {
                agent.bump();
                reply(StatusCode::OK, None, "")
            } else {
                reply(StatusCode::NOT_FOUND, None, format!("Unknown service ID {id:?}"))
            }
        }
        (Method::PUT, ["v1", "agent", "check", "pass", rest @ ..]) => pass(&agent, &rest.join("/")),
        (Method::GET, ["v1", "health", "service", name]) => {
            block(&agent, &query).await;
            let passing_only = query.get("passing").is_some_and(|v| v.is_empty() || v == "true" || v == "1");
            health(&agent, name, passing_only)
        }
        (Method::GET, ["v1", "catalog", "services"]) => {
            block(&agent, &query).await;
            let state = agent.state.lock().unwrap();
            let mut services: BTreeMap<String, Vec<Value>> = BTreeMap::from([("consul".to_owned(), vec![])]);
            for instance in state.services.values() {
                let name = instance.service["Service"].as_str().unwrap_or_default().to_owned();
                let tags = instance.service["Tags"].as_array().cloned().unwrap_or_default();
                services.entry(name).or_default().extend(tags);
            }
            reply(StatusCode::OK, Some(agent.index()), serde_json::to_vec(&services).unwrap())
        }
        _ => reply(StatusCode::NOT_FOUND, None, format!("no handler for {path}")),
    })
}

fn register(agent: &Agent, body: &[u8]) -> Response<Full<Bytes>> {
    let Ok(definition) = serde_json::from_slice::<Value>(body) else {
        return reply(StatusCode::BAD_REQUEST, None, "Request decode failed");
    };
    let Some(name) = definition["Name"].as_str().filter(|n| !n.is_empty()) else {
        return reply(StatusCode::BAD_REQUEST, None, "Missing service name");
    };
    let id = definition["ID"].as_str().filter(|i| !i.is_empty()).unwrap_or(name).to_owned();
    let mut definitions: Vec<Value> = definition["Checks"].as_array().cloned().unwrap_or_default();
    if definition["Check"].is_object() {
        definitions.push(definition["Check"].clone());
    }
    let single = definitions.len() == 1;
    let mut checks = Vec::new();
    for (i, check) in definitions.iter().enumerate() {
        let default_id = if single { format!("service:{id}") } else { format!("service:{id}:{}", i + 1) };
        let ttl = match check["TTL"].as_str() {
            Some(text) => match duration(text) {
                Some(ttl) => Some(ttl),
                None => return reply(StatusCode::BAD_REQUEST, None, format!("Invalid TTL {text:?}")),
            },
            None => None,
        };
        let status = check["Status"].as_str().unwrap_or("critical").to_owned();
        checks.push(Check {
            id: check["CheckID"].as_str().map_or(default_id, str::to_owned),
            ttl,
            critical_since: (status == "critical").then(Instant::now),
            status,
            last_pass: Instant::now(),
            deregister_after: check["DeregisterCriticalServiceAfter"].as_str().and_then(duration),
        });
    }
    let service = json!({
        "ID": id,
        "Service": name,
        "Tags": definition["Tags"].as_array().cloned().unwrap_or_default(),
        "Address": definition["Address"].as_str().unwrap_or_default(),
        "Port": definition["Port"].as_u64().unwrap_or(0),
        "Meta": definition["Meta"].as_object().cloned().unwrap_or_default(),
    });
    agent.state.lock().unwrap().services.insert(id, Instance { service, checks });
    agent.bump();
    reply(StatusCode::OK, None, "")
}

fn pass(agent: &Agent, check_id: &str) -> Response<Full<Bytes>> {
    let mut state = agent.state.lock().unwrap();
    let Some(check) = state.services.values_mut().flat_map(|i| i.checks.iter_mut()).find(|c| c.id == check_id) else {
        return reply(StatusCode::NOT_FOUND, None, format!("Unknown check ID {check_id:?}"));
    };
    if check.ttl.is_none() {
        return reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            format!("CheckID {check_id:?} does not have associated TTL"),
        );
    }
    let changed = check.status != "passing";
    check.status = "passing".into();
    check.last_pass = Instant::now();
    check.critical_since = None;
    drop(state);
    if changed {
        agent.bump();
    }
    reply(StatusCode::OK, None, "")
}

fn health(agent: &Agent, name: &str, passing_only: bool) -> Response<Full<Bytes>> {
    let state = agent.state.lock().unwrap();
    let node = json!({"ID": "fake-node-id", "Node": "fake-agent", "Address": "127.0.0.1", "Datacenter": "dc1"});
    let serf = json!({"Node": "fake-agent", "CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "passing", "ServiceID": "", "ServiceName": ""});
    let entries: Vec<Value> = state
        .services
        .values()
        .filter(|i| i.service["Service"] == name)
        .filter(|i| !passing_only || i.checks.iter().all(|c| c.status == "passing"))
        .map(|i| {
            let mut checks = vec![serf.clone()];
            checks.extend(i.checks.iter().map(|c| {
                json!({"Node": "fake-agent", "CheckID": c.id, "Name": format!("Service '{name}' check"), "Status": c.status,
                       "ServiceID": i.service["ID"], "ServiceName": name})
            }));
            json!({"Node": node, "Service": i.service, "Checks": checks})
        })
        .collect();
    reply(StatusCode::OK, Some(agent.index()), serde_json::to_vec(&entries).unwrap())
}
