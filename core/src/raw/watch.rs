//! Watching a registry: a watcher over a broadcast of events, for registries that keep their
//! events in a `tokio::sync::broadcast` channel.

use futures::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::registry::{Event, Watcher};

/// A watcher over a broadcast of every event, keeping those of `service` (all with `None`); a
/// lagging receiver yields an `Err` saying how many events it missed. For registries that keep
/// their events in a `tokio::sync::broadcast` channel.
pub fn broadcast_watcher(events: tokio::sync::broadcast::Receiver<Event>, service: Option<&str>) -> Watcher {
    let only = service.map(str::to_owned);
    BroadcastStream::new(events)
        .filter_map(move |item| {
            let item = match item {
                Ok(event) if only.as_ref().is_none_or(|name| *name == event.service.name) => Some(Ok(event)),
                Ok(_) => None,
                Err(BroadcastStreamRecvError::Lagged(missed)) => {
                    Some(Err(crate::Error::internal(format!("registry watch lagged and missed {missed} events"))))
                }
            };
            std::future::ready(item)
        })
        .boxed()
}
