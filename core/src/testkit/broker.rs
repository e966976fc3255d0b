//! The broker suite. The factory returns a connected `Arc<dyn Broker>`; checks a backend's
//! [`Capabilities`](crate::broker::Capabilities) rule out pass after saying so.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::{eventually, unique};
use crate::broker::{AckMode, Broker, Delivery, DeliveryHandler, Envelope, SubscribeOptions, Subscription};
use crate::error::Error;

const SETTLE: Duration = Duration::from_secs(10);
/// How long to wait to be confident that nothing more arrives.
const QUIET: Duration = Duration::from_millis(500);
const MESSAGES: usize = 50;

/// Expands to one `#[tokio::test]` per broker check, each calling `$factory().await` for a
/// fresh, connected `Arc<dyn Broker>`.
#[macro_export]
macro_rules! broker_conformance {
    ($factory:expr) => {
        $crate::__conformance_tests!(
            broker,
            $factory,
            publish_reaches_subscriber,
            headers_round_trip,
            every_subscriber_gets_every_message,
            queue_group_gets_each_message_once,
            separate_groups_each_get_every_message,
            failed_handler_is_redelivered,
            nack_redelivers,
            ack_settles,
            unsubscribe_stops_delivery
        );
    };
}

/// Records what a subscription received, keyed by body.
#[derive(Clone, Default)]
struct Received {
    bodies: Arc<Mutex<Vec<(String, Envelope)>>>,
}

impl Received {
    fn handler(&self, label: &str) -> Arc<dyn DeliveryHandler> {
        let (bodies, label) = (self.bodies.clone(), label.to_owned());
        Arc::new(move |delivery: Delivery| {
            bodies.lock().unwrap().push((label.clone(), delivery.message().clone()));
            async { Ok::<(), Error>(()) }
        })
    }

    fn len(&self) -> usize {
        self.bodies.lock().unwrap().len()
    }

    fn count_by_body(&self) -> HashMap<Bytes, usize> {
        let mut counts = HashMap::new();
        for (_, m) in self.bodies.lock().unwrap().iter() {
            *counts.entry(m.body.clone()).or_default() += 1;
        }
        counts
    }

    fn labels(&self) -> Vec<String> {
        self.bodies.lock().unwrap().iter().map(|(l, _)| l.clone()).collect()
    }
}

/// Whether the backend declares a capability; says so loudly when the check is skipped.
fn declares(broker: &dyn Broker, declared: bool, capability: &str) -> bool {
    if !declared {
        eprintln!("{}: declares no {capability}; check skipped", broker.name());
    }
    declared
}

async fn publish_n(broker: &dyn Broker, topic: &str, n: usize) {
    for i in 0..n {
        broker.publish(topic, Envelope::new(format!("message-{i}"))).await.unwrap();
    }
}

async fn subscribe(
    broker: &dyn Broker,
    topic: &str,
    handler: Arc<dyn DeliveryHandler>,
    options: SubscribeOptions,
) -> Box<dyn Subscription> {
    broker.subscribe(topic, handler, options).await.unwrap()
}

/// A message published after subscribing reaches the handler with its topic and body.
pub async fn publish_reaches_subscriber(broker: Arc<dyn Broker>) {
    let topic = unique("topic");
    let got = Received::default();
    let sub = subscribe(&*broker, &topic, got.handler("a"), SubscribeOptions::default()).await;
    broker.publish(&topic, Envelope::new("hello")).await.unwrap();
    eventually(SETTLE, "message delivered", || async { got.len() == 1 }).await;
    assert_eq!(got.bodies.lock().unwrap()[0].1.body, Bytes::from("hello"));
    sub.unsubscribe().await.unwrap();
}

/// Headers arrive as they were published.
pub async fn headers_round_trip(broker: Arc<dyn Broker>) {
    let topic = unique("topic");
    let got = Received::default();
    let sub = subscribe(&*broker, &topic, got.handler("a"), SubscribeOptions::default()).await;
    let sent = Envelope::new("with headers")
        .with_header("x-trace-id", "abc123")
        .with_header("content-type", "application/json");
    broker.publish(&topic, sent.clone()).await.unwrap();
    eventually(SETTLE, "message delivered", || async { got.len() == 1 }).await;
    let received = got.bodies.lock().unwrap()[0].1.clone();
    for (key, value) in sent.headers.iter() {
        assert_eq!(received.headers.get(key), Some(value), "header {key}");
    }
    sub.unsubscribe().await.unwrap();
}

/// Two subscriptions without a group each get every message.
pub async fn every_subscriber_gets_every_message(broker: Arc<dyn Broker>) {
    let topic = unique("topic");
    let (a, b) = (Received::default(), Received::default());
    let sa = subscribe(&*broker, &topic, a.handler("a"), SubscribeOptions::default()).await;
    let sb = subscribe(&*broker, &topic, b.handler("b"), SubscribeOptions::default()).await;
    publish_n(&*broker, &topic, MESSAGES).await;
    eventually(SETTLE, "both subscribers got every message", || async { a.len() == MESSAGES && b.len() == MESSAGES })
        .await;
    sa.unsubscribe().await.unwrap();
    sb.unsubscribe().await.unwrap();
}

/// Members of one queue group share the messages: each message is handled once by the group.
pub async fn queue_group_gets_each_message_once(broker: Arc<dyn Broker>) {
    if !declares(&*broker, broker.capabilities().queue_groups, "queue groups") {
        return;
    }
    let topic = unique("topic");
    let group = Received::default();
    let options = SubscribeOptions::default().queue("workers");
    let s1 = subscribe(&*broker, &topic, group.handler("w1"), options.clone()).await;
    let s2 = subscribe(&*broker, &topic, group.handler("w2"), options).await;
    publish_n(&*broker, &topic, MESSAGES).await;
    eventually(SETTLE, "group got every message", || async { group.len() >= MESSAGES }).await;
    tokio::time::sleep(QUIET).await;
    let counts = group.count_by_body();
    assert_eq!(counts.len(), MESSAGES, "every message reached the group");
    assert!(counts.values().all(|&n| n == 1), "no message was handled twice: {counts:?}");
    s1.unsubscribe().await.unwrap();
    s2.unsubscribe().await.unwrap();
}

/// Every queue group gets every message.
pub async fn separate_groups_each_get_every_message(broker: Arc<dyn Broker>) {
    if !declares(&*broker, broker.capabilities().queue_groups, "queue groups") {
        return;
    }
    let topic = unique("topic");
    let (billing, audit) = (Received::default(), Received::default());
    let subs = vec![
        subscribe(&*broker, &topic, billing.handler("b1"), SubscribeOptions::default().queue("billing")).await,
        subscribe(&*broker, &topic, billing.handler("b2"), SubscribeOptions::default().queue("billing")).await,
        subscribe(&*broker, &topic, audit.handler("a1"), SubscribeOptions::default().queue("audit")).await,
    ];
    publish_n(&*broker, &topic, MESSAGES).await;
    eventually(SETTLE, "both groups got every message", || async {
        billing.len() >= MESSAGES && audit.len() >= MESSAGES
    })
    .await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(billing.count_by_body().len(), MESSAGES);
    assert_eq!(audit.count_by_body().len(), MESSAGES);
    assert!(audit.labels().iter().all(|l| l == "a1"));
    for sub in subs {
        sub.unsubscribe().await.unwrap();
    }
}

/// A handler that fails (auto ack) gets the message again, and succeeds the second time.
pub async fn failed_handler_is_redelivered(broker: Arc<dyn Broker>) {
    if !declares(&*broker, broker.capabilities().redelivery, "redelivery") {
        return;
    }
    let topic = unique("topic");
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let seen = attempts.clone();
    let handler: Arc<dyn DeliveryHandler> = Arc::new(move |delivery: Delivery| {
        let seen = seen.clone();
        async move {
            let mut seen = seen.lock().unwrap();
            seen.push(delivery.body().clone());
            if seen.len() == 1 { Err(Error::internal("first attempt fails on purpose")) } else { Ok(()) }
        }
    });
    let sub = subscribe(&*broker, &topic, handler, SubscribeOptions::default().queue("retry")).await;
    broker.publish(&topic, Envelope::new("try me")).await.unwrap();
    eventually(SETTLE, "message delivered again after failing", || async { attempts.lock().unwrap().len() >= 2 }).await;
    assert!(attempts.lock().unwrap().iter().all(|b| b == "try me"));
    sub.unsubscribe().await.unwrap();
}

/// In manual mode a nacked message is delivered again.
pub async fn nack_redelivers(broker: Arc<dyn Broker>) {
    if !declares(&*broker, broker.capabilities().redelivery, "redelivery") {
        return;
    }
    let topic = unique("topic");
    let deliveries = Arc::new(Mutex::new(0usize));
    let count = deliveries.clone();
    let handler: Arc<dyn DeliveryHandler> = Arc::new(move |mut delivery: Delivery| {
        let count = count.clone();
        async move {
            let first = {
                let mut n = count.lock().unwrap();
                *n += 1;
                *n == 1
            };
            if first { delivery.nack().await } else { delivery.ack().await }
        }
    });
    let options = SubscribeOptions::default().queue("manual").ack(AckMode::Manual);
    let sub = subscribe(&*broker, &topic, handler, options).await;
    broker.publish(&topic, Envelope::new("nack me once")).await.unwrap();
    eventually(SETTLE, "nacked message delivered again", || async { *deliveries.lock().unwrap() >= 2 }).await;
    sub.unsubscribe().await.unwrap();
}

/// In manual mode an acknowledged message is not delivered again.
pub async fn ack_settles(broker: Arc<dyn Broker>) {
    let topic = unique("topic");
    let deliveries = Arc::new(Mutex::new(0usize));
    let count = deliveries.clone();
    let handler: Arc<dyn DeliveryHandler> = Arc::new(move |mut delivery: Delivery| {
        let count = count.clone();
        async move {
            *count.lock().unwrap() += 1;
            delivery.ack().await
        }
    });
    let options = SubscribeOptions::default().queue("acked").ack(AckMode::Manual);
    let sub = subscribe(&*broker, &topic, handler, options).await;
    broker.publish(&topic, Envelope::new("ack me")).await.unwrap();
    eventually(SETTLE, "message delivered", || async { *deliveries.lock().unwrap() == 1 }).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(*deliveries.lock().unwrap(), 1, "an acknowledged message came back");
    sub.unsubscribe().await.unwrap();
}

/// After unsubscribing, the handler gets nothing more.
pub async fn unsubscribe_stops_delivery(broker: Arc<dyn Broker>) {
    let topic = unique("topic");
    let got = Received::default();
    let sub = subscribe(&*broker, &topic, got.handler("a"), SubscribeOptions::default()).await;
    broker.publish(&topic, Envelope::new("before")).await.unwrap();
    eventually(SETTLE, "first message delivered", || async { got.len() == 1 }).await;
    sub.unsubscribe().await.unwrap();
    broker.publish(&topic, Envelope::new("after")).await.unwrap();
    tokio::time::sleep(QUIET).await;
    assert_eq!(got.len(), 1, "a message arrived after unsubscribing");
}
