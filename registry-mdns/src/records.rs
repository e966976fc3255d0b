//! Services as DNS-SD records: a PTR from `_micro._tcp.local` to one instance per node, and a
//! TXT record on the instance holding the service (with that one node) as JSON, split into
//! `r<i>=` strings of at most 240 bytes.

use std::collections::BTreeMap;
use std::time::Duration;

use rmicro_core::registry::ServiceRecord;
use simple_dns::rdata::{PTR, RData, TXT};
use simple_dns::{CLASS, CharacterString, Name, Packet, PacketFlag, QCLASS, Question, ResourceRecord, TYPE};

/// The DNS-SD service type rmicro nodes announce under.
pub(crate) const SERVICE_TYPE: &str = "_micro._tcp.local";
const CHUNK: usize = 240;

/// The instance name of a node: a stable hash of service, version and node id, so any id fits
/// in one DNS label.
pub(crate) fn instance_name(service: &ServiceRecord) -> String {
    let node = service.nodes.first().map(|n| n.id.as_str()).unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in service.name.bytes().chain([0]).chain(service.version.bytes()).chain([0]).chain(node.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("n-{hash:016x}.{SERVICE_TYPE}")
}

/// A query for every rmicro instance.
pub(crate) fn query() -> Option<Vec<u8>> {
    let mut packet = Packet::new_query(0);
    packet.questions.push(Question::new(
        Name::new(SERVICE_TYPE).ok()?,
        TYPE::PTR.into(),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    packet.build_bytes_vec().ok()
}

/// An announcement of `services` (one node each), valid for `ttl`; a TTL of zero says goodbye.
pub(crate) fn announcement<'a>(
    services: impl IntoIterator<Item = &'a (String, ServiceRecord)>,
    ttl: Duration,
) -> Option<Vec<u8>> {
    // Round up, so an answer never shortens what the announcement promised.
    let seconds = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    let ttl = u32::try_from(seconds).unwrap_or(u32::MAX);
    let mut encoded = Vec::new();
    for (instance, service) in services {
        encoded.push((instance.clone(), serde_json::to_vec(service).ok()?));
    }
    let mut packet = Packet::new_reply(0);
    packet.set_flags(PacketFlag::AUTHORITATIVE_ANSWER);
    for (instance, json) in &encoded {
        let instance_name = Name::new(instance).ok()?;
        let ptr = RData::PTR(PTR(instance_name.clone()));
        packet.answers.push(ResourceRecord::new(Name::new(SERVICE_TYPE).ok()?, CLASS::IN, ttl, ptr));
        let mut txt = TXT::new();
        for (i, chunk) in json.chunks(CHUNK).enumerate() {
            let mut string = format!("r{i}=").into_bytes();
            string.extend_from_slice(chunk);
            txt.add_char_string(CharacterString::new(&string).ok()?.into_owned());
        }
        packet.answers.push(ResourceRecord::new(instance_name, CLASS::IN, ttl, RData::TXT(txt)));
    }
    packet.build_bytes_vec().ok()
}

/// What a received packet says.
#[derive(Debug, Default)]
pub(crate) struct Received {
    /// It asks for rmicro instances.
    pub(crate) asks: bool,
    /// Instances announced (service, TTL); a zero TTL means the instance is gone.
    pub(crate) announced: Vec<(String, Option<ServiceRecord>, Duration)>,
}

pub(crate) fn parse(datagram: &[u8]) -> Option<Received> {
    let packet = Packet::parse(datagram).ok()?;
    let mut received = Received::default();
    let is_ours = |name: &Name<'_>| name.to_string().trim_end_matches('.').eq_ignore_ascii_case(SERVICE_TYPE);
    if !packet.has_flags(PacketFlag::RESPONSE) {
        received.asks = packet.questions.iter().any(|q| is_ours(&q.qname));
        return Some(received);
    }
    for record in packet.answers.iter().chain(packet.additional_records.iter()) {
        let RData::TXT(txt) = &record.rdata else { continue };
        let instance = record.name.to_string().trim_end_matches('.').to_owned();
        if !instance.to_ascii_lowercase().ends_with(&format!(".{SERVICE_TYPE}")) {
            continue;
        }
        let mut chunks = BTreeMap::new();
        for (key, value) in txt.iter_raw() {
            let index =
                std::str::from_utf8(key).ok().and_then(|k| k.strip_prefix('r')).and_then(|i| i.parse::<usize>().ok());
            if let (Some(index), Some(value)) = (index, value) {
                chunks.insert(index, value.to_vec());
            }
        }
        let json: Vec<u8> = chunks.into_values().flatten().collect();
        let service = serde_json::from_slice::<ServiceRecord>(&json).ok();
        received.announced.push((instance, service, Duration::from_secs(u64::from(record.ttl))));
    }
    Some(received)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmicro_core::registry::{Endpoint, Node};

    #[test]
    fn an_announcement_round_trips_a_large_service() {
        let service = ServiceRecord {
            name: "greeter".into(),
            version: "1.0.0".into(),
            metadata: [("team".to_owned(), "=equals=".to_owned())].into(),
            endpoints: (0..20)
                .map(|i| Endpoint {
                    name: format!("Greeter.Method{i}"),
                    request: "Req".into(),
                    response: "Resp".into(),
                    ..Endpoint::default()
                })
                .collect(),
            nodes: vec![Node { id: "greeter-1".into(), address: "127.0.0.1:8080".into(), ..Node::default() }],
        };
        let instance = instance_name(&service);
        let packet = announcement(&[(instance.clone(), service.clone())], Duration::from_secs(90)).unwrap();
        let received = parse(&packet).unwrap();
        assert!(!received.asks);
        assert_eq!(received.announced.len(), 1);
        let (name, decoded, ttl) = &received.announced[0];
        assert_eq!((name, decoded.as_ref(), *ttl), (&instance, Some(&service), Duration::from_secs(90)));
    }

    #[test]
    fn a_query_is_recognised_and_garbage_is_ignored() {
        assert!(parse(&query().unwrap()).unwrap().asks);
        assert!(parse(b"\x00\x01garbage").is_none());
    }
}
