//! rmicro errors as gRPC statuses and back. The gRPC code and message follow the standard
//! mapping, so any gRPC peer understands them; the exact rmicro error also travels in the
//! `rmicro-error-bin` trailer, so an rmicro peer gets back precisely what was sent (415 and 400
//! are both INVALID_ARGUMENT in gRPC, for example).

use rmicro_core::{Code, Error};
use tonic::metadata::{BinaryMetadataValue, MetadataMap};

const ERROR_TRAILER: &str = "rmicro-error-bin";
/// Set on statuses the server returned before handing the call to a handler.
const REFUSED_TRAILER: &str = "rmicro-refused";

/// A status saying the call was refused before any handler saw it.
pub(crate) fn refused(error: &Error) -> tonic::Status {
    let mut status = to_status(error);
    status.metadata_mut().insert(REFUSED_TRAILER, tonic::metadata::MetadataValue::from_static("1"));
    status
}

pub(crate) fn to_status(error: &Error) -> tonic::Status {
    let mut metadata = MetadataMap::new();
    metadata.insert_bin(ERROR_TRAILER, BinaryMetadataValue::from_bytes(&error.to_json()));
    tonic::Status::with_metadata(tonic::Code::from_i32(error.code.grpc_status()), error.detail.clone(), metadata)
}

pub(crate) fn from_status(status: &tonic::Status) -> Error {
    let error = exact_or_mapped(status);
    if status.metadata().contains_key(REFUSED_TRAILER) { error.unsent() } else { error }
}

fn exact_or_mapped(status: &tonic::Status) -> Error {
    if let Some(exact) = status.metadata().get_bin(ERROR_TRAILER).and_then(|v| v.to_bytes().ok()) {
        return Error::from_json(&exact);
    }
    let message = status.message();
    let code = match status.code() {
        tonic::Code::OutOfRange | tonic::Code::ResourceExhausted if message.contains("message length too large") => {
            Code::PayloadTooLarge
        }
        tonic::Code::Unknown if message.contains("transport error") || message.contains("connection") => {
            Code::Unavailable
        }
        code => Code::from_grpc_status(code as i32),
    };
    Error::new(code, message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rmicro_errors_round_trip_exactly() {
        let error = Error::new(Code::UnsupportedMediaType, "no codec for text/csv").with_id("svc");
        let status = to_status(&error);
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(from_status(&status), error);
    }

    #[test]
    fn plain_grpc_statuses_map_by_code() {
        let status = tonic::Status::not_found("no such user");
        let error = from_status(&status);
        assert_eq!((error.code, error.detail.as_str()), (Code::NotFound, "no such user"));
    }
}
