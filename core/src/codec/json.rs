use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Codec, Message, no_form, undecodable};
use crate::error::{Error, Result};

/// JSON bodies (`application/json`), via serde_json.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonCodec;

impl Codec for JsonCodec {
    fn content_type(&self) -> &'static str {
        "application/json"
    }

    fn encode(&self, msg: &dyn Message) -> Result<Bytes> {
        let value = msg.as_serialize().ok_or_else(|| no_form(self, msg))?;
        serde_json::to_vec(value)
            .map(Bytes::from)
            .map_err(|e| Error::internal(format!("encode {} as JSON: {e}", msg.type_name())))
    }

    fn decode(&self, body: Bytes, msg: &mut dyn Message) -> Result<()> {
        let mut json = serde_json::Deserializer::from_slice(&body);
        let result = msg.deserialize_from(&mut <dyn erased_serde::Deserializer>::erase(&mut json));
        match result {
            Some(Ok(())) => json.end().map_err(|e| undecodable(self, msg, e)),
            Some(Err(e)) => Err(undecodable(self, msg, e)),
            None => Err(no_form(self, msg)),
        }
    }
}

/// A serde type sent as JSON only, for messages with no protobuf form.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Json<T>(pub T);

impl<T> Message for Json<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn as_serialize(&self) -> Option<&dyn erased_serde::Serialize> {
        Some(&self.0)
    }

    fn deserialize_from(
        &mut self,
        de: &mut dyn erased_serde::Deserializer<'_>,
    ) -> Option<Result<(), erased_serde::Error>> {
        Some(erased_serde::deserialize::<T>(de).map(|v| self.0 = v))
    }

    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }
}
