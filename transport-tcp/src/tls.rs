//! TLS through rustls: a certificate and key for listeners, a CA and server name for dialling.

use std::sync::Arc;

use rmicro_core::{Error, Result};
use rustls::pki_types::ServerName;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// TLS settings, as PEM bytes so they can come from files, a secret store or a test.
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

fn invalid(what: &str, e: impl std::fmt::Display) -> Error {
    Error::bad_request(format!("TLS {what}: {e}")).with_id("rmicro.transport.tcp")
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
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
        let certs = rustls_pemfile::certs(&mut chain.as_slice())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| invalid("certificate", e))?;
        let key = rustls_pemfile::private_key(&mut key.as_slice())
            .map_err(|e| invalid("key", e))?
            .ok_or_else(|| invalid("key", "no private key in the PEM"))?;
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("protocol versions", e))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| invalid("identity", e))?;
        Ok(Some(TlsAcceptor::from(Arc::new(config))))
    }

    pub(crate) fn connector(&self) -> Result<Option<(TlsConnector, ServerName<'static>)>> {
        let Some((ca, name)) = &self.trust else { return Ok(None) };
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut ca.as_slice()) {
            roots.add(cert.map_err(|e| invalid("CA", e))?).map_err(|e| invalid("CA", e))?;
        }
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("protocol versions", e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from(name.clone()).map_err(|e| invalid("server name", e))?;
        Ok(Some((TlsConnector::from(Arc::new(config)), name)))
    }
}
