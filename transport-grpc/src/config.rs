//! What a [`GrpcTransport`](crate::GrpcTransport) is built with.

use rmicro_core::Result;
use rmicro_core::raw::plugin::{Kind, Settings};
use rmicro_core::transport::{DEFAULT_MAX_MESSAGE_SIZE, TlsConfig};

/// Settings for [`GrpcTransport::connect`](crate::GrpcTransport::connect); plain data, so it can
/// come from code, [`Settings`] or a config file. `Debug` shows no private key
/// ([`TlsConfig`]'s own hides it).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct GrpcConfig {
    /// The largest message either side accepts (default 4 MiB, as gRPC's); larger messages are
    /// refused (RESOURCE_EXHAUSTED / OUT_OF_RANGE), so one call cannot exhaust a peer's memory.
    pub max_message_size: usize,
    /// TLS for listening (identity) and dialling (trust); `None` for plaintext.
    pub tls: Option<TlsConfig>,
}

impl Default for GrpcConfig {
    fn default() -> GrpcConfig {
        GrpcConfig { max_message_size: DEFAULT_MAX_MESSAGE_SIZE, tls: None }
    }
}

impl GrpcConfig {
    /// With `bytes` as the largest message either side accepts.
    pub fn with_max_message_size(mut self, bytes: usize) -> GrpcConfig {
        self.max_message_size = bytes;
        self
    }

    /// Serving and dialling over TLS (rustls) as `tls` says.
    pub fn with_tls(mut self, tls: TlsConfig) -> GrpcConfig {
        self.tls = Some(tls);
        self
    }

    /// The defaults with what `settings` (scoped to transports) say: `max_message_size` and the
    /// TLS settings ([`Settings::tls`]).
    pub fn from_settings(settings: &Settings) -> Result<GrpcConfig> {
        let mut config = GrpcConfig::default();
        if let Some(bytes) = settings.parse("max_message_size")? {
            config.max_message_size = bytes;
        }
        config.tls = settings.tls()?;
        Ok(config)
    }

    /// The defaults with what the `MICRO_TRANSPORT_*` environment variables say.
    pub fn from_env() -> Result<GrpcConfig> {
        GrpcConfig::from_settings(&Settings::from_env().scoped(Kind::Transport))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_private_key() {
        let config = GrpcConfig::default().with_tls(TlsConfig::default().identity("CERT", "PRIVATE-KEY"));
        let shown = format!("{config:?}");
        assert!(!shown.contains("PRIVATE-KEY"), "{shown}");
    }
}
