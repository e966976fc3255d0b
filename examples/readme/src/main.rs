//! The README's "A service in code", as written there: `tests/second_process.rs` checks that
//! the README shows this file and calls it from another process.
//!
//! Run with: `cargo run -p example-readme` (the default stack: mDNS on loopback, HTTP transport).

use rmicro::prelude::*;

#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
struct HelloRequest {
    #[prost(string, tag = "1")]
    name: String,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    // The default stack compiled in, or what MICRO_* variables and flags choose.
    let service = Service::builder("greeter").version("1.0.0").build().await?;
    service.server().handle("Greeter.Hello", |_ctx: Context, req: HelloRequest| async move {
        Ok(HelloRequest { name: format!("Hello {}", req.name) })
    });
    service.run().await // serves until SIGINT/SIGTERM, then stops gracefully
}
