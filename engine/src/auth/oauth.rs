//! The browser OAuth flow of the CLI (seed `acquireLocalRunnerTokenDetails`): start the
//! loopback callback server, print and open the authorize URL, wait for the browser to come
//! back with a code (bounded by a timeout), and exchange the code for a token.
//!
//! How the link is shown and how the browser is opened are the caller's: the CLI prints to
//! stderr and uses the system browser, tests drive a real HTTP client instead.
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::AuthScope;
use super::api::{self, ApiError, OAuthToken};
use super::callback_host::callback_host;
use super::loopback::{LoopbackCallbackServer, LoopbackError};
use super::pending::CallbackError;
use super::pkce::CODE_CHALLENGE_METHOD;
use crate::kandan_url::KandanUrl;

pub const AUTHORIZE_PATH: &str = "/api/v2/local-codex-runner/oauth/authorize";
/// The line printed before the authorize URL.
pub const AUTHORIZE_PROMPT: &str = "Authorize the local Codex runner:";
/// How long the flow waits for the browser to come back.
pub const DEFAULT_OAUTH_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Shows one message to the person (a line, or several separated by `\n`).
pub type Reporter = Arc<dyn Fn(&str) + Send + Sync>;
/// Opens a URL in a browser; an `Err` is reported and the flow keeps waiting, since the
/// person can open the printed link by hand.
pub type BrowserOpener = Arc<dyn Fn(&Url) -> Result<(), String> + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error(transparent)]
    Listen(LoopbackError),
    #[error(transparent)]
    Callback(#[from] CallbackError),
    #[error(
        "the browser authorization was not completed within {}; run the command again for a new link",
        describe_duration(*after)
    )]
    Timeout { after: Duration },
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl From<LoopbackError> for OAuthError {
    fn from(error: LoopbackError) -> OAuthError {
        match error {
            LoopbackError::Callback(error) => OAuthError::Callback(error),
            other => OAuthError::Listen(other),
        }
    }
}

/// Everything the browser flow needs besides the scope.
#[derive(Clone)]
pub struct OAuthOptions {
    pub kandan: KandanUrl,
    /// A client from [`crate::http`].
    pub http: reqwest::Client,
    /// `--oauth-callback-host`; see [`callback_host`].
    pub callback_host: Option<String>,
    pub open_browser: BrowserOpener,
    pub report: Reporter,
    pub timeout: Duration,
}

impl OAuthOptions {
    /// Options with the system browser, messages on stderr and a 10-minute timeout.
    pub fn new(kandan: KandanUrl, http: reqwest::Client) -> OAuthOptions {
        OAuthOptions {
            kandan,
            http,
            callback_host: None,
            open_browser: system_browser(),
            report: stderr_reporter(),
            timeout: DEFAULT_OAUTH_TIMEOUT,
        }
    }
}

impl fmt::Debug for OAuthOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthOptions")
            .field("kandan", &self.kandan.as_str())
            .field("callback_host", &self.callback_host)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Opens URLs with the operating system's default browser.
pub fn system_browser() -> BrowserOpener {
    Arc::new(|url: &Url| open::that_detached(url.as_str()).map_err(|error| error.to_string()))
}

/// Writes each message as a line on stderr.
pub fn stderr_reporter() -> Reporter {
    Arc::new(|message: &str| eprintln!("{message}"))
}

/// `<kandan>/api/v2/local-codex-runner/oauth/authorize?redirect_uri&state&code_challenge&
/// code_challenge_method=S256` plus `workspace&channel` for a channel scope, or
/// `onboarding=start` for `linzumi start`.
pub fn authorization_url(
    kandan: &KandanUrl,
    redirect_uri: &str,
    state: &str,
    code_challenge: &str,
    scope: &AuthScope,
) -> Url {
    let mut url = kandan.http_endpoint(AUTHORIZE_PATH);
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", state)
            .append_pair("code_challenge", code_challenge)
            .append_pair("code_challenge_method", CODE_CHALLENGE_METHOD);
        match scope {
            AuthScope::Channel { workspace, channel } => {
                query
                    .append_pair("workspace", workspace)
                    .append_pair("channel", channel);
            }
            AuthScope::Onboarding => {
                query.append_pair("onboarding", "start");
            }
            AuthScope::Unscoped => {}
        }
    }
    url
}

/// Runs the whole browser flow for `scope` and returns the granted token.
pub async fn acquire_token(
    options: &OAuthOptions,
    scope: &AuthScope,
) -> Result<OAuthToken, OAuthError> {
    let host = callback_host(&options.kandan, options.callback_host.as_deref());
    let mut server = LoopbackCallbackServer::start(&host).await?;
    let url = server.pending().authorization_url(&options.kandan, scope);
    (options.report)(&format!("{AUTHORIZE_PROMPT}\n{url}"));
    if let Err(reason) = (options.open_browser)(&url) {
        tracing::warn!(%reason, "could not open a browser");
        (options.report)(&format!(
            "Could not open a browser ({reason}); open the link above yourself."
        ));
    }
    let code = tokio::time::timeout(options.timeout, server.wait())
        .await
        .map_err(|_| OAuthError::Timeout {
            after: options.timeout,
        })??;
    drop(server);
    Ok(api::exchange_code(&options.http, &options.kandan, &code).await?)
}

fn describe_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        60 => "1 minute".to_owned(),
        _ if seconds >= 60 && seconds.is_multiple_of(60) => format!("{} minutes", seconds / 60),
        _ if duration.subsec_nanos() == 0 => format!("{seconds} s"),
        _ => format!("{duration:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kandan() -> KandanUrl {
        KandanUrl::parse("wss://serve.kandanai.com/socket?x=1").unwrap()
    }

    fn query(url: &Url) -> Vec<(String, String)> {
        url.query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    #[test]
    fn authorization_url_for_a_channel() {
        let url = authorization_url(
            &kandan(),
            "http://127.0.0.1:5000/callback",
            "st",
            "ch",
            &AuthScope::channel("acme", "dev ops"),
        );
        assert_eq!(url.scheme(), "https");
        assert_eq!(url.path(), AUTHORIZE_PATH);
        assert_eq!(
            query(&url),
            [
                ("redirect_uri", "http://127.0.0.1:5000/callback"),
                ("state", "st"),
                ("code_challenge", "ch"),
                ("code_challenge_method", "S256"),
                ("workspace", "acme"),
                ("channel", "dev ops"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
    }

    #[test]
    fn authorization_url_for_onboarding_and_unscoped() {
        let onboarding = authorization_url(
            &kandan(),
            "linzumi://oauth/callback",
            "s",
            "c",
            &AuthScope::Onboarding,
        );
        assert!(
            onboarding.as_str().ends_with(
                "oauth/authorize?redirect_uri=linzumi%3A%2F%2Foauth%2Fcallback&state=s&code_challenge=c&code_challenge_method=S256&onboarding=start"
            ),
            "{onboarding}"
        );
        let unscoped = authorization_url(&kandan(), "r", "s", "c", &AuthScope::Unscoped);
        assert_eq!(
            unscoped.as_str(),
            "https://serve.kandanai.com/api/v2/local-codex-runner/oauth/authorize?redirect_uri=r&state=s&code_challenge=c&code_challenge_method=S256"
        );
    }

    #[test]
    fn timeout_message_reads_well() {
        let error = OAuthError::Timeout {
            after: DEFAULT_OAUTH_TIMEOUT,
        };
        assert_eq!(
            error.to_string(),
            "the browser authorization was not completed within 10 minutes; run the command again for a new link"
        );
        assert_eq!(describe_duration(Duration::from_secs(60)), "1 minute");
        assert_eq!(describe_duration(Duration::from_secs(5)), "5 s");
        assert_eq!(describe_duration(Duration::from_millis(50)), "50ms");
    }
}
