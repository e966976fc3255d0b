use bytes::Bytes;

use super::{Codec, Message, no_form, undecodable};
use crate::error::Result;

/// Protobuf bodies (`application/protobuf`), via prost.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProtobufCodec;

impl Codec for ProtobufCodec {
    fn content_type(&self) -> &'static str {
        "application/protobuf"
    }

    fn encode(&self, msg: &dyn Message) -> Result<Bytes> {
        msg.to_protobuf().map(Bytes::from).ok_or_else(|| no_form(self, msg))
    }

    fn decode(&self, body: Bytes, msg: &mut dyn Message) -> Result<()> {
        match msg.decode_protobuf(&body) {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(undecodable(self, msg, e)),
            None => Err(no_form(self, msg)),
        }
    }
}
