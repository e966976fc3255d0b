//! TLS through rustls: a certificate and key for listeners, a CA and server name for dialling.

use std::sync::Arc;

use rmicro_core::transport::TlsConfig;
use rmicro_core::{Error, Result};
use rustls::pki_types::ServerName;
use tokio_rustls::{TlsAcceptor, TlsConnector};

fn invalid(what: &str, e: impl std::fmt::Display) -> Error {
    Error::bad_request(format!("TLS {what}: {e}")).with_id("rmicro.transport.tcp")
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The acceptor for `tls`'s identity, if it has one.
pub(crate) fn acceptor(tls: &TlsConfig) -> Result<Option<TlsAcceptor>> {
    let Some((chain, key)) = &tls.identity else { return Ok(None) };
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

/// The connector and server name for `tls`'s trust, if it has one.
pub(crate) fn connector(tls: &TlsConfig) -> Result<Option<(TlsConnector, ServerName<'static>)>> {
    let Some((ca, name)) = &tls.trust else { return Ok(None) };
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
