//! The frames of a call on NATS. Each frame is one NATS message whose `micro-kind` header says
//! what it is:
//!
//! | kind | from | to | carries |
//! |---|---|---|---|
//! | `open` | client | node subject | service, endpoint, content type, timeout, metadata; with `micro-last`, the only request (a unary call in one message) |
//! | `msg` | either | `<node>.c.<call>` / the call's inbox | one message |
//! | `close` | client | `<node>.c.<call>` | no more requests |
//! | `cancel` | client | `<node>.c.<call>` | the caller gave up |
//! | `credit` | either | the other side | `micro-credit`: how many more messages may be sent |
//! | `header` | server | inbox | response metadata |
//! | `end` | server | inbox | the status: empty body for OK, else the error as JSON; with `micro-reply`, the only response and its metadata too |
//!
//! A unary call sent with `Connection::unary` skips these frames: it is an `open` message
//! without headers, answered by one message (the unary module).
//!
//! A call's id is the last segment of its reply subject (the caller's inbox for the call).
//! Metadata travels as `micro-md-<key>` headers. Each stream direction may have at most
//! `rmicro_core::raw::STREAM_WINDOW` messages unconsumed; the receiver returns credit as it
//! consumes them, and a grant never fills more than a window.

use std::time::Duration;

use async_nats::HeaderMap;
use rmicro_core::metadata::Metadata;

pub(crate) const KIND: &str = "micro-kind";
pub(crate) const SERVICE: &str = "micro-service";
pub(crate) const ENDPOINT: &str = "micro-endpoint";
pub(crate) const CONTENT_TYPE: &str = "micro-content-type";
pub(crate) const TIMEOUT: &str = "micro-timeout";
pub(crate) const STREAM: &str = "micro-stream";
pub(crate) const LAST: &str = "micro-last";
pub(crate) const REPLY: &str = "micro-reply";
pub(crate) const CREDIT: &str = "micro-credit";
/// On an `end` frame: the call was refused before any handler saw it.
pub(crate) const REFUSED: &str = "micro-refused";
const METADATA_PREFIX: &str = "micro-md-";

/// Where the id of the call whose replies go to `subject` (or whose frames go to
/// `<node>.c.<id>`) starts: after the subject's last `.`. Searched from the end, where the id is
/// short, rather than with a general search.
pub(crate) fn call_id_start(subject: &str) -> usize {
    subject.bytes().rposition(|b| b == b'.').map_or(0, |dot| dot + 1)
}

pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.as_str())
}

pub(crate) fn kind(kind: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(KIND, kind);
    headers
}

pub(crate) fn insert_metadata(headers: &mut HeaderMap, metadata: &Metadata) {
    for (key, value) in metadata.iter() {
        headers.insert(format!("{METADATA_PREFIX}{key}").as_str(), value);
    }
}

pub(crate) fn metadata_from(headers: &HeaderMap) -> Metadata {
    headers
        .iter()
        .filter_map(|(name, values)| {
            let key = name.to_string().to_ascii_lowercase();
            let key = key.strip_prefix(METADATA_PREFIX)?.to_owned();
            Some((key, values.first()?.to_string()))
        })
        .collect()
}

pub(crate) fn timeout_header(timeout: Duration) -> String {
    timeout.as_millis().max(1).to_string()
}

pub(crate) fn parse_timeout(value: &str) -> Option<Duration> {
    value.parse().ok().map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_calls_id_is_the_last_segment_of_its_subject() {
        for (subject, id) in [("_INBOX.a1.tok-7", "tok-7"), ("rmicro.node.n1.c.tok-7", "tok-7"), ("tok-7", "tok-7")] {
            assert_eq!(&subject[call_id_start(subject)..], id);
        }
    }

    #[test]
    fn metadata_round_trips_through_headers() {
        let metadata: Metadata = [("x-user", "ada"), ("trace", "t-1")].into_iter().collect();
        let mut headers = kind("open");
        insert_metadata(&mut headers, &metadata);
        assert_eq!(metadata_from(&headers), metadata);
        assert_eq!(header(&headers, KIND), Some("open"));
    }
}
