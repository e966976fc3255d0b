//! The wire format: which headers carry what, how stream messages are framed, and how errors
//! travel.
//!
//! A call is `POST /{service}/{endpoint}`. A unary call's body is the encoded request as it is
//! (so `curl` can make one); its response body is the encoded reply, or on failure the core
//! error as JSON with the matching HTTP status. A streaming call (`micro-stream: 1`) frames
//! each message as `[kind: u8][length: u32 big-endian][payload]`; the response ends with a
//! status frame whose payload is empty on success or the error JSON.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use http_body_util::combinators::BoxBody;
use rmicro_core::Error;
use rmicro_core::metadata::Metadata;

/// The service called, when the path names only the endpoint.
pub(crate) const SERVICE: &str = "micro-service";
/// The caller's remaining time, in milliseconds.
pub(crate) const TIMEOUT: &str = "micro-timeout";
/// `1` on streaming calls.
pub(crate) const STREAM: &str = "micro-stream";
/// Set on errors the server raised before handing the call to a handler.
pub(crate) const REFUSED: &str = "micro-refused";

/// A framed message.
pub(crate) const MESSAGE: u8 = 0;
/// A framed final status.
pub(crate) const STATUS: u8 = 1;
const FRAME_HEADER: usize = 5;

/// Headers that describe the HTTP exchange, not the call, and so are not metadata.
fn is_transport_header(name: &str) -> bool {
    matches!(
        name,
        "content-type"
            | "content-length"
            | "host"
            | "te"
            | "connection"
            | "transfer-encoding"
            | "keep-alive"
            | "upgrade"
            | "accept"
            | "accept-encoding"
            | "user-agent"
            | "expect"
    ) || name.starts_with("micro-")
}

pub(crate) fn metadata_from(headers: &HeaderMap) -> Metadata {
    headers
        .iter()
        .filter(|(name, _)| !is_transport_header(name.as_str()))
        .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect()
}

/// Adds `metadata` as headers; a key or value HTTP cannot carry is a bad request.
pub(crate) fn insert_metadata(headers: &mut HeaderMap, metadata: &Metadata) -> Result<(), Error> {
    for (key, value) in metadata.iter() {
        let name = HeaderName::from_bytes(key.as_bytes())
            .map_err(|_| Error::bad_request(format!("metadata key {key:?} cannot be an HTTP header")))?;
        let value = HeaderValue::from_bytes(value.as_bytes())
            .map_err(|_| Error::bad_request(format!("metadata value of {key:?} cannot be an HTTP header value")))?;
        headers.append(name, value);
    }
    Ok(())
}

pub(crate) fn frame(kind: u8, payload: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(FRAME_HEADER + payload.len());
    buf.put_u8(kind);
    buf.put_u32(u32::try_from(payload.len()).unwrap_or(u32::MAX));
    buf.put_slice(payload);
    buf.freeze()
}

pub(crate) fn status_frame(status: &Result<(), Error>) -> Bytes {
    match status {
        Ok(()) => frame(STATUS, &[]),
        Err(e) => frame(STATUS, &e.to_json()),
    }
}

pub(crate) use rmicro_core::raw::too_large;

/// Splits a byte stream into frames, refusing frames over the size limit.
#[derive(Debug)]
pub(crate) struct Deframer {
    buf: BytesMut,
    max: usize,
}

impl Deframer {
    pub(crate) fn new(max: usize) -> Deframer {
        Deframer { buf: BytesMut::new(), max }
    }

    pub(crate) fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, if buffered.
    pub(crate) fn next(&mut self) -> Result<Option<(u8, Bytes)>, Error> {
        if self.buf.len() < FRAME_HEADER {
            return Ok(None);
        }
        let kind = self.buf[0];
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if kind != MESSAGE && kind != STATUS {
            return Err(Error::bad_request(format!("unknown frame kind {kind}")));
        }
        if len > self.max {
            return Err(too_large(len, self.max));
        }
        if self.buf.len() < FRAME_HEADER + len {
            return Ok(None);
        }
        self.buf.advance(FRAME_HEADER);
        Ok(Some((kind, self.buf.split_to(len).freeze())))
    }

    /// Whether bytes of an unfinished frame are left.
    pub(crate) fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }
}

pub(crate) type Body = BoxBody<Bytes, std::convert::Infallible>;

pub(crate) fn full(bytes: Bytes) -> Body {
    BoxBody::new(Full::new(bytes))
}

/// The HTTP answer to a failed call: the core error as JSON, with its HTTP status.
pub(crate) fn error_response(error: &Error, refused: bool) -> Response<Body> {
    let mut response = Response::new(full(Bytes::from(error.to_json())));
    *response.status_mut() =
        StatusCode::from_u16(error.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if refused {
        headers.insert(REFUSED, HeaderValue::from_static("1"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmicro_core::Code;

    #[test]
    fn frames_split_across_reads_are_reassembled() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&frame(MESSAGE, b"hello"));
        wire.extend_from_slice(&frame(STATUS, b""));
        let mut d = Deframer::new(1024);
        let mut frames = Vec::new();
        for byte in wire {
            d.push(&[byte]);
            while let Some(f) = d.next().unwrap() {
                frames.push(f);
            }
        }
        assert_eq!(frames, vec![(MESSAGE, Bytes::from_static(b"hello")), (STATUS, Bytes::new())]);
        assert!(!d.has_partial());
    }

    #[test]
    fn oversized_and_unknown_frames_are_refused() {
        let mut d = Deframer::new(4);
        d.push(&frame(MESSAGE, b"hello"));
        assert_eq!(d.next().unwrap_err().code, Code::PayloadTooLarge);
        let mut d = Deframer::new(4);
        d.push(&[9, 0, 0, 0, 0]);
        assert_eq!(d.next().unwrap_err().code, Code::BadRequest);
    }
}
