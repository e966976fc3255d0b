use bytes::Bytes;

use super::{Codec, Message, no_form};
use crate::error::Result;

/// Opaque bodies (`application/octet-stream`), passed through untouched.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpaqueCodec;

impl Codec for OpaqueCodec {
    fn content_type(&self) -> &'static str {
        "application/octet-stream"
    }

    fn encode(&self, msg: &dyn Message) -> Result<Bytes> {
        msg.to_bytes().ok_or_else(|| no_form(self, msg))
    }

    fn decode(&self, body: Bytes, msg: &mut dyn Message) -> Result<()> {
        if msg.set_bytes(body) { Ok(()) } else { Err(no_form(self, msg)) }
    }
}

/// Bytes sent as they are, for proxies and payloads rmicro should not interpret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Opaque(pub Bytes);

impl Message for Opaque {
    fn to_bytes(&self) -> Option<Bytes> {
        Some(self.0.clone())
    }

    fn set_bytes(&mut self, body: Bytes) -> bool {
        self.0 = body;
        true
    }
}
