//! The greeter's messages and services, generated twice: plainly by tonic, and by rmicro-build.

#![allow(missing_docs, unreachable_pub, missing_debug_implementations, clippy::all)]

/// tonic's client and server for `greeter.Greeter`, generated independently of rmicro.
pub mod tonic_pb {
    include!(concat!(env!("OUT_DIR"), "/tonic/greeter.rs"));
}

/// rmicro's client and handler trait for the same service.
pub mod rmicro_pb {
    include!(concat!(env!("OUT_DIR"), "/rmicro/greeter.rs"));
}
