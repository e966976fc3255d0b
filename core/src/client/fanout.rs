//! rpcx's broadcast and fork: one call sent to every node of a service at once.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::call::{Call, ClientRequest, Response};
use super::dispatch::{node_at, select_options};
use super::fail_mode::FailMode;
use super::stream::bad_response;
use super::{Client, EncodedResponse};
use crate::codec::{self, Message};
use crate::error::{Error, Result};
use crate::registry::Node;

/// One node's answer to a broadcast.
#[derive(Clone, Debug)]
pub struct FanoutReply<M> {
    /// The node that answered.
    pub node: Arc<Node>,
    /// Its response.
    pub response: Response<M>,
}

impl Client {
    /// Sends the call to every node of the service at once; succeeds only if every node does.
    /// On failure the error has the first failure's code and names each failed node.
    pub async fn broadcast<Req, Resp>(&self, call: Call, request: &Req) -> Result<Vec<FanoutReply<Resp>>>
    where
        Req: Message,
        Resp: Message + Default,
    {
        let (codec, nodes, raw) = self.fan_out(call, request).await?;
        let calls = nodes.into_iter().map(|node| {
            let answer = self.pinned(&raw, node.clone());
            async move { (node, answer.await) }
        });
        let results = futures::future::join_all(calls).await;
        let total = results.len();
        let mut replies = Vec::with_capacity(total);
        let mut failures = Vec::new();
        for (node, result) in results {
            match result
                .and_then(|r| Ok(Response::new(r.metadata, codec::decode(&*codec, r.body).map_err(bad_response)?)))
            {
                Ok(response) => replies.push(FanoutReply { node, response }),
                Err(e) => failures.push((node, e)),
            }
        }
        if failures.is_empty() { Ok(replies) } else { Err(aggregate("broadcast", total, failures)) }
    }

    /// Sends the call to every node of the service at once and returns the first success; the
    /// other calls are cancelled. Fails only if every node fails.
    pub async fn fork<Req, Resp>(&self, call: Call, request: &Req) -> Result<FanoutReply<Resp>>
    where
        Req: Message,
        Resp: Message + Default,
    {
        let (codec, nodes, raw) = self.fan_out(call, request).await?;
        let total = nodes.len();
        let mut pending: FuturesUnordered<_> = nodes
            .into_iter()
            .map(|node| {
                let answer = self.pinned(&raw, node.clone());
                async move { (node, answer.await) }
            })
            .collect();
        let mut failures = Vec::new();
        while let Some((node, result)) = pending.next().await {
            match result
                .and_then(|r| Ok(Response::new(r.metadata, codec::decode(&*codec, r.body).map_err(bad_response)?)))
            {
                Ok(response) => return Ok(FanoutReply { node, response }),
                Err(e) => failures.push((node, e)),
            }
        }
        Err(aggregate("fork", total, failures))
    }

    async fn fan_out<Req: Message>(
        &self,
        call: Call,
        request: &Req,
    ) -> Result<(Arc<dyn codec::Codec>, Vec<Arc<Node>>, ClientRequest)> {
        let codec = self.inner.codecs.get(self.content_type_of(&call))?.clone();
        let body: Bytes = codec.encode(request)?;
        let raw = self.encoded_request(call, body, Some(self.inner.timeout));
        let nodes = match &raw.address {
            Some(address) => vec![node_at(address)],
            None => {
                self.inner
                    .selector
                    .select_all(&raw.service, &select_options(&raw.metadata, &raw.filters, &raw.key, &[]))
                    .await?
            }
        };
        Ok((codec, nodes, raw))
    }

    /// The call sent to `node` only, through the client's layers, without retries.
    fn pinned(
        &self,
        raw: &ClientRequest,
        node: Arc<Node>,
    ) -> impl std::future::Future<Output = Result<EncodedResponse>> + use<> {
        let mut one = raw.clone();
        one.node = Some(node);
        one.fail_mode = FailMode::Failfast;
        let client = self.clone();
        async move { client.send(one).await }
    }
}

fn aggregate(kind: &str, total: usize, failures: Vec<(Arc<Node>, Error)>) -> Error {
    let code = failures.first().map_or(crate::error::Code::Unavailable, |(_, e)| e.code);
    let each: Vec<String> = failures.iter().map(|(node, e)| format!("{}: {e}", node.id)).collect();
    Error::new(code, format!("{kind} to {total} nodes: {} failed: {}", failures.len(), each.join("; ")))
        .with_id("rmicro.client")
}
