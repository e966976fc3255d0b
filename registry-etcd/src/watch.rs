//! A prefix watch that survives disconnects: on every (re)start it lists the prefix, reports
//! what changed since it last knew, and watches from the listed revision on.

use std::collections::HashMap;
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use futures::StreamExt;
use rmicro_core::raw::{changes, send_changes};
use rmicro_core::registry::{Event, EventKind, ServiceRecord, Watcher};
use rmicro_core::{Error, Result};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::etcd_error;

const RETRY: Duration = Duration::from_millis(500);
const BUFFER: usize = 256;

/// A node as last seen: its record and which write (revision and lease) put it there, so a
/// node written again (re-registered after etcd lost it) counts as changed.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    service: ServiceRecord,
    written: (i64, i64),
}

/// The nodes under the prefix, by key, and the revision they were read at.
async fn list(client: &mut Client, prefix: &str, timeout: Duration) -> Result<(HashMap<Vec<u8>, Seen>, i64)> {
    let found = tokio::time::timeout(timeout, client.get(prefix, Some(GetOptions::new().with_prefix())))
        .await
        .map_err(|_| Error::unavailable(format!("etcd: listing nodes: no answer within {timeout:?}")))?
        .map_err(|e| etcd_error("listing nodes", e))?;
    let revision = found.header().map_or(0, |h| h.revision());
    let nodes = found
        .kvs()
        .iter()
        .filter_map(|kv| {
            let service = serde_json::from_slice::<ServiceRecord>(kv.value()).ok()?;
            Some((kv.key().to_vec(), Seen { service, written: (kv.mod_revision(), kv.lease()) }))
        })
        .collect();
    Ok((nodes, revision))
}

/// Starts watching `prefix`. The first listing happens before this returns, so every change
/// after the call is reported.
pub(crate) async fn start(mut client: Client, prefix: String, timeout: Duration) -> Result<Watcher> {
    let (known, revision) = list(&mut client, &prefix, timeout).await?;
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(run(client, prefix, known, revision, timeout, tx));
    Ok(ReceiverStream::new(rx).boxed())
}

async fn run(
    mut client: Client,
    prefix: String,
    mut known: HashMap<Vec<u8>, Seen>,
    mut revision: i64,
    timeout: Duration,
    events: mpsc::Sender<Result<Event>>,
) {
    loop {
        let options = WatchOptions::new().with_prefix().with_prev_key().with_start_revision(revision + 1);
        tracing::debug!(%prefix, from = revision + 1, "watching etcd");
        let opened = tokio::time::timeout(timeout, client.watch(prefix.clone(), Some(options))).await;
        match opened.unwrap_or_else(|_| Err(etcd_client::Error::WatchError("no answer".to_owned()))) {
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
                tracing::debug!(%prefix, events = response.events().len(), created = response.created(), "etcd watch response");
                for event in response.events() {
                    let Some(kv) = event.kv() else { continue };
                    revision = revision.max(kv.mod_revision());
                    let change = match event.event_type() {
                        EventType::Put => match serde_json::from_slice::<ServiceRecord>(kv.value()) {
                            Ok(service) => {
                                let kind =
                                    if known.contains_key(kv.key()) { EventKind::Update } else { EventKind::Create };
                                let seen = Seen { service: service.clone(), written: (kv.mod_revision(), kv.lease()) };
                                known.insert(kv.key().to_vec(), seen);
                                Some(Event { kind, service })
                            }
                            Err(_) => None,
                        },
                        EventType::Delete => {
                            let gone = known
                                .remove(kv.key())
                                .map(|seen| seen.service)
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
        if !resync(&mut client, &prefix, timeout, &mut known, &mut revision, &events).await {
            return;
        }
    }
}

/// Lists the prefix again (retrying until etcd answers) and reports the difference from what
/// was known. `false` once nobody listens any more.
async fn resync(
    client: &mut Client,
    prefix: &str,
    timeout: Duration,
    known: &mut HashMap<Vec<u8>, Seen>,
    revision: &mut i64,
    events: &mpsc::Sender<Result<Event>>,
) -> bool {
    let (now, listed_at) = loop {
        tokio::select! {
            _ = events.closed() => return false,
            _ = tokio::time::sleep(RETRY) => {}
        }
        match list(client, prefix, timeout).await {
            Ok(listed) => break listed,
            Err(e) => tracing::debug!(%prefix, error = %e, "etcd still unreachable"),
        }
    };
    let changes = changes(known, &now, |seen| &seen.service);
    tracing::debug!(%prefix, listed_at, changes = changes.len(), "re-listed after the watch broke");
    *known = now;
    *revision = listed_at;
    send_changes(events, changes).await
}
