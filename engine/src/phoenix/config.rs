//! How a [`PhoenixClient`](super::PhoenixClient) connects and paces itself.
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::backoff::Backoff;
use crate::kandan_url::{KandanUrl, redact};

/// phoenix.js `heartbeatIntervalMs`.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);
/// phoenix.js `DEFAULT_TIMEOUT`, for joins and pushes.
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one attempt to open the websocket may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames above this are dropped with a log line; the connection stays up.
pub const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;

#[derive(Clone)]
pub struct ClientConfig {
    /// The full socket URL, token included; never logged as is.
    pub url: Url,
    /// Trust for wss:// connections; `None` uses [`crate::tls::client_config_from_env`].
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub heartbeat_interval: Duration,
    pub push_timeout: Duration,
    pub connect_timeout: Duration,
    pub reconnect: Backoff,
    pub rejoin: Backoff,
    pub max_frame_bytes: usize,
}

impl ClientConfig {
    pub fn new(kandan: &KandanUrl, token: &str) -> ClientConfig {
        ClientConfig {
            url: kandan.phoenix_socket_url(token),
            tls: None,
            heartbeat_interval: HEARTBEAT_INTERVAL,
            push_timeout: PUSH_TIMEOUT,
            connect_timeout: CONNECT_TIMEOUT,
            reconnect: Backoff::reconnect(),
            rejoin: Backoff::rejoin(),
            max_frame_bytes: MAX_FRAME_BYTES,
        }
    }

    /// The URL with its token hidden, for logs and error messages.
    pub fn display_url(&self) -> String {
        redact(&self.url)
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("url", &self.display_url())
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("push_timeout", &self.push_timeout)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_token() {
        let config = ClientConfig::new(&KandanUrl::parse("ws://h").unwrap(), "s3cret-token");
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret-token"), "{shown}");
        assert!(shown.contains("REDACTED"));
    }
}
