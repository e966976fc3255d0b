//! Catching up after a broken watch: a registry that re-lists its nodes on reconnect reports the
//! difference from what it knew as the events a watcher missed.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

use tokio::sync::mpsc;

use crate::error::Result;
use crate::registry::{Event, EventKind, ServiceRecord};

/// The events that turn `known` into `now`, two listings of nodes by key: `Create` for a key
/// only in `now`, `Update` for a value that differs, `Delete` (with the old record) for a key
/// only in `known`. `record` gives a value's service, the one node it is about.
///
/// Creates and updates come first, deletes last (in no particular order within each): a
/// watcher then learns of a replacement (a node that came back under a new id while the watch
/// was down) before it loses the node it replaces, so a service that was running all along
/// never looks, in between, as if it had no nodes.
pub fn changes<K: Eq + Hash, V: PartialEq, S: BuildHasher>(
    known: &HashMap<K, V, S>,
    now: &HashMap<K, V, S>,
    record: impl Fn(&V) -> &ServiceRecord,
) -> Vec<Event> {
    let event = |kind, value| Event { kind, service: record(value).clone() };
    let appeared = now.iter().filter_map(|(key, value)| match known.get(key) {
        None => Some(event(EventKind::Create, value)),
        Some(old) if old != value => Some(event(EventKind::Update, value)),
        Some(_) => None,
    });
    let gone = known.iter().filter(|(key, _)| !now.contains_key(*key)).map(|(_, old)| event(EventKind::Delete, old));
    appeared.chain(gone).collect()
}

/// Sends `changes` in order to a watcher; `false` once it is gone, so the watch can stop.
pub async fn send_changes(events: &mpsc::Sender<Result<Event>>, changes: Vec<Event>) -> bool {
    for change in changes {
        if events.send(Ok(change)).await.is_err() {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::registry::Node;

    /// A value that holds more than its record, as etcd's does (which write put it there).
    #[derive(Debug, PartialEq)]
    struct Seen {
        service: ServiceRecord,
        written: i64,
    }

    fn seen(node: &str, written: i64) -> (String, Seen) {
        let service = ServiceRecord {
            name: "greeter".to_owned(),
            nodes: vec![Node { id: node.to_owned(), address: format!("{node}:1"), ..Node::default() }],
            ..ServiceRecord::default()
        };
        (node.to_owned(), Seen { service, written })
    }

    fn summary(events: &[Event]) -> Vec<(EventKind, &ServiceRecord)> {
        events.iter().map(|e| (e.kind, &e.service)).collect()
    }

    #[test]
    fn creates_and_updates_come_before_deletes() {
        let known: HashMap<_, _> = [seen("kept", 1), seen("rewritten", 1), seen("gone", 1)].into();
        let now: HashMap<_, _> = [seen("kept", 1), seen("rewritten", 2), seen("new", 3)].into();
        let events = changes(&known, &now, |s| &s.service);
        let mut appeared = summary(&events[..2]);
        appeared.sort_by_key(|(_, service)| &service.nodes[0].id);
        assert_eq!(
            appeared,
            [(EventKind::Create, &now["new"].service), (EventKind::Update, &now["rewritten"].service)]
        );
        assert_eq!(summary(&events[2..]), [(EventKind::Delete, &known["gone"].service)]);
    }

    #[test]
    fn the_same_listing_changes_nothing() {
        let known: HashMap<_, _> = [seen("a", 1), seen("b", 2)].into();
        assert!(changes(&known, &known, |s| &s.service).is_empty());
    }

    #[tokio::test]
    async fn changes_are_sent_in_order_until_the_watcher_goes() {
        let known = HashMap::new();
        let now: HashMap<_, _> = [seen("a", 1)].into();
        let (events, mut watcher) = mpsc::channel(4);
        let mut sent = changes(&known, &now, |s| &s.service);
        sent.extend(changes(&now, &known, |s| &s.service));
        assert!(send_changes(&events, sent).await);
        let received = [watcher.recv().await.unwrap().unwrap(), watcher.recv().await.unwrap().unwrap()];
        assert_eq!(
            summary(&received),
            [(EventKind::Create, &now["a"].service), (EventKind::Delete, &now["a"].service)]
        );
        drop(watcher);
        assert!(!send_changes(&events, changes(&known, &now, |s| &s.service)).await);
    }
}
