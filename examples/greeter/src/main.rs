//! The go-micro greeter in rmicro: a server and a client in separate processes, found through
//! mDNS on loopback, calling over the HTTP transport and publishing through the HTTP broker.
//!
//! Run with: `scripts/quickstart` (it runs `greeter quickstart` in a private network namespace,
//! so multicast stays on loopback). By hand, in such a namespace: `greeter server` in one
//! terminal, `greeter client` in another. Backends and addresses come from flags or `MICRO_*`
//! variables (`--registry memory`, `MICRO_SERVER_ADDRESS=127.0.0.1:8080`, ...).

mod client;
mod quickstart;
mod server;

/// Generated from `proto/greeter.proto` by `rmicro-build`.
#[allow(missing_docs, unreachable_pub, missing_debug_implementations, clippy::all)]
mod pb {
    include!(concat!(env!("OUT_DIR"), "/greeter.rs"));
}

use rmicro::Error;
use rmicro::config::Options;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let args: Vec<String> = args.collect();
    let outcome = match Options::from_env_and_args(args.clone()) {
        Ok(options) => match mode.as_str() {
            "server" => server::run(args).await,
            "client" => client::run(options).await,
            "quickstart" => quickstart::run().await,
            _ => Err(Error::bad_request(
                "usage: greeter server|client|quickstart [--registry mdns] [--server_address ...]",
            )),
        },
        Err(e) => Err(e),
    };
    if let Err(e) = outcome {
        eprintln!("greeter {mode}: {e}");
        std::process::exit(1);
    }
}
