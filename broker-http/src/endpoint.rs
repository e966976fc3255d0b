//! The subscriber side: an HTTP endpoint that hands each posted message to its subscription's
//! handler, redelivering locally while the handler fails or nacks.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rmicro_core::broker::{AckMode, Delivery, DeliveryHandler, Envelope};
use rmicro_core::metadata::Metadata;
use rmicro_core::raw::{handle_safely, settle_channel};
use rmicro_core::{Error, Result};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Prefix of the HTTP headers that carry message headers.
pub(crate) const HEADER_PREFIX: &str = "micro-h-";
/// The topic a message was published to.
pub(crate) const TOPIC: &str = "micro-topic";
/// The path messages are posted to: `/_rmicro/broker/{subscription}`.
pub(crate) const PATH: &str = "/_rmicro/broker/";
const MAX_BODY: usize = 16 * 1024 * 1024;

/// A subscription as the endpoint serves it.
#[derive(Clone)]
pub(crate) struct Subscriber {
    pub(crate) handler: Arc<dyn DeliveryHandler>,
    pub(crate) ack: AckMode,
}

pub(crate) type Subscribers = Arc<Mutex<HashMap<String, Subscriber>>>;

/// The running endpoint.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) address: String,
    task: JoinHandle<()>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) async fn serve(address: &str, subscribers: Subscribers, redeliveries: u32) -> Result<Endpoint> {
    let tcp = TcpListener::bind(address)
        .await
        .map_err(|e| Error::unavailable(format!("broker endpoint cannot listen on {address}: {e}")))?;
    let local = tcp.local_addr().map_err(|e| Error::internal(e.to_string()))?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = tcp.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let subscribers = subscribers.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| deliver(req, subscribers.clone(), redeliveries));
                let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(Endpoint { address: local.to_string(), task })
}

fn answer(status: StatusCode, error: Option<Error>) -> Response<Full<Bytes>> {
    let body = error.map(|e| Bytes::from(e.to_json())).unwrap_or_default();
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
}

async fn deliver(
    req: Request<Incoming>,
    subscribers: Subscribers,
    redeliveries: u32,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let id = req.uri().path().strip_prefix(PATH).unwrap_or_default().to_owned();
    let subscriber = subscribers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&id).cloned();
    let Some(subscriber) = subscriber else {
        return Ok(answer(StatusCode::NOT_FOUND, Some(Error::not_found(format!("no subscription {id} here")))));
    };
    let (parts, body) = req.into_parts();
    let mut headers = Metadata::new();
    for (name, value) in &parts.headers {
        if let Some(key) = name.as_str().strip_prefix(HEADER_PREFIX) {
            headers.insert(key, String::from_utf8_lossy(value.as_bytes()));
        }
    }
    let topic = parts.headers.get(TOPIC).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return Ok(answer(StatusCode::BAD_REQUEST, Some(Error::bad_request(format!("reading the message: {e}")))));
        }
    };
    let message = Envelope { headers, body };
    let mut last_error = None;
    for attempt in 1..=redeliveries + 1 {
        match handle_once(&subscriber, &topic, message.clone(), attempt).await {
            Ok(()) => return Ok(answer(StatusCode::OK, None)),
            Err(e) => {
                tracing::warn!(%topic, attempt, error = %e, "subscriber did not handle the message; redelivering");
                last_error = Some(e);
            }
        }
    }
    Ok(answer(StatusCode::INTERNAL_SERVER_ERROR, last_error))
}

/// Runs the handler once; `Ok` when the message was acknowledged (auto: the handler returned
/// `Ok`; manual: it called `ack`).
async fn handle_once(subscriber: &Subscriber, topic: &str, message: Envelope, attempt: u32) -> Result<()> {
    let (acker, settled) = settle_channel();
    let manual = (subscriber.ack == AckMode::Manual).then_some(acker);
    let outcome = handle_safely(&*subscriber.handler, Delivery::new(topic, message, attempt, manual)).await;
    match subscriber.ack {
        AckMode::Auto => outcome,
        AckMode::Manual => match settled.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::internal("the handler nacked the message")),
            Err(_) => Err(outcome.err().unwrap_or_else(|| Error::internal("the handler neither acked nor nacked"))),
        },
    }
}
