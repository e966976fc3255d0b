//! `greeter client`: finds the greeter through the registry and makes every kind of call.

use std::time::Duration;

use rmicro::config::Options;
use rmicro::prelude::*;

use crate::pb;

/// How long the client waits for the server to appear.
const DISCOVERY: Duration = Duration::from_secs(15);

pub(crate) async fn run(options: Options) -> Result<(), Error> {
    // A client alone: nothing is served or registered.
    let client = options.client().await?;
    let greeter = pb::GreeterClient::new("greeter", client.clone());
    let request = pb::Request { name: "John".into(), delay_ms: 0 };

    let started = tokio::time::Instant::now();
    let reply = loop {
        match greeter.hello(&request).await {
            Ok(reply) => break reply,
            Err(e) if e.is_retryable() && started.elapsed() < DISCOVERY => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => return Err(e),
        }
    };
    println!("client: Hello -> {}", reply.get_ref().msg);

    let mut stream = greeter.stream(&pb::StreamRequest { name: "John".into(), count: 3 }).await?;
    while let Some(reply) = stream.recv().await? {
        println!("client: Stream -> {}", reply.msg);
    }

    let mut collect = greeter.collect().await?;
    for name in ["Ada", "Grace"] {
        collect.send(&pb::Request { name: name.into(), delay_ms: 0 }).await?;
    }
    collect.close_send().await?;
    if let Some(reply) = collect.recv().await? {
        println!("client: Collect -> {}", reply.msg);
    }

    let mut chat = greeter.chat().await?;
    for name in ["Alan", "Barbara"] {
        chat.send(&pb::Request { name: name.into(), delay_ms: 0 }).await?;
        if let Some(reply) = chat.recv().await? {
            println!("client: Chat -> {}", reply.msg);
        }
    }
    chat.close_send().await?;
    while chat.recv().await?.is_some() {}

    match greeter.hello(&pb::Request::default()).await {
        Err(e) => println!("client: Hello with no name -> error {} {:?}", e.code.http_status(), e.detail),
        Ok(reply) => println!("client: Hello with no name unexpectedly answered {:?}", reply.get_ref().msg),
    }

    client.publish("greeter.greeted", &pb::Greeted { name: "John".into() }).await?;
    println!("client: published Greeted {{ name: \"John\" }}");
    Ok(())
}
