use bytes::Bytes;

use super::{Codec, Message, no_form};
use crate::error::Result;

/// Opaque bodies (`application/octet-stream`), passed through untouched.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    fn content_type(&self) -> &'static str {
        "application/octet-stream"
    }

    fn encode(&self, msg: &dyn Message) -> Result<Bytes> {
        msg.to_raw().ok_or_else(|| no_form(self, msg))
    }

    fn decode(&self, body: Bytes, msg: &mut dyn Message) -> Result<()> {
        if msg.set_raw(body) { Ok(()) } else { Err(no_form(self, msg)) }
    }
}

/// Bytes sent as they are, for proxies and payloads rmicro should not interpret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Raw(pub Bytes);

impl Message for Raw {
    fn to_raw(&self) -> Option<Bytes> {
        Some(self.0.clone())
    }

    fn set_raw(&mut self, body: Bytes) -> bool {
        self.0 = body;
        true
    }
}
