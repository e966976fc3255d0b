//! Test support: an in-process server for the Consul HTTP endpoints the registry uses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub(crate) mod fake_consul;
