//! How to reach etcd.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use rmicro_core::raw::plugin::{Kind, Settings};
use rmicro_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// The key prefix go-micro uses: nodes live at `/micro/registry/<service>/<node-id>`.
pub const DEFAULT_PREFIX: &str = "/micro/registry/";

/// Connection settings for [`EtcdRegistry`](crate::EtcdRegistry).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct EtcdConfig {
    /// etcd endpoints (default `["127.0.0.1:2379"]`); the client fails over between them.
    pub endpoints: Vec<String>,
    /// Key prefix (default [`DEFAULT_PREFIX`], go-micro's, so both see the same services).
    pub prefix: String,
    /// User name, for etcd auth.
    pub username: Option<String>,
    /// Password, for etcd auth.
    pub password: Option<String>,
    /// How long a request to etcd may take (default 5 s): one to an etcd that is coming back
    /// could otherwise wait indefinitely.
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
    pub fn with_client_auth(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> TlsFiles {
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
        EtcdConfig {
            endpoints: vec!["127.0.0.1:2379".to_owned()],
            prefix: DEFAULT_PREFIX.to_owned(),
            username: None,
            password: None,
            timeout: Duration::from_secs(5),
            tls: None,
        }
    }
}

fn invalid(detail: &str) -> Error {
    Error::bad_request(detail).with_id("rmicro.config")
}

impl EtcdConfig {
    /// Talks to etcd at `endpoints`.
    pub fn with_endpoints(mut self, endpoints: impl IntoIterator<Item = impl Into<String>>) -> EtcdConfig {
        self.endpoints = endpoints.into_iter().map(Into::into).collect();
        self
    }

    /// Keys go under `prefix` (a `/` is added if it lacks one) instead of [`DEFAULT_PREFIX`].
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> EtcdConfig {
        let mut prefix = prefix.into();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        self.prefix = prefix;
        self
    }

    /// Authenticates as `username`.
    pub fn with_credentials(mut self, username: impl Into<String>, password: impl Into<String>) -> EtcdConfig {
        self.username = Some(username.into());
        self.password = Some(password.into());
        self
    }

    /// Uses TLS with these files.
    pub fn with_tls(mut self, files: TlsFiles) -> EtcdConfig {
        self.tls = Some(files);
        self
    }

    /// Sets the request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> EtcdConfig {
        self.timeout = timeout;
        self
    }

    /// The configuration registry-scoped `settings` describe, over the defaults: `address`
    /// (endpoints, comma-separated), `prefix`, `username` with `password`, `timeout`, and
    /// `tls_ca` with, for client authentication, `tls_cert` and `tls_key` (crate feature `tls`).
    ///
    /// ```
    /// use rmicro_core::raw::plugin::{Kind, Settings};
    /// use rmicro_registry_etcd::EtcdConfig;
    ///
    /// let settings = Settings::new().with("registry_address", "10.0.0.1:2379,10.0.0.2:2379");
    /// let config = EtcdConfig::from_settings(&settings.scoped(Kind::Registry))?;
    /// assert_eq!(config.endpoints, ["10.0.0.1:2379", "10.0.0.2:2379"]);
    /// # Ok::<(), rmicro_core::Error>(())
    /// ```
    pub fn from_settings(settings: &Settings) -> Result<EtcdConfig> {
        let mut config = EtcdConfig::default();
        if let Some(endpoints) = settings.list("address") {
            config.endpoints = endpoints;
        }
        if let Some(prefix) = settings.get("prefix") {
            config = config.with_prefix(prefix);
        }
        if let Some((username, password)) = settings.pair("username", "password")? {
            config = config.with_credentials(username, password);
        }
        if let Some(timeout) = settings.duration("timeout")? {
            config.timeout = timeout;
        }
        config.tls = tls_files(settings)?;
        Ok(config)
    }

    /// The configuration the `MICRO_REGISTRY_*` environment variables describe.
    pub fn from_env() -> Result<EtcdConfig> {
        EtcdConfig::from_settings(&Settings::from_env().scoped(Kind::Registry))
    }
}

/// The TLS files `tls_ca`, `tls_cert` and `tls_key` name, if any.
#[cfg(feature = "tls")]
fn tls_files(settings: &Settings) -> Result<Option<TlsFiles>> {
    let (ca, cert, key) = (settings.get("tls_ca"), settings.get("tls_cert"), settings.get("tls_key"));
    let files = match ca {
        Some(ca) => TlsFiles::new(ca),
        None if cert.is_none() && key.is_none() => return Ok(None),
        None => return Err(invalid("settings registry_tls_cert and registry_tls_key need registry_tls_ca")),
    };
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(files.with_client_auth(cert, key))),
        (None, None) => Ok(Some(files)),
        _ => Err(invalid("settings registry_tls_cert and registry_tls_key go together")),
    }
}

/// Without the feature `tls`, TLS settings are refused rather than ignored.
#[cfg(not(feature = "tls"))]
fn tls_files(settings: &Settings) -> Result<Option<TlsFiles>> {
    match ["tls_ca", "tls_cert", "tls_key"].into_iter().find(|key| settings.get(key).is_some()) {
        Some(key) => {
            Err(invalid(&format!("setting registry_{key}: etcd TLS needs the rmicro-registry-etcd feature \"tls\"")))
        }
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        let config = EtcdConfig::default().with_credentials("root", "hunter2");
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2") && shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn settings_set_every_knob_over_the_defaults() {
        let settings = Settings::new()
            .with("registry_address", "a:2379, b:2379")
            .with("registry_prefix", "/mine")
            .with("registry_username", "root")
            .with("registry_password", "hunter2")
            .with("registry_timeout", "2s");
        let config = EtcdConfig::from_settings(&settings.scoped(Kind::Registry)).unwrap();
        let expected = EtcdConfig::default()
            .with_endpoints(["a:2379", "b:2379"])
            .with_prefix("/mine/")
            .with_credentials("root", "hunter2")
            .with_timeout(Duration::from_secs(2));
        assert_eq!(config, expected);
        assert_eq!(EtcdConfig::from_settings(&Settings::new().scoped(Kind::Registry)).unwrap(), EtcdConfig::default());
        let alone = Settings::new().with("registry_username", "root").scoped(Kind::Registry);
        assert!(EtcdConfig::from_settings(&alone).unwrap_err().detail.contains("go together"));
    }

    #[test]
    fn tls_settings_need_the_feature_and_a_ca() {
        let settings = Settings::new().with("registry_tls_cert", "c.pem").with("registry_tls_key", "k.pem");
        let err = EtcdConfig::from_settings(&settings.clone().scoped(Kind::Registry)).unwrap_err();
        assert!(err.detail.contains("registry_tls"), "{err}");
        let settings = settings.with("registry_tls_ca", "ca.pem").scoped(Kind::Registry);
        match EtcdConfig::from_settings(&settings) {
            Ok(config) => assert_eq!(config.tls, Some(TlsFiles::new("ca.pem").with_client_auth("c.pem", "k.pem"))),
            Err(err) => assert!(!cfg!(feature = "tls") && err.detail.contains("feature \"tls\""), "{err}"),
        }
    }
}
