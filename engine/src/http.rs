//! The HTTP client for Kandan's REST endpoints (OAuth token exchange, validation, start
//! target): our rustls trust (system roots plus `KANDAN_TLS_CA_FILE`, see [`crate::tls`]),
//! bounded timeouts, a `linzumi/<version>` user agent, and no automatic redirects.
//!
//! reqwest is built with `rustls-no-provider`, so it has no TLS of its own: every client
//! must be handed a rustls configuration, even one that only ever speaks plain `http://`.
//!
//! Redirects are not followed because these requests carry the runner's bearer token; a
//! redirect is reported with its target instead (usually `http://` given for an
//! `https://`-only server), so the person can fix `--kandan-url`.
use std::sync::Arc;
use std::time::Duration;

use crate::kandan_url::KandanUrl;
use crate::tls::{self, TlsError};

/// `linzumi/<engine version>`.
pub const USER_AGENT: &str = concat!("linzumi/", env!("CARGO_PKG_VERSION"));
/// How long opening a TCP (and TLS) connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one whole request, body included, may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum HttpClientError {
    #[error("TLS setup for Kandan's HTTP API failed: {0}")]
    Tls(#[from] TlsError),
    #[error("could not set up the HTTP client for Kandan: {0}")]
    Build(String),
}

/// A builder with our TLS, timeouts, user agent and redirect policy; callers may adjust it.
pub fn client_builder(tls: Arc<rustls::ClientConfig>) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_backend_preconfigured((*tls).clone())
        .user_agent(USER_AGENT)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
}

/// A client trusting `tls`.
pub fn client(tls: Arc<rustls::ClientConfig>) -> Result<reqwest::Client, HttpClientError> {
    client_builder(tls)
        .build()
        .map_err(|error| HttpClientError::Build(error.without_url().to_string()))
}

/// The client for talking to `kandan`, trusting what [`tls::client_config_from_env`] trusts.
///
/// For a plain `http://` Kandan a broken trust setup (no system roots, a missing
/// `KANDAN_TLS_CA_FILE`) is not fatal: the client gets an empty trust store, which still
/// refuses every certificate, so nothing is ever accepted unverified.
pub fn client_for(kandan: &KandanUrl) -> Result<reqwest::Client, HttpClientError> {
    client(trust_for(kandan, tls::client_config_from_env())?)
}

/// The trust to use for `kandan`, given what loading the configured trust gave.
fn trust_for(
    kandan: &KandanUrl,
    configured: Result<Arc<rustls::ClientConfig>, TlsError>,
) -> Result<Arc<rustls::ClientConfig>, HttpClientError> {
    match configured {
        Ok(config) => Ok(config),
        Err(error) if !kandan.is_tls() => {
            tracing::debug!(%error, "no TLS trust available; Kandan is plain http");
            untrusting_tls_config()
        }
        Err(error) => Err(error.into()),
    }
}

/// A rustls configuration that trusts no certificate at all.
pub fn untrusting_tls_config() -> Result<Arc<rustls::ClientConfig>, HttpClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::from)?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// "HTTP 401", or for a redirect "HTTP 301 redirecting to <target>; use that address in
/// --kandan-url": how Kandan's endpoints describe an unexpected answer.
pub(crate) fn describe_status(response: &reqwest::Response) -> String {
    let status = response.status();
    let target = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|location| location.to_str().ok())
        .filter(|_| status.is_redirection());
    match target {
        Some(target) => format!(
            "HTTP {} redirecting to {target}; use that address in --kandan-url",
            status.as_u16()
        ),
        None => format!("HTTP {}", status.as_u16()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agent_names_the_version() {
        assert_eq!(USER_AGENT, format!("linzumi/{}", env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn broken_trust_only_matters_for_tls() {
        let broken = || Err(TlsError::NoRoots("empty".into()));
        let plain = KandanUrl::parse("ws://127.0.0.1:4160").unwrap();
        assert!(trust_for(&plain, broken()).is_ok());
        let secure = KandanUrl::parse("wss://serve.kandanai.com").unwrap();
        let error = trust_for(&secure, broken()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "TLS setup for Kandan's HTTP API failed: no trusted root certificates: the system \
             store is empty or unreadable (empty)"
        );
    }

    #[test]
    fn a_client_builds_without_a_global_crypto_provider() {
        // reqwest would panic here if it needed a process-wide rustls provider.
        assert!(client(untrusting_tls_config().unwrap()).is_ok());
    }
}
