//! Codecs turn messages into bodies for a content type and back.
//!
//! A [`Message`] offers the forms it has (protobuf, serde, raw bytes); a [`Codec`] picks the one
//! it speaks. Types that derive both `prost::Message` and serde's traits get [`Message`] for free,
//! so any service can be called with protobuf or JSON. The server answers in the content type it
//! was called with; a content type no codec speaks is a [`Code::UnsupportedMediaType`] error.

mod json;
mod opaque;
mod protobuf;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use foldhash::HashMap;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Code, Error, Result};

pub use json::{Json, JsonCodec};
pub use opaque::{Opaque, OpaqueCodec};
pub use protobuf::ProtobufCodec;

/// The default content type of requests and published messages.
pub const DEFAULT_CONTENT_TYPE: &str = "application/protobuf";

/// A message body that can be encoded by one or more codecs.
///
/// Each method returns `None` when the message has no such form; codecs turn that into a
/// [`Code::UnsupportedMediaType`] error. Implemented for every `prost::Message + Serialize +
/// DeserializeOwned` type, for [`Opaque`] and for [`Json`].
pub trait Message: Send + Sync + 'static {
    /// The message's protobuf encoding.
    fn to_protobuf(&self) -> Option<Vec<u8>> {
        None
    }
    /// Replaces the message with one decoded from protobuf.
    fn decode_protobuf(&mut self, _body: &[u8]) -> Option<Result<(), prost::DecodeError>> {
        None
    }
    /// The message as something serde serializes.
    fn as_serialize(&self) -> Option<&dyn erased_serde::Serialize> {
        None
    }
    /// Replaces the message with one deserialized by serde.
    fn deserialize_from(
        &mut self,
        _de: &mut dyn erased_serde::Deserializer<'_>,
    ) -> Option<Result<(), erased_serde::Error>> {
        None
    }
    /// The message as opaque bytes.
    fn to_bytes(&self) -> Option<Bytes> {
        None
    }
    /// Replaces the message with opaque bytes; `false` when it has no raw form.
    fn set_bytes(&mut self, _body: Bytes) -> bool {
        false
    }
    /// The message's Rust type name, for errors and endpoint descriptions.
    fn type_name(&self) -> &'static str {
        std::any::type_name::<Self>()
    }
}

impl<T> Message for T
where
    T: prost::Message + Serialize + DeserializeOwned + Default + Send + Sync + 'static,
{
    fn to_protobuf(&self) -> Option<Vec<u8>> {
        Some(self.encode_to_vec())
    }
    fn decode_protobuf(&mut self, body: &[u8]) -> Option<Result<(), prost::DecodeError>> {
        // Decoded in place: a new message would be moved into `self` and the old one dropped.
        self.clear();
        Some(self.merge(body))
    }
    fn as_serialize(&self) -> Option<&dyn erased_serde::Serialize> {
        Some(self)
    }
    fn deserialize_from(
        &mut self,
        de: &mut dyn erased_serde::Deserializer<'_>,
    ) -> Option<Result<(), erased_serde::Error>> {
        Some(erased_serde::deserialize::<T>(de).map(|m| *self = m))
    }
}

/// Encodes and decodes message bodies of one content type.
pub trait Codec: Send + Sync + fmt::Debug + 'static {
    /// The content type this codec speaks, e.g. `application/json`.
    fn content_type(&self) -> &'static str;
    /// Encodes `msg` as a body.
    fn encode(&self, msg: &dyn Message) -> Result<Bytes>;
    /// Decodes `body` into `msg`, replacing its value.
    fn decode(&self, body: Bytes, msg: &mut dyn Message) -> Result<()>;
}

/// Decodes `body` into a new `M` with `codec`.
pub fn decode<M: Message + Default>(codec: &dyn Codec, body: Bytes) -> Result<M> {
    let mut msg = M::default();
    codec.decode(body, &mut msg)?;
    Ok(msg)
}

pub(crate) fn no_form(codec: &dyn Codec, msg: &dyn Message) -> Error {
    Error::new(Code::UnsupportedMediaType, format!("{} has no {} form", msg.type_name(), codec.content_type()))
}

pub(crate) fn undecodable(codec: &dyn Codec, msg: &dyn Message, why: impl fmt::Display) -> Error {
    Error::bad_request(format!("body does not decode as {} {}: {why}", codec.content_type(), msg.type_name()))
}

/// The codecs a client or server speaks, by content type. Cheap to clone: clones share the
/// table until one of them changes it.
#[derive(Clone, Debug)]
pub struct Codecs {
    by_type: Arc<HashMap<String, Arc<dyn Codec>>>,
    /// The codec of rmicro's default content type, which most calls use: found by comparing
    /// the name rather than hashing it.
    default: Option<Arc<dyn Codec>>,
}

impl Default for Codecs {
    /// Protobuf (also under `application/x-protobuf`, `application/proto` and gRPC's
    /// `application/grpc` and `application/grpc+proto`), JSON (also `application/grpc+json`)
    /// and raw bytes.
    fn default() -> Codecs {
        let protobuf: Arc<dyn Codec> = Arc::new(ProtobufCodec);
        let json: Arc<dyn Codec> = Arc::new(JsonCodec);
        let mut codecs = Codecs { by_type: Arc::default(), default: None };
        codecs.insert(protobuf.clone());
        for alias in ["application/x-protobuf", "application/proto", "application/grpc", "application/grpc+proto"] {
            codecs.insert_alias(alias, protobuf.clone());
        }
        codecs.insert_alias("application/grpc+json", json.clone());
        codecs.insert(json);
        codecs.insert(Arc::new(OpaqueCodec));
        codecs
    }
}

impl Codecs {
    /// Adds `codec` under its own content type, replacing any codec there.
    pub fn insert(&mut self, codec: Arc<dyn Codec>) {
        self.insert_alias(codec.content_type(), codec);
    }

    /// Adds `codec` under another content type name.
    pub fn insert_alias(&mut self, content_type: &str, codec: Arc<dyn Codec>) {
        let content_type = content_type.to_ascii_lowercase();
        if content_type == DEFAULT_CONTENT_TYPE {
            self.default = Some(codec.clone());
        }
        Arc::make_mut(&mut self.by_type).insert(content_type, codec);
    }

    /// The codec for `content_type` (parameters such as `; charset=utf-8` are ignored).
    pub fn get(&self, content_type: &str) -> Result<&Arc<dyn Codec>> {
        if let Some(codec) = self.default.as_ref().filter(|_| content_type == DEFAULT_CONTENT_TYPE) {
            return Ok(codec);
        }
        if let Some(codec) = self.by_type.get(content_type) {
            return Ok(codec);
        }
        let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        self.by_type.get(&essence).ok_or_else(|| {
            Error::new(Code::UnsupportedMediaType, format!("no codec for content type {content_type:?}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_content_type_is_415() {
        let err = Codecs::default().get("application/xml").unwrap_err();
        assert_eq!(err.code, Code::UnsupportedMediaType);
        assert_eq!(err.code.http_status(), 415);
    }

    #[test]
    fn a_codec_put_under_the_default_content_type_replaces_the_default() {
        #[derive(Debug)]
        struct Replacement;
        impl Codec for Replacement {
            fn content_type(&self) -> &'static str {
                "application/protobuf"
            }
            fn encode(&self, _: &dyn Message) -> Result<Bytes> {
                Ok(Bytes::from_static(b"replaced"))
            }
            fn decode(&self, _: Bytes, _: &mut dyn Message) -> Result<()> {
                Ok(())
            }
        }
        let mut codecs = Codecs::default();
        codecs.insert(Arc::new(Replacement));
        let encoded = codecs.get(DEFAULT_CONTENT_TYPE).unwrap().encode(&Opaque(Bytes::new())).unwrap();
        assert_eq!(&encoded[..], b"replaced");
        assert_eq!(
            codecs.get("Application/Protobuf; charset=utf-8").unwrap().encode(&Opaque(Bytes::new())).unwrap(),
            encoded
        );
    }

    #[test]
    fn parameters_are_ignored() {
        let codec = Codecs::default();
        assert_eq!(codec.get("Application/JSON; charset=utf-8").unwrap().content_type(), "application/json");
    }
}
