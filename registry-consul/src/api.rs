//! The few Consul HTTP endpoints this registry uses, and how an rmicro node is stored in a
//! Consul service registration.
//!
//! A node is registered as a Consul service instance whose ID is the node id, whose Name is the
//! service name, whose Address and Port come from the node address, and whose Tags carry the
//! whole rmicro record (`rmicro-record=<base64url JSON>`), since Consul's `Meta` limits key
//! names and value lengths. `Meta` holds the version for people reading Consul's UI.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rmicro_core::registry::{Node, ServiceRecord};
use rmicro_core::{Code, Error, Result};
use serde::{Deserialize, Serialize};

use crate::config::ConsulConfig;

const RECORD_TAG: &str = "rmicro-record=";

/// The Consul agent's HTTP API.
#[derive(Clone)]
pub(crate) struct Api {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    address: String,
    token: Option<Arc<str>>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("address", &self.address).finish_non_exhaustive()
    }
}

/// What a request returned: status, `X-Consul-Index`, body.
pub(crate) struct Answer {
    pub(crate) index: u64,
    pub(crate) body: Bytes,
}

fn consul_error(code: Code, detail: impl Into<String>) -> Error {
    Error::new(code, format!("consul: {}", detail.into())).with_id("rmicro.registry.consul")
}

impl Api {
    pub(crate) fn new(config: &ConsulConfig) -> Result<Api> {
        let address = config.base_url();
        let mut roots = rustls::RootCertStore::empty();
        if let Some(ca) = &config.ca_file {
            let pem =
                std::fs::read(ca).map_err(|e| Error::bad_request(format!("consul CA file {}: {e}", ca.display())))?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| Error::bad_request(format!("consul CA file {}: {e}", ca.display())))?;
                roots.add(cert).map_err(|e| Error::bad_request(format!("consul CA file {}: {e}", ca.display())))?;
            }
        } else if address.starts_with("https://") {
            return Err(Error::bad_request("an https:// Consul address needs ca_file"));
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::internal(format!("TLS setup: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector =
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().build();
        Ok(Api {
            client: Client::builder(TokioExecutor::new()).build(connector),
            address,
            token: config.token.as_deref().map(Arc::from),
        })
    }

    pub(crate) async fn call(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Answer> {
        let mut request = Request::builder().method(method).uri(format!("{}{path}", self.address));
        if let Some(token) = &self.token {
            request = request.header("X-Consul-Token", token.as_ref());
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| Error::bad_request(format!("consul request {path}: {e}")))?;
        let response =
            self.client.request(request).await.map_err(|e| consul_error(Code::Unavailable, format!("{path}: {e}")))?;
        let status = response.status();
        let index = response
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| consul_error(Code::Unavailable, format!("{path}: reading the answer: {e}")))?
            .to_bytes();
        if status.is_success() {
            return Ok(Answer { index, body });
        }
        let text = String::from_utf8_lossy(&body).trim().to_owned();
        let code = match status {
            StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => Code::Forbidden,
            StatusCode::NOT_FOUND => Code::NotFound,
            StatusCode::BAD_REQUEST => Code::BadRequest,
            _ => Code::Unavailable,
        };
        Err(consul_error(code, format!("{path}: {status}: {text}")))
    }
}

/// `PUT /v1/agent/service/register` body.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Registration {
    #[serde(rename = "ID")]
    pub(crate) id: String,
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) tags: Vec<String>,
    #[serde(default)]
    pub(crate) address: String,
    #[serde(default)]
    pub(crate) port: u16,
    #[serde(default)]
    pub(crate) meta: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) check: Option<CheckDefinition>,
}

/// A check in a registration.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CheckDefinition {
    #[serde(rename = "CheckID", default, skip_serializing_if = "Option::is_none")]
    pub(crate) check_id: Option<String>,
    #[serde(rename = "TTL", default, skip_serializing_if = "Option::is_none")]
    pub(crate) ttl: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) deregister_critical_service_after: Option<String>,
}

/// One entry of `GET /v1/health/service/:service`.
#[derive(Debug, Serialize, Deserialize, Clone)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct HealthEntry {
    pub(crate) service: AgentService,
}

/// The service part of a health entry.
#[derive(Debug, Serialize, Deserialize, Clone)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AgentService {
    #[serde(rename = "ID")]
    pub(crate) id: String,
    pub(crate) service: String,
    #[serde(default)]
    pub(crate) tags: Option<Vec<String>>,
}

/// Consul duration syntax: whole seconds, at least one.
pub(crate) fn consul_duration(d: Duration) -> String {
    format!("{}s", (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1))
}

/// The check id Consul gives a service's only check.
pub(crate) fn check_id(node: &str) -> String {
    format!("service:{node}")
}

/// The registration of `node` of `service`, carrying the service's record with that node only.
pub(crate) fn registration(
    service: &ServiceRecord,
    node: &Node,
    ttl: Option<Duration>,
    deregister_after: Duration,
) -> Result<Registration> {
    let one = ServiceRecord { nodes: vec![node.clone()], ..service.clone() };
    let record = serde_json::to_vec(&one).map_err(|e| Error::internal(format!("encoding {}: {e}", service.name)))?;
    let (address, port) = match node.address.rsplit_once(':') {
        Some((host, port)) => (host.to_owned(), port.parse().unwrap_or(0)),
        None => (node.address.clone(), 0),
    };
    Ok(Registration {
        id: node.id.clone(),
        name: service.name.clone(),
        tags: vec![format!("{RECORD_TAG}{}", URL_SAFE_NO_PAD.encode(record))],
        address,
        port,
        meta: BTreeMap::from([("version".to_owned(), service.version.clone())]),
        check: ttl.map(|ttl| CheckDefinition {
            check_id: Some(check_id(&node.id)),
            ttl: Some(consul_duration(ttl)),
            status: Some("passing".to_owned()),
            deregister_critical_service_after: Some(consul_duration(deregister_after)),
        }),
    })
}

/// The rmicro record carried in a registration's tags.
pub(crate) fn record(service: &AgentService) -> Option<ServiceRecord> {
    let tag = service.tags.as_ref()?.iter().find_map(|t| t.strip_prefix(RECORD_TAG))?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(tag).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmicro_core::registry::Endpoint;

    #[test]
    fn a_record_survives_the_tags() {
        let service = ServiceRecord {
            name: "pay".into(),
            version: "2.0.0".into(),
            metadata: [("team".to_owned(), "billing".to_owned())].into(),
            endpoints: vec![Endpoint { name: "Pay.Charge".into(), ..Endpoint::default() }],
            nodes: vec![Node { id: "pay-1".into(), address: "10.0.0.7:8080".into(), ..Node::default() }],
        };
        let reg = registration(&service, &service.nodes[0], Some(Duration::from_millis(1500)), Duration::from_secs(60))
            .unwrap();
        assert_eq!((reg.address.as_str(), reg.port), ("10.0.0.7", 8080));
        assert_eq!(reg.check.as_ref().unwrap().ttl.as_deref(), Some("2s"));
        let agent = AgentService { id: reg.id.clone(), service: reg.name.clone(), tags: Some(reg.tags.clone()) };
        assert_eq!(record(&agent), Some(service));
    }
}
