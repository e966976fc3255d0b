//! TLS settings shared by the transports that offer TLS: PEM bytes only, so the core needs no
//! TLS library; each transport turns them into its own rustls configuration.

/// TLS settings, as PEM bytes so they can come from files, a secret store or a test.
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
}
