//! A unary call in one message each way: an `open` message without NATS headers whose payload
//! is the call's head and then the request, answered by one message. An OK answer without
//! metadata, the common case, is the response alone, without headers: nothing is copied to frame
//! it. Any other answer carries the header `micro-kind: answer` and a payload framed as below:
//! the status, the response metadata and then the response (or the error as JSON). The call's
//! id is the last segment of the message's reply subject, so it does not travel in the payload.
//!
//! Strings are a big-endian `u16` length and UTF-8 bytes; metadata is a `u16` count of key and
//! value strings.
//!
//! | call | answer |
//! |---|---|
//! | `u8` flags (1: a timeout follows; 2: a content type follows, else it is rmicro's default) | `u8` status: 0 OK, 1 error, 2 refused before any handler ran |
//! | `u32` timeout in milliseconds, if flagged | metadata |
//! | service, endpoint, content type if flagged | the response, or the error as JSON |
//! | metadata | |
//! | the request | |

use async_nats::HeaderMap;
use bytes::{Buf, Bytes};
use rmicro_core::codec::DEFAULT_CONTENT_TYPE;
use rmicro_core::metadata::Metadata;
use rmicro_core::transport::CallHead;
use rmicro_core::transport::EncodedResponse;
use rmicro_core::{Error, Result};

use crate::frame;

const HAS_TIMEOUT: u8 = 1;
const HAS_CONTENT_TYPE: u8 = 2;

const OK: u8 = 0;
const FAILED: u8 = 1;
const REFUSED: u8 = 2;

/// A unary call as the server reads it.
#[derive(Debug)]
pub(crate) struct UnaryCall {
    pub(crate) head: CallHead,
    pub(crate) request: Bytes,
}

/// Writes `s` with its length. Into a `Vec` rather than a `BytesMut`: with the capacity
/// reserved up front, its appends compile to plain copies.
fn put_str(buf: &mut Vec<u8>, s: &str) -> Result<()> {
    let len = u16::try_from(s.len())
        .map_err(|_| Error::bad_request(format!("{} bytes is too long for a call head", s.len())))?;
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
    Ok(())
}

fn put_metadata(buf: &mut Vec<u8>, metadata: &Metadata) -> Result<()> {
    let count = u16::try_from(metadata.len()).map_err(|_| Error::bad_request("too many metadata pairs"))?;
    buf.extend_from_slice(&count.to_be_bytes());
    for (key, value) in metadata.iter() {
        put_str(buf, key)?;
        put_str(buf, value)?;
    }
    Ok(())
}

fn metadata_len(metadata: &Metadata) -> usize {
    metadata.iter().map(|(k, v)| 4 + k.len() + v.len()).sum::<usize>() + 2
}

/// The payload of a unary call.
pub(crate) fn encode_call(head: &CallHead, request: &[u8]) -> Result<Bytes> {
    let content_type = (head.content_type != DEFAULT_CONTENT_TYPE).then_some(head.content_type.as_str());
    let strings = [Some(head.service.as_str()), Some(&head.endpoint), content_type];
    let strings_len = strings.iter().flatten().map(|s| 2 + s.len()).sum::<usize>();
    let mut buf = Vec::with_capacity(5 + strings_len + metadata_len(&head.metadata) + request.len());
    let flags = if head.timeout.is_some() { HAS_TIMEOUT } else { 0 };
    buf.push(flags | if content_type.is_some() { HAS_CONTENT_TYPE } else { 0 });
    if let Some(timeout) = head.timeout {
        let millis = timeout.as_millis().clamp(1, u128::from(u32::MAX)) as u32;
        buf.extend_from_slice(&millis.to_be_bytes());
    }
    for s in strings.into_iter().flatten() {
        put_str(&mut buf, s)?;
    }
    put_metadata(&mut buf, &head.metadata)?;
    buf.extend_from_slice(request);
    Ok(Bytes::from(buf))
}

/// The answer to a unary call as a NATS message's headers and payload: the response alone when
/// it is OK and has no metadata, else framed by [`encode_answer`].
pub(crate) fn answer(answer: std::result::Result<(&Metadata, Bytes), (&Error, bool)>) -> (Option<HeaderMap>, Bytes) {
    match answer {
        Ok((metadata, response)) if metadata.is_empty() => (None, response),
        Ok((metadata, response)) => (Some(frame::kind("answer")), encode_answer(Ok((metadata, &response)))),
        Err(error) => (Some(frame::kind("answer")), encode_answer(Err(error))),
    }
}

/// The payload of a framed answer to a unary call: the response and its metadata, or the error
/// (`refused` when no handler saw the call, so the caller may send it elsewhere).
fn encode_answer(answer: std::result::Result<(&Metadata, &[u8]), (&Error, bool)>) -> Bytes {
    match answer {
        Ok((metadata, response)) => {
            let mut buf = Vec::with_capacity(1 + metadata_len(metadata) + response.len());
            buf.push(OK);
            if let Err(e) = put_metadata(&mut buf, metadata) {
                return encode_answer(Err((&e, false)));
            }
            buf.extend_from_slice(response);
            Bytes::from(buf)
        }
        Err((error, refused)) => {
            let json = error.to_json();
            let mut buf = Vec::with_capacity(3 + json.len());
            buf.extend_from_slice(&[if refused { REFUSED } else { FAILED }, 0, 0]);
            buf.extend_from_slice(&json);
            Bytes::from(buf)
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

    /// A length-prefixed string, copied out of the message.
    fn string(&mut self, what: &str) -> std::result::Result<String, String> {
        let len = usize::from(self.u16(what)?);
        if self.buf.remaining() < len {
            return Err(format!("the message ends inside its {what}"));
        }
        let string = std::str::from_utf8(&self.buf[..len]).map_err(|_| format!("its {what} is not UTF-8"))?.to_owned();
        self.buf.advance(len);
        Ok(string)
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
    let service = reader.string("service")?;
    let endpoint = reader.string("endpoint")?;
    let content_type = match flags & HAS_CONTENT_TYPE {
        0 => DEFAULT_CONTENT_TYPE.to_owned(),
        _ => reader.string("content type")?,
    };
    let head = CallHead { service, endpoint, content_type, metadata: reader.metadata()?, timeout, stream: false };
    Ok(UnaryCall { head, request: reader.buf })
}

/// The answer a message carries: the payload itself when the message has no headers, else the
/// response or the error framed in the payload.
pub(crate) fn read_answer(headers: Option<&HeaderMap>, payload: Bytes) -> Result<EncodedResponse> {
    match headers {
        None => Ok(EncodedResponse::new(Metadata::new(), payload)),
        Some(_) => decode_answer(payload),
    }
}

/// The framed answer in `payload`: the response, or the error the server sent.
fn decode_answer(payload: Bytes) -> Result<EncodedResponse> {
    let malformed = |why: String| Error::internal(format!("the server's answer is malformed: {why}"));
    let mut reader = Reader { buf: payload };
    if !reader.buf.has_remaining() {
        return Err(malformed("it is empty".to_owned()));
    }
    let status = reader.buf.get_u8();
    let metadata = reader.metadata().map_err(malformed)?;
    match status {
        OK => Ok(EncodedResponse::new(metadata, reader.buf)),
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
        let call = decode_call(encode_call(&head, b"request").unwrap()).unwrap();
        assert_eq!((&call.head, &call.request[..]), (&head, &b"request"[..]));
    }

    #[test]
    fn the_default_content_type_is_left_out_of_a_call() {
        let head = |content_type: &str| CallHead {
            service: "greeter".into(),
            endpoint: "Greeter.Hello".into(),
            content_type: content_type.into(),
            ..CallHead::default()
        };
        let (default, json) = (head(DEFAULT_CONTENT_TYPE), head("application/json"));
        let (short, long) = (encode_call(&default, b"").unwrap(), encode_call(&json, b"").unwrap());
        assert_eq!(long.len() - short.len(), 2 + "application/json".len());
        assert_eq!(decode_call(short).unwrap().head, default);
        assert_eq!(decode_call(long).unwrap().head, json);
    }

    fn round_trip(sent: std::result::Result<(&Metadata, Bytes), (&Error, bool)>) -> Result<EncodedResponse> {
        let (headers, payload) = answer(sent);
        read_answer(headers.as_ref(), payload)
    }

    #[test]
    fn answers_round_trip() {
        let metadata: Metadata = [("x-served-by", "n1")].into_iter().collect();
        let answer = round_trip(Ok((&metadata, Bytes::from_static(b"response")))).unwrap();
        assert_eq!(answer, EncodedResponse::new(metadata, Bytes::from_static(b"response")));
        let error = Error::not_found("no such user");
        let failed = round_trip(Err((&error, false))).unwrap_err();
        assert_eq!((failed.code, failed.is_unsent()), (Code::NotFound, false));
        let refused = round_trip(Err((&error, true))).unwrap_err();
        assert!(refused.is_unsent());
    }

    #[test]
    fn an_ok_answer_without_metadata_is_the_response_alone() {
        let response = Bytes::from_static(b"response");
        let (headers, payload) = answer(Ok((&Metadata::new(), response.clone())));
        assert!(headers.is_none());
        assert_eq!(payload.as_ptr(), response.as_ptr(), "the response was copied");
        let (headers, _) = answer(Ok((&[("x-served-by", "n1")].into_iter().collect(), response)));
        assert_eq!(headers.as_ref().and_then(|h| frame::header(h, frame::KIND)), Some("answer"));
    }

    #[test]
    fn truncated_messages_are_refused_with_a_reason() {
        let head =
            CallHead { service: "greeter".into(), content_type: "application/json".into(), ..CallHead::default() };
        let whole = encode_call(&head, b"").unwrap();
        for cut in 0..whole.len() {
            assert!(decode_call(whole.slice(..cut)).is_err(), "cut at {cut}");
        }
        assert_eq!(decode_answer(Bytes::from_static(&[7, 0, 0])).unwrap_err().code, Code::Internal);
    }
}
