//! `greeter server`: serves the Greeter and subscribes to the greeting events.

use std::time::Duration;

use rmicro::broker::SubscribeOptions;
use rmicro::config::Options;
use rmicro::prelude::*;
use rmicro::raw::plugin::Kind;

use crate::pb;

struct Greeter {
    events: Client,
}

impl Greeter {
    async fn greeted(&self, name: &str) {
        if let Err(e) = self.events.publish("greeter.greeted", &pb::Greeted { name: name.to_owned() }).await {
            eprintln!("server: could not publish the greeting event: {e}");
        }
    }
}

impl pb::GreeterHandler for Greeter {
    async fn hello(&self, _ctx: Context, request: pb::Request) -> Result<pb::Response, Error> {
        if request.name.is_empty() {
            return Err(Error::bad_request("a name is required"));
        }
        tokio::time::sleep(Duration::from_millis(u64::from(request.delay_ms))).await;
        Ok(pb::Response { msg: format!("Hello {}", request.name) })
    }

    async fn stream(
        &self,
        _ctx: Context,
        request: pb::StreamRequest,
        mut replies: ServerStream<pb::StreamRequest, pb::Response>,
    ) -> Result<(), Error> {
        for i in 1..=request.count {
            replies.send(&pb::Response { msg: format!("Hello {} #{i}", request.name) }).await?;
        }
        Ok(())
    }

    async fn collect(
        &self,
        _ctx: Context,
        requests: &mut ServerStream<pb::Request, pb::Response>,
    ) -> Result<pb::Response, Error> {
        let mut names = Vec::new();
        while let Some(request) = requests.recv().await? {
            names.push(request.name);
        }
        Ok(pb::Response { msg: format!("Hello {}", names.join(" and ")) })
    }

    async fn chat(&self, _ctx: Context, mut stream: ServerStream<pb::Request, pb::Response>) -> Result<(), Error> {
        while let Some(request) = stream.recv().await? {
            stream.send(&pb::Response { msg: format!("Hi {}", request.name) }).await?;
            self.greeted(&request.name).await;
        }
        Ok(())
    }
}

pub(crate) async fn run(args: Vec<String>) -> Result<(), Error> {
    let service = Service::builder("greeter").version("1.0.0").args(args.clone()).build().await?;
    let options = Options::from_env_and_args(args)?;
    pb::register_greeter_handler(service.server(), Greeter { events: service.client().clone() });
    service.server().subscribe(
        "greeter.greeted",
        SubscribeOptions::default().queue("greeter"),
        |_ctx: Context, event: pb::Greeted| async move {
            println!("server: received event Greeted {{ name: {:?} }}", event.name);
            Ok(())
        },
    );
    service.start().await?;
    println!(
        "server: greeter {} listening on {} ({} transport, {} registry)",
        service.server().id(),
        service.server().address().await.unwrap_or_default(),
        options.backend_name(Kind::Transport)?,
        options.backend_name(Kind::Registry)?
    );
    rmicro::service::shutdown_signal().await;
    println!("server: stopping (deregister, drain in-flight calls, disconnect)");
    service.stop().await?;
    println!("server: stopped");
    Ok(())
}
