//! Watching through blocking queries: each service's passing nodes with
//! `GET /v1/health/service/:name?passing=true&index=..&wait=..`, and, to learn of new services,
//! `GET /v1/catalog/services` the same way.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use http::Method;
use rmicro_core::Result;
use rmicro_core::raw::{changes, send_changes};
use rmicro_core::registry::{Event, ServiceRecord};
use tokio::sync::mpsc;

use crate::api::{Api, HealthEntry, record};

const RETRY: Duration = Duration::from_millis(500);

/// The passing nodes of `name`, by node id, and the index they were read at. With `index`
/// above zero, waits (up to `wait`) for the result to change first.
pub(crate) async fn passing(
    api: &Api,
    name: &str,
    index: u64,
    wait: Duration,
) -> Result<(HashMap<String, ServiceRecord>, u64)> {
    let path = if index == 0 {
        format!("/v1/health/service/{name}?passing=true")
    } else {
        format!("/v1/health/service/{name}?passing=true&index={index}&wait={}ms", wait.as_millis())
    };
    let answer = api.call(Method::GET, &path, None).await?;
    let entries: Vec<HealthEntry> = serde_json::from_slice(&answer.body)
        .map_err(|e| rmicro_core::Error::internal(format!("consul: {path}: unexpected answer: {e}")))?;
    let nodes = entries
        .iter()
        .filter_map(|entry| record(&entry.service))
        .filter_map(|service| service.nodes.first().map(|n| (n.id.clone(), service.clone())))
        .collect();
    Ok((nodes, answer.index))
}

/// Consul's rule for a returned index: it must grow; if it went backwards, start over.
fn next_index(previous: u64, returned: u64) -> u64 {
    if returned < previous { 0 } else { returned.max(1) }
}

/// Reports changes to the passing nodes of `name` from the state `known` read at `index`,
/// until nobody listens.
pub(crate) async fn service(
    api: Api,
    name: String,
    wait: Duration,
    events: mpsc::Sender<Result<Event>>,
    mut known: HashMap<String, ServiceRecord>,
    mut index: u64,
) {
    loop {
        let read = tokio::select! {
            _ = events.closed() => return,
            read = passing(&api, &name, index, wait) => read,
        };
        let (now, returned) = match read {
            Ok(read) => read,
            Err(e) => {
                tracing::warn!(service = %name, error = %e, "consul watch failed; retrying");
                tokio::time::sleep(RETRY).await;
                index = 0;
                continue;
            }
        };
        index = next_index(index, returned);
        let changes = changes(&known, &now, |node| node);
        known = now;
        if !send_changes(&events, changes).await {
            return;
        }
    }
}

/// The service names in the catalog and the index they were read at; with `index` above zero,
/// waits for a change first.
pub(crate) async fn catalog(api: &Api, index: u64, wait: Duration) -> Result<(HashSet<String>, u64)> {
    let path = if index == 0 {
        "/v1/catalog/services".to_owned()
    } else {
        format!("/v1/catalog/services?index={index}&wait={}ms", wait.as_millis())
    };
    let answer = api.call(Method::GET, &path, None).await?;
    let services: HashMap<String, Vec<String>> = serde_json::from_slice(&answer.body)
        .map_err(|e| rmicro_core::Error::internal(format!("consul: {path}: unexpected answer: {e}")))?;
    Ok((services.into_keys().collect(), answer.index))
}

/// Watches every service: the services in `initial` (with their nodes as already known), and
/// any that appear in the catalog later (their nodes reported as created).
pub(crate) async fn all(
    api: Api,
    wait: Duration,
    events: mpsc::Sender<Result<Event>>,
    initial: Vec<(String, HashMap<String, ServiceRecord>, u64)>,
    mut index: u64,
) {
    let mut watched = HashSet::new();
    for (name, known, at) in initial {
        watched.insert(name.clone());
        tokio::spawn(service(api.clone(), name, wait, events.clone(), known, at));
    }
    loop {
        let read = tokio::select! {
            _ = events.closed() => return,
            read = catalog(&api, index, wait) => read,
        };
        match read {
            Ok((names, returned)) => {
                index = next_index(index, returned);
                for name in names {
                    if watched.insert(name.clone()) {
                        tokio::spawn(service(api.clone(), name, wait, events.clone(), HashMap::new(), 0));
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "consul catalog watch failed; retrying");
                tokio::time::sleep(RETRY).await;
                index = 0;
            }
        }
    }
}
