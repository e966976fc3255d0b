//! What an [`HttpTransport`](crate::HttpTransport) is built with.

use rmicro_core::Result;
use rmicro_core::raw::plugin::{Kind, Settings};
use rmicro_core::transport::DEFAULT_MAX_MESSAGE_SIZE;

/// Settings for [`HttpTransport::connect`](crate::HttpTransport::connect); plain data, so it can
/// come from code, [`Settings`] or a config file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct HttpConfig {
    /// The largest message either side accepts (default 4 MiB); larger bodies and frames are
    /// refused with 413, so one call cannot exhaust a peer's memory.
    pub max_message_size: usize,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig { max_message_size: DEFAULT_MAX_MESSAGE_SIZE }
    }
}

impl HttpConfig {
    /// With `bytes` as the largest message either side accepts.
    pub fn with_max_message_size(mut self, bytes: usize) -> HttpConfig {
        self.max_message_size = bytes;
        self
    }

    /// The defaults with what `settings` (scoped to transports) say: `max_message_size`.
    pub fn from_settings(settings: &Settings) -> Result<HttpConfig> {
        let mut config = HttpConfig::default();
        if let Some(bytes) = settings.parse("max_message_size")? {
            config.max_message_size = bytes;
        }
        Ok(config)
    }

    /// The defaults with what the `MICRO_TRANSPORT_*` environment variables say.
    pub fn from_env() -> Result<HttpConfig> {
        HttpConfig::from_settings(&Settings::from_env().scoped(Kind::Transport))
    }
}
