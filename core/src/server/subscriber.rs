//! Typed subscribers: broker deliveries decoded through the codec their content type names.

use std::future::Future;
use std::sync::Arc;

use crate::broker::{Delivery, DeliveryHandler, SubscribeOptions};
use crate::codec::{self, Codecs, Message};
use crate::context::Context;
use crate::error::Result;

/// A subscription the server makes when it starts.
#[derive(Clone)]
pub(crate) struct Subscriber {
    pub(crate) topic: String,
    pub(crate) options: SubscribeOptions,
    pub(crate) handler: Arc<dyn DeliveryHandler>,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber").field("topic", &self.topic).field("options", &self.options).finish()
    }
}

/// Wraps a typed handler: the message's `content-type` header picks the codec (`default_type`
/// when absent). A message that cannot be decoded can never be handled, so it is logged with its
/// reason and acknowledged rather than redelivered forever.
pub(crate) fn typed<M, F, Fut>(
    topic: &str,
    codecs: Codecs,
    default_type: String,
    handler: F,
) -> Arc<dyn DeliveryHandler>
where
    M: Message + Default,
    F: Fn(Context, M) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let handler = Arc::new(handler);
    let topic = topic.to_owned();
    Arc::new(move |delivery: Delivery| {
        let handler = handler.clone();
        let codecs = codecs.clone();
        let content_type = delivery.headers().get("content-type").unwrap_or(&default_type).to_owned();
        let topic = topic.clone();
        async move {
            let decoded =
                codecs.get(&content_type).and_then(|codec| codec::decode::<M>(&**codec, delivery.body().clone()));
            let message = match decoded {
                Ok(message) => message,
                Err(e) => {
                    tracing::error!(%topic, error = %e, "dropping a message that cannot be decoded");
                    return Ok(());
                }
            };
            let ctx = Context::new(delivery.headers().clone(), None, Default::default());
            handler(ctx, message).await
        }
    })
}
