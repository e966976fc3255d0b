//! How to reach etcd.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The key prefix go-micro uses: nodes live at `/micro/registry/<service>/<node-id>`.
pub const DEFAULT_PREFIX: &str = "/micro/registry/";

/// Connection settings for [`EtcdRegistry`](crate::EtcdRegistry).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EtcdConfig {
    /// etcd endpoints, e.g. `["127.0.0.1:2379"]`.
    pub endpoints: Vec<String>,
    /// Key prefix (default [`DEFAULT_PREFIX`]).
    pub prefix: String,
    /// User name, for etcd auth.
    pub username: Option<String>,
    /// Password, for etcd auth.
    pub password: Option<String>,
    /// How long a request to etcd may take.
    pub timeout: Duration,
    /// TLS: PEM files of the CA and, for client authentication, the certificate and key
    /// (needs the crate feature `tls`).
    pub tls: Option<TlsFiles>,
}

/// PEM files for TLS to etcd.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TlsFiles {
    /// The CA that signed etcd's certificate.
    pub ca: PathBuf,
    /// The client certificate.
    pub cert: Option<PathBuf>,
    /// The client key.
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    /// Trust `ca`; no client certificate.
    pub fn new(ca: impl Into<PathBuf>) -> TlsFiles {
        TlsFiles { ca: ca.into(), cert: None, key: None }
    }

    /// Authenticate with `cert` and `key`.
    pub fn client_auth(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> TlsFiles {
        self.cert = Some(cert.into());
        self.key = Some(key.into());
        self
    }
}

impl fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("tls", &self.tls)
            .finish()
    }
}

impl Default for EtcdConfig {
    fn default() -> EtcdConfig {
        EtcdConfig::new(["127.0.0.1:2379"])
    }
}

impl EtcdConfig {
    /// Settings for `endpoints`, with the default prefix and a 5 s request timeout.
    pub fn new(endpoints: impl IntoIterator<Item = impl Into<String>>) -> EtcdConfig {
        EtcdConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            prefix: DEFAULT_PREFIX.to_owned(),
            username: None,
            password: None,
            timeout: Duration::from_secs(5),
            tls: None,
        }
    }

    /// Keys go under `prefix` instead of [`DEFAULT_PREFIX`].
    pub fn prefix(mut self, prefix: impl Into<String>) -> EtcdConfig {
        let mut prefix = prefix.into();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        self.prefix = prefix;
        self
    }

    /// Authenticates as `username`.
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<String>) -> EtcdConfig {
        self.username = Some(username.into());
        self.password = Some(password.into());
        self
    }

    /// Uses TLS with these files.
    pub fn tls(mut self, files: TlsFiles) -> EtcdConfig {
        self.tls = Some(files);
        self
    }

    /// Sets the request timeout.
    pub fn timeout(mut self, timeout: Duration) -> EtcdConfig {
        self.timeout = timeout;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        let config = EtcdConfig::default().credentials("root", "hunter2");
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2") && shown.contains("<redacted>"), "{shown}");
    }
}
