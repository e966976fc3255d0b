//! Raw async-nats request/reply: the server subscribes to two subjects and answers each
//! request as it arrives; the client calls `request`.

use futures::StreamExt;

use super::Scenario;
use crate::load::{Measured, closed_loop};
use crate::messages::{check_reply, serve_bytes};

async fn connect(url: &str) -> Result<async_nats::Client, String> {
    async_nats::connect(url).await.map_err(|e| format!("NATS at {url}: {e}"))
}

/// The prefix of the subjects a server process answers on (rmicro's listener takes it as its
/// address).
pub(crate) fn subject_prefix() -> String {
    format!("bench.{}", std::process::id())
}

/// Subscribes `<prefix>.message` and `<prefix>.echo`; the prefix is the address.
pub(crate) async fn serve(url: &str) -> Result<String, String> {
    let client = connect(url).await?;
    let prefix = subject_prefix();
    for (subject, is_message) in [("message", true), ("echo", false)] {
        let mut requests = client.subscribe(format!("{prefix}.{subject}")).await.map_err(|e| e.to_string())?;
        let client = client.clone();
        tokio::spawn(async move {
            while let Some(request) = requests.next().await {
                let (Some(reply), Ok(answer)) = (request.reply, serve_bytes(is_message, &request.payload)) else {
                    continue;
                };
                let _ = client.publish(reply, answer).await;
            }
        });
    }
    client.flush().await.map_err(|e| e.to_string())?;
    Ok(prefix)
}

pub(crate) async fn load(url: &str, prefix: &str, scenario: Scenario) -> Result<Measured, String> {
    let client = connect(url).await?;
    let request = scenario.payload.request();
    let subject = format!("{prefix}.{}", if request.is_message() { "message" } else { "echo" });
    let call = || async {
        let reply = client.request(subject.clone(), request.to_bytes()).await.map_err(|e| e.to_string())?;
        check_reply(request.is_message(), &reply.payload)
    };
    Ok(closed_loop(call, scenario.concurrency, scenario.warm_up, scenario.window, super::announce).await)
}
