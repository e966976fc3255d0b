//! How rmicro calls look on the gRPC wire: the method path, the timeout header, metadata, and a
//! codec that passes message bytes through (rmicro's own codecs encode them).

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use http::HeaderMap;
use rmicro_core::metadata::Metadata;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};

/// The content type rmicro uses for protobuf over gRPC.
pub(crate) const GRPC_PROTO: &str = "application/grpc+proto";

/// `/{service}.{Svc}/{Method}` for the rmicro service `service` and endpoint `Svc.Method`
/// (go-micro's mapping: the proto package is the service name).
pub(crate) fn method_path(service: &str, endpoint: &str) -> String {
    match endpoint.split_once('.') {
        Some((svc, method)) if service.is_empty() => format!("/{svc}/{method}"),
        Some((svc, method)) => format!("/{service}.{svc}/{method}"),
        None => format!("/{service}/{endpoint}"),
    }
}

/// The rmicro service and endpoint of a gRPC path: `/greeter.Greeter/Hello` is endpoint
/// `Greeter.Hello` of service `greeter`.
pub(crate) fn parse_path(path: &str) -> Option<(String, String)> {
    let (qualified, method) = path.strip_prefix('/')?.split_once('/')?;
    if method.is_empty() || method.contains('/') {
        return None;
    }
    let (package, svc) = qualified.rsplit_once('.').unwrap_or(("", qualified));
    Some((package.to_owned(), format!("{svc}.{method}")))
}

/// The gRPC `grpc-timeout` header value: up to 8 digits and a unit (H, M, S, m, u, n).
pub(crate) fn parse_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The `grpc-timeout` header value for `timeout`. From 100 ms up it is whole milliseconds,
/// rounded down: what is left of a deadline then reads the same call after call, so HPACK sends
/// it as an index into its table instead of a new literal (and a new table entry) per call, at
/// a cost of under 1 % of the timeout. Shorter ones keep microseconds.
pub(crate) fn format_timeout(timeout: Duration) -> String {
    let (value, unit) = if timeout < Duration::from_millis(100) {
        (timeout.as_micros(), 'u')
    } else if timeout.as_millis() <= 99_999_999 {
        (timeout.as_millis(), 'm')
    } else {
        (u128::from(timeout.as_secs().min(99_999_999)), 'S')
    };
    let mut header = itoa::Buffer::new().format(value).to_owned();
    header.push(unit);
    header
}

/// Headers of the gRPC protocol itself, which are not call metadata.
fn is_protocol_header(key: &str) -> bool {
    key.starts_with("grpc-")
        || matches!(key, "te" | "content-type" | "user-agent" | "accept-encoding" | "rmicro-error-bin")
}

/// The call metadata among `headers`: the ASCII ones (binary `-bin` ones are left out) that
/// are not gRPC's own. Read from the headers in place, so a request's are not copied first.
pub(crate) fn metadata_from(headers: &HeaderMap) -> Metadata {
    headers
        .iter()
        .filter(|(key, _)| !key.as_str().ends_with("-bin") && !is_protocol_header(key.as_str()))
        .filter_map(|(key, value)| Some((key.as_str().to_owned(), value.to_str().ok()?.to_owned())))
        .collect()
}

/// Copies `metadata` into `map`, leaving out what gRPC metadata cannot carry (non-ASCII values,
/// invalid keys) with a warning.
pub(crate) fn insert_metadata(map: &mut MetadataMap, metadata: &Metadata) {
    for (key, value) in metadata.iter() {
        match (key.parse::<AsciiMetadataKey>(), value.parse::<AsciiMetadataValue>()) {
            (Ok(key), Ok(value)) => {
                map.insert(key, value);
            }
            _ => tracing::warn!(key, "metadata entry cannot travel as gRPC metadata; dropped"),
        }
    }
}

/// Passes encoded messages through untouched.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PassThroughCodec;

impl Codec for PassThroughCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = PassThroughCodec;
    type Decoder = PassThroughCodec;

    fn encoder(&mut self) -> PassThroughCodec {
        PassThroughCodec
    }

    fn decoder(&mut self) -> PassThroughCodec {
        PassThroughCodec
    }
}

impl Encoder for PassThroughCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for PassThroughCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_both_ways() {
        assert_eq!(method_path("greeter", "Greeter.Hello"), "/greeter.Greeter/Hello");
        assert_eq!(parse_path("/greeter.Greeter/Hello"), Some(("greeter".into(), "Greeter.Hello".into())));
        assert_eq!(
            parse_path("/helloworld.v1.Greeter/SayHello"),
            Some(("helloworld.v1".into(), "Greeter.SayHello".into()))
        );
        assert_eq!(parse_path("/Plain/Call"), Some((String::new(), "Plain.Call".into())));
        assert_eq!(parse_path("/nope"), None);
    }

    #[test]
    fn timeouts_are_sent_in_milliseconds_from_100_ms_and_read_back() {
        let left = Duration::from_secs(5) - Duration::from_micros(3);
        assert_eq!(format_timeout(left), "4999m");
        assert_eq!(format_timeout(Duration::from_micros(50_007)), "50007u");
        assert_eq!(format_timeout(Duration::from_secs(200_000)), "200000S");
        for timeout in [Duration::from_micros(1), Duration::from_millis(250), Duration::from_secs(3600)] {
            assert_eq!(parse_timeout(&format_timeout(timeout)), Some(timeout));
        }
    }

    #[test]
    fn timeouts_parse_in_every_unit() {
        assert_eq!(parse_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout("99x"), None);
        assert_eq!(parse_timeout(""), None);
    }
}
