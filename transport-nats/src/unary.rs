//! A unary call in one message each way, without NATS headers: an `open` message whose
//! payload is the call's head and then the request, answered by one message whose payload is
//! the status, the response metadata and then the response (or the error as JSON).
//!
//! Strings are a big-endian `u16` length and UTF-8 bytes; metadata is a `u16` count of key and
//! value strings.
//!
//! | call | answer |
//! |---|---|
//! | `u8` flags (1: a timeout follows) | `u8` status: 0 OK, 1 error, 2 refused before any handler ran |
//! | `u32` timeout in milliseconds, if flagged | metadata |
//! | call id, service, endpoint, content type | the response, or the error as JSON |
//! | metadata | |
//! | the request | |

use bytes::{Buf, BufMut, Bytes, BytesMut};
use rmicro_core::client::RawResponse;
use rmicro_core::metadata::Metadata;
use rmicro_core::transport::CallHead;
use rmicro_core::{Error, Result};

const HAS_TIMEOUT: u8 = 1;

const OK: u8 = 0;
const FAILED: u8 = 1;
const REFUSED: u8 = 2;

/// A unary call as the server reads it.
#[derive(Debug)]
pub(crate) struct UnaryCall {
    /// A slice of the message: it only names the call on the server, so it is not copied.
    pub(crate) call_id: Bytes,
    pub(crate) head: CallHead,
    pub(crate) request: Bytes,
}

fn put_str(buf: &mut BytesMut, s: &str) -> Result<()> {
    let len = u16::try_from(s.len())
        .map_err(|_| Error::bad_request(format!("{} bytes is too long for a call head", s.len())))?;
    buf.put_u16(len);
    buf.put_slice(s.as_bytes());
    Ok(())
}

fn put_metadata(buf: &mut BytesMut, metadata: &Metadata) -> Result<()> {
    let count = u16::try_from(metadata.len()).map_err(|_| Error::bad_request("too many metadata pairs"))?;
    buf.put_u16(count);
    for (key, value) in metadata.iter() {
        put_str(buf, key)?;
        put_str(buf, value)?;
    }
    Ok(())
}

fn metadata_len(metadata: &Metadata) -> usize {
    metadata.iter().map(|(k, v)| 4 + k.len() + v.len()).sum::<usize>() + 2
}

/// The payload of a unary call with id `call_id`.
pub(crate) fn encode_call(call_id: &str, head: &CallHead, request: &[u8]) -> Result<Bytes> {
    let strings = [call_id, &head.service, &head.endpoint, &head.content_type];
    let len = 5 + strings.iter().map(|s| 2 + s.len()).sum::<usize>() + metadata_len(&head.metadata) + request.len();
    let mut buf = BytesMut::with_capacity(len);
    match head.timeout {
        Some(timeout) => {
            buf.put_u8(HAS_TIMEOUT);
            buf.put_u32(timeout.as_millis().clamp(1, u128::from(u32::MAX)) as u32);
        }
        None => buf.put_u8(0),
    }
    for s in strings {
        put_str(&mut buf, s)?;
    }
    put_metadata(&mut buf, &head.metadata)?;
    buf.put_slice(request);
    Ok(buf.freeze())
}

/// The payload of the answer to a unary call: the response and its metadata, or the error
/// (`refused` when no handler saw the call, so the caller may send it elsewhere).
pub(crate) fn encode_answer(answer: std::result::Result<(&Metadata, &[u8]), (&Error, bool)>) -> Bytes {
    match answer {
        Ok((metadata, response)) => {
            let mut buf = BytesMut::with_capacity(1 + metadata_len(metadata) + response.len());
            buf.put_u8(OK);
            if let Err(e) = put_metadata(&mut buf, metadata) {
                return encode_answer(Err((&e, false)));
            }
            buf.put_slice(response);
            buf.freeze()
        }
        Err((error, refused)) => {
            let json = error.to_json();
            let mut buf = BytesMut::with_capacity(3 + json.len());
            buf.put_u8(if refused { REFUSED } else { FAILED });
            buf.put_u16(0);
            buf.put_slice(&json);
            buf.freeze()
        }
    }
}

/// Reads what `encode_*` wrote, refusing anything truncated or not UTF-8.
struct Reader {
    buf: Bytes,
}

impl Reader {
    fn u16(&mut self, what: &str) -> std::result::Result<u16, String> {
        if self.buf.remaining() < 2 {
            return Err(format!("the message ends inside its {what}"));
        }
        Ok(self.buf.get_u16())
    }

    /// A length-prefixed run of bytes, shared with the message rather than copied.
    fn bytes(&mut self, what: &str) -> std::result::Result<Bytes, String> {
        let len = usize::from(self.u16(what)?);
        if self.buf.remaining() < len {
            return Err(format!("the message ends inside its {what}"));
        }
        Ok(self.buf.split_to(len))
    }

    fn string(&mut self, what: &str) -> std::result::Result<String, String> {
        let bytes = self.bytes(what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("its {what} is not UTF-8"))
    }

    fn metadata(&mut self) -> std::result::Result<Metadata, String> {
        let count = self.u16("metadata")?;
        let mut metadata = Metadata::new();
        for _ in 0..count {
            let key = self.string("metadata key")?;
            metadata.insert(key, self.string("metadata value")?);
        }
        Ok(metadata)
    }
}

/// The call in `payload`, or why it cannot be read.
pub(crate) fn decode_call(payload: Bytes) -> std::result::Result<UnaryCall, String> {
    let mut reader = Reader { buf: payload };
    if !reader.buf.has_remaining() {
        return Err("the message is empty".to_owned());
    }
    let flags = reader.buf.get_u8();
    let timeout = if flags & HAS_TIMEOUT != 0 {
        if reader.buf.remaining() < 4 {
            return Err("the message ends inside its timeout".to_owned());
        }
        Some(std::time::Duration::from_millis(reader.buf.get_u32().into()))
    } else {
        None
    };
    let call_id = reader.bytes("call id")?;
    let head = CallHead {
        service: reader.string("service")?,
        endpoint: reader.string("endpoint")?,
        content_type: reader.string("content type")?,
        metadata: reader.metadata()?,
        timeout,
        stream: false,
    };
    Ok(UnaryCall { call_id, head, request: reader.buf })
}

/// The answer in `payload`: the response, or the error the server sent.
pub(crate) fn decode_answer(payload: Bytes) -> Result<RawResponse> {
    let malformed = |why: String| Error::internal(format!("the server's answer is malformed: {why}"));
    let mut reader = Reader { buf: payload };
    if !reader.buf.has_remaining() {
        return Err(malformed("it is empty".to_owned()));
    }
    let status = reader.buf.get_u8();
    let metadata = reader.metadata().map_err(malformed)?;
    match status {
        OK => Ok(RawResponse::new(metadata, reader.buf)),
        FAILED => Err(Error::from_json(&reader.buf)),
        REFUSED => Err(Error::from_json(&reader.buf).unsent()),
        other => Err(malformed(format!("unknown status {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rmicro_core::Code;

    use super::*;

    #[test]
    fn a_call_round_trips() {
        let head = CallHead {
            service: "greeter".into(),
            endpoint: "Greeter.Hello".into(),
            content_type: "application/protobuf".into(),
            metadata: [("x-user", "ada")].into_iter().collect(),
            timeout: Some(Duration::from_millis(1500)),
            stream: false,
        };
        let call = decode_call(encode_call("abc-1", &head, b"request").unwrap()).unwrap();
        assert_eq!((&call.call_id[..], &call.head, &call.request[..]), (&b"abc-1"[..], &head, &b"request"[..]));
    }

    #[test]
    fn answers_round_trip() {
        let metadata: Metadata = [("x-served-by", "n1")].into_iter().collect();
        let answer = decode_answer(encode_answer(Ok((&metadata, b"response")))).unwrap();
        assert_eq!(answer, RawResponse::new(metadata, Bytes::from_static(b"response")));
        let error = Error::not_found("no such user");
        let failed = decode_answer(encode_answer(Err((&error, false)))).unwrap_err();
        assert_eq!((failed.code, failed.is_unsent()), (Code::NotFound, false));
        let refused = decode_answer(encode_answer(Err((&error, true)))).unwrap_err();
        assert!(refused.is_unsent());
    }

    #[test]
    fn truncated_messages_are_refused_with_a_reason() {
        let head = CallHead { service: "greeter".into(), ..CallHead::default() };
        let whole = encode_call("abc-1", &head, b"").unwrap();
        for cut in 0..whole.len() {
            assert!(decode_call(whole.slice(..cut)).is_err(), "cut at {cut}");
        }
        assert_eq!(decode_answer(Bytes::from_static(&[7, 0, 0])).unwrap_err().code, Code::Internal);
    }
}
