//! TLS through rustls: a certificate and key for listeners, a CA and server name for dialling.

use std::sync::Arc;

use rmicro_core::transport::TlsConfig;
use rmicro_core::{Error, Result};
use tokio_rustls::TlsAcceptor;

/// The acceptor for `tls`'s identity, if it has one.
pub(crate) fn acceptor(tls: &TlsConfig) -> Result<Option<TlsAcceptor>> {
    let Some((chain, key)) = &tls.identity else { return Ok(None) };
    let bad = |e: &dyn std::fmt::Display| Error::bad_request(format!("TLS identity: {e}"));
    let certs = rustls_pemfile::certs(&mut chain.as_slice())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    let key =
        rustls_pemfile::private_key(&mut key.as_slice()).map_err(|e| bad(&e))?.ok_or_else(|| bad(&"no private key"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

/// The channel TLS for `tls`'s trust, if it has one.
pub(crate) fn client(tls: &TlsConfig) -> Option<tonic::transport::ClientTlsConfig> {
    let (ca, name) = tls.trust.as_ref()?;
    Some(
        tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca))
            .domain_name(name.clone()),
    )
}
