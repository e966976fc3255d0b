//! TLS through rustls: a certificate and key for listeners, a CA and server name for dialling.

use std::sync::Arc;

use rmicro_core::{Error, Result};
use tokio_rustls::TlsAcceptor;

/// TLS settings; PEM bytes, so they can come from files, a secret store or a test.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct TlsConfig {
    /// The listener's certificate chain and private key.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// The CA that signed the servers' certificates, and the name to verify them against.
    pub trust: Option<(Vec<u8>, String)>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("identity", &self.identity.as_ref().map(|_| "<certificate and key>"))
            .field("trust", &self.trust.as_ref().map(|(_, name)| name))
            .finish()
    }
}

impl TlsConfig {
    /// Serves with this certificate chain and key (PEM).
    pub fn identity(mut self, cert_chain_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> TlsConfig {
        self.identity = Some((cert_chain_pem.into(), key_pem.into()));
        self
    }

    /// Dials trusting `ca_pem` and expecting the server to be `server_name`.
    pub fn trust(mut self, ca_pem: impl Into<Vec<u8>>, server_name: impl Into<String>) -> TlsConfig {
        self.trust = Some((ca_pem.into(), server_name.into()));
        self
    }

    pub(crate) fn acceptor(&self) -> Result<Option<TlsAcceptor>> {
        let Some((chain, key)) = &self.identity else { return Ok(None) };
        let bad = |e: &dyn std::fmt::Display| Error::bad_request(format!("TLS identity: {e}"));
        let certs = rustls_pemfile::certs(&mut chain.as_slice())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| bad(&e))?;
        let key = rustls_pemfile::private_key(&mut key.as_slice())
            .map_err(|e| bad(&e))?
            .ok_or_else(|| bad(&"no private key"))?;
        let mut config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| bad(&e))?
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .map_err(|e| bad(&e))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Some(TlsAcceptor::from(Arc::new(config))))
    }

    pub(crate) fn client(&self) -> Option<tonic::transport::ClientTlsConfig> {
        let (ca, name) = self.trust.as_ref()?;
        Some(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(ca))
                .domain_name(name.clone()),
        )
    }
}
