//! A small service, run and called in one process on the in-memory backends: a unary call, a
//! server stream, an error, and an event a subscriber receives.
//!
//! Run with: `cargo run -p example-hello`

use std::time::Duration;

use rmicro::broker::SubscribeOptions;
use rmicro::prelude::*;
use tokio::sync::mpsc;

#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
struct HelloRequest {
    #[prost(string, tag = "1")]
    name: String,
}

#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
struct HelloReply {
    #[prost(string, tag = "1")]
    message: String,
}

#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
struct Greeted {
    #[prost(string, tag = "1")]
    name: String,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    // One process, so the in-memory backends, whatever MICRO_* says.
    let service = Service::builder("greeter").version("1.0.0").in_memory().build().await?;
    let (events_tx, mut events) = mpsc::unbounded_channel();

    service
        .server()
        .handle("Greeter.Hello", |_ctx: Context, req: HelloRequest| async move {
            if req.name.is_empty() {
                return Err(Error::bad_request("a name is required"));
            }
            Ok(HelloReply { message: format!("Hello {}", req.name) })
        })
        .handle_stream(
            "Greeter.Count",
            |_ctx: Context, mut stream: ServerStream<HelloRequest, HelloReply>| async move {
                let Some(req) = stream.recv().await? else { return Ok(()) };
                for i in 1..=3 {
                    stream.send(&HelloReply { message: format!("{} #{i}", req.name) }).await?;
                }
                Ok(())
            },
        )
        .subscribe(
            "greeter.greeted",
            SubscribeOptions::default().queue("greeter"),
            move |ctx: Context, event: Greeted| {
                let events = events_tx.clone();
                async move {
                    println!(
                        "subscriber: received Greeted {{ name: {:?} }} (topic header {:?})",
                        event.name,
                        ctx.metadata().get("micro-topic")
                    );
                    let _ = events.send(event);
                    Ok(())
                }
            },
        );

    service.start().await?;
    println!("server: greeter started at {}", service.server().address().await.unwrap_or_default());
    let client = service.client();

    let reply: Response<HelloReply> =
        client.call(Call::new("greeter", "Greeter.Hello"), &HelloRequest { name: "John".into() }).await?;
    println!("call Greeter.Hello: {}", reply.get_ref().message);

    let mut stream = client.stream::<HelloRequest, HelloReply>(Call::new("greeter", "Greeter.Count")).await?;
    stream.send(&HelloRequest { name: "John".into() }).await?;
    stream.close_send().await?;
    while let Some(reply) = stream.recv().await? {
        println!("stream Greeter.Count: {}", reply.message);
    }

    let err = client.call::<_, HelloReply>(Call::new("greeter", "Greeter.Hello"), &HelloRequest::default()).await.err();
    if let Some(err) = err {
        println!("call Greeter.Hello with no name: error {} {:?}", err.code.http_status(), err.detail);
    }

    client.publish("greeter.greeted", &Greeted { name: "John".into() }).await?;
    let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .map_err(|_| Error::deadline_exceeded("the event did not arrive"))?;
    println!("event delivered: {}", event.map(|e| e.name).unwrap_or_default());

    service.stop().await?;
    println!("server: greeter stopped");
    Ok(())
}
