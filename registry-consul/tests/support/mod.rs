//! Test support: an in-process server for the Consul HTTP endpoints the registry uses.

pub(crate) mod fake_consul;
