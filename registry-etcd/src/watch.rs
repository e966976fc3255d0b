//! A prefix watch that survives disconnects: on every (re)start it lists the prefix, reports
//! what changed since it last knew, and watches from the listed revision on.

use std::collections::HashMap;
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use futures::StreamExt;
use rmicro_core::Result;
use rmicro_core::registry::{Event, EventKind, Service, Watcher};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::etcd_error;

const RETRY: Duration = Duration::from_millis(500);
const BUFFER: usize = 256;

/// The nodes under the prefix, by key, and the revision they were read at.
async fn list(client: &mut Client, prefix: &str) -> Result<(HashMap<Vec<u8>, Service>, i64)> {
    let found =
        client.get(prefix, Some(GetOptions::new().with_prefix())).await.map_err(|e| etcd_error("listing nodes", e))?;
    let revision = found.header().map_or(0, |h| h.revision());
    let nodes = found
        .kvs()
        .iter()
        .filter_map(|kv| serde_json::from_slice::<Service>(kv.value()).ok().map(|s| (kv.key().to_vec(), s)))
        .collect();
    Ok((nodes, revision))
}

/// Starts watching `prefix`. The first listing happens before this returns, so every change
/// after the call is reported.
pub(crate) async fn start(mut client: Client, prefix: String) -> Result<Watcher> {
    let (known, revision) = list(&mut client, &prefix).await?;
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(run(client, prefix, known, revision, tx));
    Ok(ReceiverStream::new(rx).boxed())
}

async fn run(
    mut client: Client,
    prefix: String,
    mut known: HashMap<Vec<u8>, Service>,
    mut revision: i64,
    events: mpsc::Sender<Result<Event>>,
) {
    loop {
        let options = WatchOptions::new().with_prefix().with_prev_key().with_start_revision(revision + 1);
        match client.watch(prefix.clone(), Some(options)).await {
            Ok(mut stream) => loop {
                let response = tokio::select! {
                    _ = events.closed() => return,
                    response = stream.message() => response,
                };
                let response = match response {
                    Ok(Some(response)) => response,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(%prefix, error = %e, "etcd watch broke; resuming");
                        break;
                    }
                };
                if response.canceled() {
                    tracing::warn!(%prefix, reason = response.cancel_reason(), "etcd cancelled the watch; resuming");
                    break;
                }
                for event in response.events() {
                    let Some(kv) = event.kv() else { continue };
                    revision = revision.max(kv.mod_revision());
                    let change = match event.event_type() {
                        EventType::Put => match serde_json::from_slice::<Service>(kv.value()) {
                            Ok(service) => {
                                let kind =
                                    if known.contains_key(kv.key()) { EventKind::Update } else { EventKind::Create };
                                known.insert(kv.key().to_vec(), service.clone());
                                Some(Event { kind, service })
                            }
                            Err(_) => None,
                        },
                        EventType::Delete => {
                            let gone = known
                                .remove(kv.key())
                                .or_else(|| event.prev_kv().and_then(|p| serde_json::from_slice(p.value()).ok()));
                            gone.map(|service| Event { kind: EventKind::Delete, service })
                        }
                    };
                    if let Some(change) = change {
                        if events.send(Ok(change)).await.is_err() {
                            return;
                        }
                    }
                }
            },
            Err(e) => tracing::warn!(%prefix, error = %e, "cannot watch etcd; retrying"),
        }
        if !resync(&mut client, &prefix, &mut known, &mut revision, &events).await {
            return;
        }
    }
}

/// Lists the prefix again (retrying until etcd answers) and reports the difference from what
/// was known. `false` once nobody listens any more.
async fn resync(
    client: &mut Client,
    prefix: &str,
    known: &mut HashMap<Vec<u8>, Service>,
    revision: &mut i64,
    events: &mpsc::Sender<Result<Event>>,
) -> bool {
    let (now, listed_at) = loop {
        tokio::select! {
            _ = events.closed() => return false,
            _ = tokio::time::sleep(RETRY) => {}
        }
        match list(client, prefix).await {
            Ok(listed) => break listed,
            Err(e) => tracing::debug!(%prefix, error = %e, "etcd still unreachable"),
        }
    };
    let mut changes = Vec::new();
    for (key, service) in &now {
        match known.get(key) {
            None => changes.push(Event { kind: EventKind::Create, service: service.clone() }),
            Some(old) if old != service => changes.push(Event { kind: EventKind::Update, service: service.clone() }),
            Some(_) => {}
        }
    }
    for (key, service) in known.iter() {
        if !now.contains_key(key) {
            changes.push(Event { kind: EventKind::Delete, service: service.clone() });
        }
    }
    *known = now;
    *revision = listed_at;
    for change in changes {
        if events.send(Ok(change)).await.is_err() {
            return false;
        }
    }
    true
}
