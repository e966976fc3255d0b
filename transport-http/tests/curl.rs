//! A plain HTTP client (the `curl` binary) calls a service served over the HTTP transport, with
//! the exact command line the crate docs give; and an rmicro client calls it over h2c.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::sync::Arc;

use rmicro_core::prelude::*;
use rmicro_transport_http::{HttpConfig, HttpTransport};

#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
struct Request {
    #[prost(string, tag = "1")]
    name: String,
}

#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
struct Reply {
    #[prost(string, tag = "1")]
    msg: String,
}

async fn greeter() -> (Service, String) {
    let transport = HttpTransport::connect(HttpConfig::default()).await.unwrap();
    let service = Service::builder("greeter").transport(Arc::new(transport)).build();
    service.server().handle("Greeter.Hello", |ctx: Context, req: Request| async move {
        if let Some(trace) = ctx.metadata().get("x-trace") {
            ctx.set_reply_metadata("x-trace", trace);
        }
        Ok(Reply { msg: format!("Hello {}", req.name) })
    });
    service.server().handle_stream("Greeter.Chat", |_ctx, mut stream: ServerStream<Request, Reply>| async move {
        while let Some(req) = stream.recv().await? {
            stream.send(&Reply { msg: format!("Hi {}", req.name) }).await?;
        }
        Ok(())
    });
    service.start().await.unwrap();
    let address = service.server().address().await.unwrap();
    (service, address)
}

/// Runs curl (off the async runtime's threads) and returns (status, headers+body).
async fn curl(args: Vec<String>) -> (u16, String) {
    let output = tokio::task::spawn_blocking(move || {
        Command::new("curl").args(["-sS", "-i", "-w", "\n%{http_code}"]).args(&args).output().expect("curl runs")
    })
    .await
    .unwrap();
    assert!(output.status.success(), "curl failed: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    let (response, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), response.to_owned())
}

fn post(address: &str, path: &str, body: &str) -> Vec<String> {
    [
        "-X",
        "POST",
        &format!("http://{address}{path}"),
        "-H",
        "Content-Type: application/json",
        "-H",
        "X-Trace: t-1",
        "-d",
        body,
    ]
    .map(str::to_owned)
    .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_calls_a_service_with_json() {
    let (service, address) = greeter().await;
    let (status, response) = curl(post(&address, "/greeter/Greeter.Hello", r#"{"name":"John"}"#)).await;
    eprintln!("curl reply:\n{response}");
    assert_eq!(status, 200);
    assert!(response.ends_with(r#"{"msg":"Hello John"}"#), "{response}");
    assert!(response.to_ascii_lowercase().contains("x-trace: t-1"), "metadata came back as a header");
    assert!(response.to_ascii_lowercase().contains("content-type: application/json"), "{response}");
    service.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_body_gets_a_400_json_error() {
    let (service, address) = greeter().await;
    let (status, response) = curl(post(&address, "/greeter/Greeter.Hello", r#"{"name": 42"#)).await;
    eprintln!("curl bad body:\n{response}");
    assert_eq!(status, 400);
    let body = response.rsplit("\r\n\r\n").next().unwrap();
    let error: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(error["code"], 400);
    assert_eq!(error["id"], "greeter");
    assert!(error["detail"].as_str().unwrap().contains("does not decode"), "{body}");

    let (status, _) = curl(post(&address, "/greeter/Greeter.Missing", "{}")).await;
    assert_eq!(status, 404);
    let (status, response) = curl(vec![format!("http://{address}/greeter/Greeter.Hello")]).await;
    assert_eq!(status, 400, "a GET is refused: {response}");
    assert!(
        service
            .client()
            .call::<_, Reply>(Call::new("greeter", "Greeter.Hello"), &Request { name: "still serving".into() })
            .await
            .is_ok()
    );
    service.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rmicro_client_calls_and_streams_over_h2c() {
    let (service, _) = greeter().await;
    let client = service.client();
    let reply: Response<Reply> = client
        .call(Call::new("greeter", "Greeter.Hello").metadata("x-trace", "abc"), &Request { name: "Ada".into() })
        .await
        .unwrap();
    assert_eq!(reply.get_ref().msg, "Hello Ada");
    assert_eq!(reply.metadata().get("x-trace"), Some("abc"));

    let mut chat = client.stream::<Request, Reply>(Call::new("greeter", "Greeter.Chat")).await.unwrap();
    for name in ["a", "b", "c"] {
        chat.send(&Request { name: name.into() }).await.unwrap();
        assert_eq!(chat.recv().await.unwrap().unwrap().msg, format!("Hi {name}"));
    }
    chat.close_send().await.unwrap();
    assert_eq!(chat.recv().await.unwrap(), None);

    let json = client
        .call_bytes(Call::new("greeter", "Greeter.Hello").content_type("application/json"), r#"{"name":"J"}"#.into())
        .await
        .unwrap();
    assert_eq!(json.body, r#"{"msg":"Hello J"}"#);
    service.stop().await.unwrap();
}
