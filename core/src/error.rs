//! One error type for every layer, modelled on go-micro's `{id, code, detail, status}`.
//!
//! It crosses the wire as JSON (`{"id":"greeter","code":404,"detail":"...","status":"Not Found"}`),
//! so an error returned by a handler reaches the caller with the same code and detail.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What went wrong, in terms both HTTP and gRPC can express.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "u16", into = "u16")]
#[non_exhaustive]
pub enum Code {
    /// The request was malformed or its body did not decode.
    BadRequest,
    /// No valid credentials came with the request.
    Unauthorized,
    /// The credentials do not allow this call.
    Forbidden,
    /// The service, endpoint or resource does not exist.
    NotFound,
    /// The resource already exists or changed underneath the caller.
    Conflict,
    /// A message exceeded the configured size limit.
    PayloadTooLarge,
    /// The body's content type has no codec, or the message cannot be encoded in it.
    UnsupportedMediaType,
    /// A rate limit or quota refused the call.
    TooManyRequests,
    /// The caller went away or cancelled the call.
    Canceled,
    /// The server failed while handling the call.
    Internal,
    /// The server does not implement what was asked.
    NotImplemented,
    /// The peer cannot be reached or is shutting down; the call may be retried.
    Unavailable,
    /// The call's deadline passed before it completed.
    DeadlineExceeded,
    /// An error with no better description.
    Unknown,
}

impl Code {
    /// The HTTP status code for this error code (go-micro's wire value).
    pub fn http_status(self) -> u16 {
        match self {
            Code::BadRequest => 400,
            Code::Unauthorized => 401,
            Code::Forbidden => 403,
            Code::NotFound => 404,
            Code::Conflict => 409,
            Code::PayloadTooLarge => 413,
            Code::UnsupportedMediaType => 415,
            Code::TooManyRequests => 429,
            Code::Canceled => 499,
            Code::Internal | Code::Unknown => 500,
            Code::NotImplemented => 501,
            Code::Unavailable => 503,
            Code::DeadlineExceeded => 504,
        }
    }

    /// The gRPC status code (as in `google.rpc.Code`) for this error code.
    pub fn grpc_status(self) -> i32 {
        match self {
            Code::Canceled => 1,
            Code::Unknown => 2,
            Code::BadRequest | Code::UnsupportedMediaType => 3,
            Code::DeadlineExceeded => 4,
            Code::NotFound => 5,
            Code::Conflict => 6,
            Code::Forbidden => 7,
            Code::PayloadTooLarge | Code::TooManyRequests => 8,
            Code::NotImplemented => 12,
            Code::Internal => 13,
            Code::Unavailable => 14,
            Code::Unauthorized => 16,
        }
    }

    /// The code for a gRPC status code; codes rmicro has no name for become [`Code::Unknown`].
    pub fn from_grpc_status(status: i32) -> Code {
        match status {
            1 => Code::Canceled,
            3 | 11 => Code::BadRequest,
            4 => Code::DeadlineExceeded,
            5 => Code::NotFound,
            6 | 10 => Code::Conflict,
            7 => Code::Forbidden,
            8 => Code::TooManyRequests,
            9 => Code::BadRequest,
            12 => Code::NotImplemented,
            13 | 15 => Code::Internal,
            14 => Code::Unavailable,
            16 => Code::Unauthorized,
            _ => Code::Unknown,
        }
    }

    /// The standard reason phrase, sent as the error's `status` field.
    pub fn reason(self) -> &'static str {
        match self {
            Code::BadRequest => "Bad Request",
            Code::Unauthorized => "Unauthorized",
            Code::Forbidden => "Forbidden",
            Code::NotFound => "Not Found",
            Code::Conflict => "Conflict",
            Code::PayloadTooLarge => "Payload Too Large",
            Code::UnsupportedMediaType => "Unsupported Media Type",
            Code::TooManyRequests => "Too Many Requests",
            Code::Canceled => "Client Closed Request",
            Code::Internal => "Internal Server Error",
            Code::NotImplemented => "Not Implemented",
            Code::Unavailable => "Service Unavailable",
            Code::DeadlineExceeded => "Gateway Timeout",
            Code::Unknown => "Unknown",
        }
    }
}

impl From<u16> for Code {
    fn from(status: u16) -> Code {
        match status {
            400 => Code::BadRequest,
            401 => Code::Unauthorized,
            403 => Code::Forbidden,
            404 => Code::NotFound,
            408 | 504 => Code::DeadlineExceeded,
            409 => Code::Conflict,
            413 => Code::PayloadTooLarge,
            415 => Code::UnsupportedMediaType,
            429 => Code::TooManyRequests,
            499 => Code::Canceled,
            501 => Code::NotImplemented,
            502 | 503 => Code::Unavailable,
            s if (400..500).contains(&s) => Code::BadRequest,
            500 => Code::Internal,
            _ => Code::Unknown,
        }
    }
}

impl From<Code> for u16 {
    fn from(code: Code) -> u16 {
        code.http_status()
    }
}

/// An rmicro error: which service raised it, what kind it is, and what happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Error {
    /// The service (or component) that raised the error, e.g. `greeter` or `rmicro.client`.
    #[serde(default)]
    pub id: String,
    /// The kind of error.
    pub code: Code,
    /// A human-readable description.
    #[serde(default)]
    pub detail: String,
    /// The reason phrase of `code`, kept for go-micro wire compatibility.
    #[serde(default)]
    pub status: String,
    /// Set where the client knows the request never left it (no node, connection refused), so
    /// sending it again cannot run a handler twice. Local knowledge: never sent over the wire.
    #[serde(skip)]
    unsent: bool,
}

impl Error {
    /// An error of `code` with `detail`, raised by an unnamed component.
    pub fn new(code: Code, detail: impl Into<String>) -> Error {
        Error { id: String::new(), code, detail: detail.into(), status: code.reason().to_owned(), unsent: false }
    }

    /// Names the service or component that raised the error.
    pub fn with_id(mut self, id: impl Into<String>) -> Error {
        self.id = id.into();
        self
    }

    /// A [`Code::BadRequest`] error.
    pub fn bad_request(detail: impl Into<String>) -> Error {
        Error::new(Code::BadRequest, detail)
    }
    /// A [`Code::Unauthorized`] error.
    pub fn unauthorized(detail: impl Into<String>) -> Error {
        Error::new(Code::Unauthorized, detail)
    }
    /// A [`Code::Forbidden`] error.
    pub fn forbidden(detail: impl Into<String>) -> Error {
        Error::new(Code::Forbidden, detail)
    }
    /// A [`Code::NotFound`] error.
    pub fn not_found(detail: impl Into<String>) -> Error {
        Error::new(Code::NotFound, detail)
    }
    /// A [`Code::Internal`] error.
    pub fn internal(detail: impl Into<String>) -> Error {
        Error::new(Code::Internal, detail)
    }
    /// A [`Code::Unavailable`] error (retryable).
    pub fn unavailable(detail: impl Into<String>) -> Error {
        Error::new(Code::Unavailable, detail)
    }
    /// A [`Code::DeadlineExceeded`] error.
    pub fn deadline_exceeded(detail: impl Into<String>) -> Error {
        Error::new(Code::DeadlineExceeded, detail)
    }
    /// A [`Code::Canceled`] error.
    pub fn canceled(detail: impl Into<String>) -> Error {
        Error::new(Code::Canceled, detail)
    }

    /// Marks the error as raised before the request left the client (see [`Error::is_unsent`]).
    pub fn unsent(mut self) -> Error {
        self.unsent = true;
        self
    }

    /// Whether the request provably never reached a server, so even a non-idempotent call may
    /// be sent again.
    pub fn is_unsent(&self) -> bool {
        self.unsent
    }

    /// Whether sending the same call again may succeed: the peer was unreachable or overloaded,
    /// not the request at fault.
    pub fn is_retryable(&self) -> bool {
        self.code == Code::Unavailable
    }

    /// The error as go-micro's JSON wire form.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads an error from its JSON wire form; anything else becomes an [`Code::Internal`] error
    /// whose detail is the text received, so nothing a peer sent is lost.
    pub fn from_json(body: &[u8]) -> Error {
        serde_json::from_slice::<Error>(body)
            .unwrap_or_else(|_| Error::internal(String::from_utf8_lossy(body).into_owned()))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.id.is_empty() {
            write!(f, "{}: ", self.id)?;
        }
        write!(f, "{} ({}): {}", self.code.reason(), self.code.http_status(), self.detail)
    }
}

impl std::error::Error for Error {}

/// The result type of every fallible rmicro operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_keeps_code_and_detail() {
        let err = Error::not_found("no such user 7").with_id("users");
        let text = String::from_utf8(err.to_json()).unwrap();
        assert_eq!(text, r#"{"id":"users","code":404,"detail":"no such user 7","status":"Not Found"}"#);
        assert_eq!(Error::from_json(text.as_bytes()), err);
    }

    #[test]
    fn garbage_becomes_internal_with_the_text() {
        let err = Error::from_json(b"upstream exploded");
        assert_eq!(err.code, Code::Internal);
        assert_eq!(err.detail, "upstream exploded");
    }

    #[test]
    fn grpc_mapping_round_trips_for_distinct_codes() {
        for code in [
            Code::Canceled,
            Code::NotFound,
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Unauthorized,
            Code::Forbidden,
            Code::Internal,
            Code::NotImplemented,
        ] {
            assert_eq!(Code::from_grpc_status(code.grpc_status()), code);
        }
    }

    #[test]
    fn only_unavailable_is_retryable() {
        assert!(Error::unavailable("down").is_retryable());
        assert!(!Error::internal("bug").is_retryable());
        assert!(!Error::deadline_exceeded("late").is_retryable());
    }
}
