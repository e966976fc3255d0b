//! [`Settings`]: configuration by key, as `MICRO_*` variables and flags give it, and the typed
//! readings backends take of it.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::Kind;
use crate::error::{Error, Result};
use crate::transport::TlsConfig;

/// Configuration as text by key: what `MICRO_*` environment variables and command-line flags
/// say. Keys are lowercase with `_` (`MICRO_REGISTRY_ADDRESS` and `--registry-address` are both
/// `registry_address`). A view [`scoped`](Settings::scoped) to a kind reads its keys without the
/// prefix, so a backend reads `address` and `tls_cert` whatever its kind.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Settings {
    values: BTreeMap<String, String>,
    scope: Option<Kind>,
}

/// Keys whose values `Debug` hides.
const SECRET_WORDS: &[&str] = &["password", "token", "secret", "nkey", "credentials"];

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (key, value) in &self.values {
            let secret = SECRET_WORDS.iter().any(|word| key.contains(word));
            map.entry(key, if secret { &"<redacted>" } else { value });
        }
        map.finish()
    }
}

/// The form every key is kept in: lowercase, words joined by `_`.
pub fn normalize_key(key: &str) -> String {
    key.trim().to_ascii_lowercase().replace('-', "_")
}

impl Settings {
    /// No settings.
    pub fn new() -> Settings {
        Settings::default()
    }

    /// Every `MICRO_*` environment variable, keyed by the rest of its name.
    pub fn from_env() -> Settings {
        let mut settings = Settings::new();
        for (name, value) in std::env::vars() {
            if let Some(key) = name.strip_prefix("MICRO_") {
                settings.set(key, value);
            }
        }
        settings
    }

    /// Sets `key` (unscoped, e.g. `registry_address`) to `value`.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.values.insert(normalize_key(key), value.into());
    }

    /// With `key` set to `value`.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Settings {
        self.set(key, value);
        self
    }

    /// These settings with `other`'s over them.
    pub fn overlaid(mut self, other: &Settings) -> Settings {
        self.values.extend(other.values.iter().map(|(k, v)| (k.clone(), v.clone())));
        self
    }

    /// The view a backend of `kind` reads: `get("address")` reads `{kind}_address`, and
    /// [`chosen`](Settings::chosen) the backend's name.
    pub fn scoped(&self, kind: Kind) -> Settings {
        Settings { values: self.values.clone(), scope: Some(kind) }
    }

    /// The keys set, unscoped.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    fn full_key(&self, key: &str) -> String {
        match self.scope {
            Some(kind) => format!("{kind}_{}", normalize_key(key)),
            None => normalize_key(key),
        }
    }

    /// The value of `key` (within the scope), if set and not empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(&self.full_key(key)).map(String::as_str).filter(|v| !v.trim().is_empty())
    }

    /// The backend name chosen for the scope's kind (`MICRO_REGISTRY`), if any.
    pub fn chosen(&self) -> Option<&str> {
        self.values.get(self.scope?.as_str()).map(String::as_str).filter(|v| !v.trim().is_empty())
    }

    fn invalid(&self, key: &str, what: &str, value: &str) -> Error {
        Error::bad_request(format!("setting {} must be {what}, not {value:?}", self.full_key(key)))
            .with_id("rmicro.config")
    }

    /// `key` as a number (or anything else that parses from text).
    pub fn parse<T: FromStr>(&self, key: &str) -> Result<Option<T>> {
        self.get(key).map(|v| v.trim().parse::<T>().map_err(|_| self.invalid(key, "a number", v))).transpose()
    }

    /// `key` as a duration: seconds (`1.5`) or with a unit (`250ms`, `2s`, `1m`, `1h`); zero or
    /// negative is refused.
    pub fn duration(&self, key: &str) -> Result<Option<Duration>> {
        let Some(value) = self.get(key) else { return Ok(None) };
        let text = value.trim();
        let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
            Some(at) => text.split_at(at),
            None => (text, "s"),
        };
        let scale = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(self.invalid(key, "a duration such as 1.5, 250ms, 2s or 1m", value)),
        };
        match number.trim().parse::<f64>() {
            Ok(n) if n > 0.0 && (n * scale).is_finite() && n * scale < 1e10 => {
                Ok(Some(Duration::from_secs_f64(n * scale)))
            }
            _ => Err(self.invalid(key, "a positive duration such as 1.5, 250ms, 2s or 1m", value)),
        }
    }

    /// `key` as a yes/no (`true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`).
    pub fn boolean(&self, key: &str) -> Result<Option<bool>> {
        let Some(value) = self.get(key) else { return Ok(None) };
        match value.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Some(true)),
            "false" | "0" | "no" | "off" => Ok(Some(false)),
            _ => Err(self.invalid(key, "true or false", value)),
        }
    }

    /// `key` as a comma-separated list, items trimmed, empty ones dropped.
    pub fn list(&self, key: &str) -> Option<Vec<String>> {
        self.get(key).map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect())
    }

    /// The contents of the file whose path `key` holds.
    pub fn file(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let Some(path) = self.get(key) else { return Ok(None) };
        std::fs::read(path).map(Some).map_err(|e| {
            Error::bad_request(format!("setting {}: cannot read {path:?}: {e}", self.full_key(key)))
                .with_id("rmicro.config")
        })
    }

    /// Two settings that only make sense together (a user and its password, a certificate and
    /// its key): both or neither, else a `BadRequest` naming them.
    pub fn pair(&self, first: &str, second: &str) -> Result<Option<(&str, &str)>> {
        match (self.get(first), self.get(second)) {
            (Some(a), Some(b)) => Ok(Some((a, b))),
            (None, None) => Ok(None),
            _ => Err(Error::bad_request(format!(
                "settings {} and {} go together",
                self.full_key(first),
                self.full_key(second)
            ))
            .with_id("rmicro.config")),
        }
    }

    /// The TLS configuration the [`TLS_SETTINGS`](super::TLS_SETTINGS) describe: an identity from `tls_cert` and
    /// `tls_key`, trust from `tls_ca` (checked against `tls_server_name`, default `localhost`);
    /// `None` when none is set.
    pub fn tls(&self) -> Result<Option<TlsConfig>> {
        let identity = self.pair("tls_cert", "tls_key")?;
        let ca = self.file("tls_ca")?;
        if identity.is_none() && ca.is_none() {
            return Ok(None);
        }
        let mut tls = TlsConfig::default();
        if identity.is_some() {
            if let (Some(cert), Some(key)) = (self.file("tls_cert")?, self.file("tls_key")?) {
                tls = tls.identity(cert, key);
            }
        }
        if let Some(ca) = ca {
            tls = tls.trust(ca, self.get("tls_server_name").unwrap_or("localhost"));
        }
        Ok(Some(tls))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoped_settings_read_their_kind_s_keys() {
        let settings =
            Settings::new().with("REGISTRY", "etcd").with("registry-address", "a:1,b:2").with("broker_address", "x");
        let registry = settings.scoped(Kind::Registry);
        assert_eq!(registry.chosen(), Some("etcd"));
        assert_eq!(registry.list("address"), Some(vec!["a:1".to_owned(), "b:2".to_owned()]));
        assert_eq!(settings.scoped(Kind::Broker).get("address"), Some("x"));
        assert_eq!(settings.scoped(Kind::Transport).get("address"), None);
    }

    #[test]
    fn durations_take_seconds_or_a_unit_and_refuse_nonsense() {
        let s = Settings::new().with("a", "1.5").with("b", "250ms").with("c", "2m").with("d", "soon").with("e", "-1");
        assert_eq!(s.duration("a").unwrap(), Some(Duration::from_millis(1500)));
        assert_eq!(s.duration("b").unwrap(), Some(Duration::from_millis(250)));
        assert_eq!(s.duration("c").unwrap(), Some(Duration::from_secs(120)));
        assert!(s.duration("d").unwrap_err().detail.contains("setting d must be"));
        assert!(s.duration("e").is_err());
        assert_eq!(s.duration("missing").unwrap(), None);
    }

    #[test]
    fn debug_hides_secrets() {
        let s = Settings::new().with("broker_password", "hunter2").with("broker_address", "nats://x");
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2") && shown.contains("nats://x"), "{shown}");
    }

    #[test]
    fn tls_needs_certificate_and_key_together() {
        let err = Settings::new().with("transport_tls_cert", "/nonexistent").scoped(Kind::Transport).tls().unwrap_err();
        assert!(err.detail.contains("transport_tls_cert"), "{err}");
        assert_eq!(Settings::new().scoped(Kind::Transport).tls().unwrap().map(|_| ()), None);
    }
}
