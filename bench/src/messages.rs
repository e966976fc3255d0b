//! The four payloads and the work each server does with them, shared by every peer so that all
//! of them move and compute the same bytes.

use bytes::Bytes;
use prost::Message;

/// The prost types and the plain tonic client and server.
#[allow(missing_docs, unreachable_pub, missing_debug_implementations, clippy::all)]
pub(crate) mod pb {
    include!(concat!(env!("OUT_DIR"), "/tonic/bench.rs"));
}

/// The same messages with rmicro's typed client and handler trait.
#[allow(missing_docs, unreachable_pub, missing_debug_implementations, clippy::all)]
pub(crate) mod rpb {
    include!(concat!(env!("OUT_DIR"), "/rmicro/bench.rs"));
}

/// What a call carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Payload {
    Empty,
    /// rpcx-benchmark's `BenchmarkMessage`, decoded and re-encoded by the server.
    Message,
    KiB1,
    KiB64,
}

impl Payload {
    pub(crate) const ALL: [Payload; 4] = [Payload::Empty, Payload::Message, Payload::KiB1, Payload::KiB64];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Payload::Empty => "empty",
            Payload::Message => "581B-msg",
            Payload::KiB1 => "1KiB",
            Payload::KiB64 => "64KiB",
        }
    }

    pub(crate) fn parse(name: &str) -> Option<Payload> {
        Payload::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The bytes of the `Echo` payload; `None` for the `Message` case.
    pub(crate) fn data_len(self) -> Option<usize> {
        match self {
            Payload::Empty => Some(0),
            Payload::Message => None,
            Payload::KiB1 => Some(1024),
            Payload::KiB64 => Some(64 * 1024),
        }
    }

    /// The request as the raw peers' clients hold it; they encode it on every call, as
    /// generated clients do.
    pub(crate) fn request(self) -> Request {
        match self.data_len() {
            Some(n) => Request::Payload(pb::Payload { data: vec![0xab; n] }),
            None => Request::Message(Box::new(benchmark_message())),
        }
    }
}

/// A request of either kind.
#[derive(Clone, Debug)]
pub(crate) enum Request {
    Message(Box<pb::BenchmarkMessage>),
    Payload(pb::Payload),
}

impl Request {
    pub(crate) fn is_message(&self) -> bool {
        matches!(self, Request::Message(_))
    }

    pub(crate) fn encoded_len(&self) -> usize {
        match self {
            Request::Message(m) => m.encoded_len(),
            Request::Payload(p) => p.encoded_len(),
        }
    }

    pub(crate) fn encode(&self, buf: &mut impl bytes::BufMut) {
        let encoded = match self {
            Request::Message(m) => m.encode(buf),
            Request::Payload(p) => p.encode(buf),
        };
        debug_assert!(encoded.is_ok(), "the buffer grows as needed");
    }

    pub(crate) fn to_bytes(&self) -> Bytes {
        let mut buf = Vec::with_capacity(self.encoded_len());
        self.encode(&mut buf);
        Bytes::from(buf)
    }
}

/// rpcx-benchmark's `prepareArgs`: every int field 100000, every bool true, every string the
/// same 18-character sentence.
pub(crate) fn benchmark_message() -> pb::BenchmarkMessage {
    let (s, i, b) = ("许多往事在眼前一幕一幕，变的那么模糊".to_owned(), 100_000, true);
    pb::BenchmarkMessage {
        field1: s.clone(),
        field9: s.clone(),
        field18: s.clone(),
        field80: b,
        field81: b,
        field2: i,
        field3: i,
        field280: i,
        field6: i,
        field22: i64::from(i),
        field4: s.clone(),
        field5: Vec::new(),
        field59: b,
        field7: s.clone(),
        field16: i,
        field130: i,
        field12: b,
        field17: b,
        field13: b,
        field14: b,
        field104: i,
        field100: i,
        field101: i,
        field102: s.clone(),
        field103: s.clone(),
        field29: i,
        field30: b,
        field60: i,
        field271: i,
        field272: i,
        field150: i,
        field23: i,
        field24: b,
        field25: i,
        field78: b,
        field67: i,
        field68: i,
        field128: i,
        field129: s,
        field131: i,
    }
}

/// What rpcx-benchmark's server does to the message.
pub(crate) fn answer_message(mut message: pb::BenchmarkMessage) -> pb::BenchmarkMessage {
    message.field1 = "OK".to_owned();
    message.field2 = 100;
    message
}

/// The server's work for the raw peers: decode, answer, re-encode.
pub(crate) fn serve_bytes(is_message: bool, request: &[u8]) -> Result<Bytes, prost::DecodeError> {
    Ok(Bytes::from(if is_message {
        answer_message(pb::BenchmarkMessage::decode(request)?).encode_to_vec()
    } else {
        pb::Payload::decode(request)?.encode_to_vec()
    }))
}

/// The client's check of a reply for the raw peers: it decodes as the expected message.
pub(crate) fn check_reply(is_message: bool, reply: &[u8]) -> Result<(), String> {
    let decoded = if is_message {
        pb::BenchmarkMessage::decode(reply).map(|m| m.field2 == 100)
    } else {
        pb::Payload::decode(reply).map(|_| true)
    };
    match decoded {
        Ok(true) => Ok(()),
        Ok(false) => Err("the server did not answer the message".to_owned()),
        Err(e) => Err(format!("the reply does not decode: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_benchmark_message_is_rpcx_sized() {
        assert_eq!(benchmark_message().encoded_len(), 581);
        let answered = serve_bytes(true, &Payload::Message.request().to_bytes()).unwrap();
        check_reply(true, &answered).unwrap();
        assert_eq!(Payload::KiB1.request().to_bytes().len(), 1024 + 3);
    }
}
