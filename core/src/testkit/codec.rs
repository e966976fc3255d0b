//! The codec suite. The factory returns an `Arc<dyn Codec>`. Each check tries three kinds of
//! message: a protobuf+serde type, a JSON-only type and raw bytes. A codec must round-trip every
//! kind it has a form for and refuse the others with `UnsupportedMediaType`.

use std::sync::Arc;

use bytes::Bytes;

use crate::codec::{Codec, Json, Message, Opaque, decode};
use crate::error::Code;

/// Expands to one `#[tokio::test]` per codec check, each calling `$factory().await` for the
/// `Arc<dyn Codec>` under test.
#[macro_export]
macro_rules! codec_conformance {
    ($factory:expr) => {
        $crate::__conformance_tests!(
            codec,
            $factory,
            names_its_content_type,
            round_trips_what_it_speaks,
            default_message_round_trips,
            undecodable_body_is_bad_request
        );
    };
}

/// A message with protobuf and JSON forms.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// A string.
    #[prost(string, tag = "1")]
    pub name: String,
    /// A number.
    #[prost(int64, tag = "2")]
    pub count: i64,
    /// Bytes.
    #[prost(bytes = "vec", tag = "3")]
    pub blob: Vec<u8>,
    /// A list.
    #[prost(string, repeated, tag = "4")]
    pub tags: Vec<String>,
}

/// A message with a JSON form only.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JsonOnly {
    /// A string.
    pub title: String,
    /// A flag.
    pub done: bool,
}

fn sample() -> Sample {
    Sample { name: "ünïcode ✓".into(), count: -42, blob: vec![0, 1, 255], tags: vec!["a".into(), "b".into()] }
}

/// Round-trips `msg`, or checks it is refused as unsupported; true when it round-tripped.
fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(codec: &dyn Codec, msg: &M) -> bool {
    match codec.encode(msg) {
        Ok(body) => {
            let back: M = decode(codec, body).unwrap();
            assert_eq!(&back, msg, "{} round trip", codec.content_type());
            true
        }
        Err(e) => {
            assert_eq!(e.code, Code::UnsupportedMediaType, "{e}");
            let refused = decode::<M>(codec, Bytes::from_static(b"{}")).unwrap_err();
            assert_eq!(refused.code, Code::UnsupportedMediaType, "{refused}");
            false
        }
    }
}

/// The codec names a `type/subtype` content type.
pub async fn names_its_content_type(codec: Arc<dyn Codec>) {
    let content_type = codec.content_type();
    assert!(content_type.contains('/') && !content_type.contains(' '), "{content_type:?}");
}

/// Every kind of message the codec has a form for comes back equal; the others are refused
/// with `UnsupportedMediaType`; at least one kind is spoken.
pub async fn round_trips_what_it_speaks(codec: Arc<dyn Codec>) {
    let spoken = [
        round_trip(&*codec, &sample()),
        round_trip(&*codec, &Json(JsonOnly { title: "write tests".into(), done: true })),
        round_trip(&*codec, &Opaque(Bytes::from_static(b"\x00raw\xff"))),
    ];
    assert!(spoken.contains(&true), "{} speaks none of the message kinds", codec.content_type());
}

/// An empty (default) message round-trips too.
pub async fn default_message_round_trips(codec: Arc<dyn Codec>) {
    round_trip(&*codec, &Sample::default());
    round_trip(&*codec, &Json(JsonOnly::default()));
    round_trip(&*codec, &Opaque::default());
}

/// A body that is not a valid encoding is a `BadRequest`, never a panic.
pub async fn undecodable_body_is_bad_request(codec: Arc<dyn Codec>) {
    let garbage = Bytes::from_static(b"\xff\xff\xff\xff\x0f{not: valid");
    for result in [
        decode::<Sample>(&*codec, garbage.clone()).map(|_| ()),
        decode::<Json<JsonOnly>>(&*codec, garbage.clone()).map(|_| ()),
    ] {
        if let Err(e) = result {
            assert!(matches!(e.code, Code::BadRequest | Code::UnsupportedMediaType), "{e}");
        } else {
            panic!("{} accepted garbage", codec.content_type());
        }
    }
}
