//! Getting a local-runner token from Kandan and keeping it (seed `oauth.ts`, and the token
//! resolution of `index.ts`).
//!
//! - [`callback_host`]: where the loopback OAuth callback listens.
//! - [`pending`]: one authorization in flight: its `state`, its PKCE verifier, its redirect
//!   URI, and the check of the callback. Shared by the loopback flow and the desktop app's
//!   `linzumi://` deep link.
//! - [`pkce`]: the code verifier and its S256 challenge (RFC 7636).
//! - [`deep_link`]: the desktop's sign-in, completed by a `linzumi://oauth/callback` link.
//! - [`loopback`]: the local HTTP server the browser is redirected to.
//! - [`api`]: Kandan's token, validate and start-target endpoints.
//! - [`oauth`]: the whole browser flow ([`acquire_token`]).
//! - [`identity`]: who a token says it belongs to (unverified; only a default).
//! - [`token_store`]: where tokens are kept between runs ([`FileTokenStore`]: `~/.kandan/auth.json`).
//! - [`resolution`]: `--token`, else the cache (validated), else OAuth; and `linzumi start`'s
//!   re-scoping to its start target.
use std::fmt;

use serde::{Deserialize, Serialize};

pub mod api;
pub mod callback_host;
pub mod deep_link;
pub mod identity;
pub mod loopback;
pub mod oauth;
pub mod pending;
pub mod pkce;
pub mod resolution;
pub mod token_store;

pub use api::{
    ApiError, OAuthToken, StartTarget, exchange_code, fetch_start_target, validate_token,
};
pub use callback_host::callback_host;
pub use identity::{NoListenUser, TokenIdentity, default_listen_user, identity_from_token};
pub use loopback::{LoopbackCallbackServer, LoopbackError};
pub use oauth::{
    AUTHORIZE_PROMPT, BrowserOpener, DEFAULT_OAUTH_TIMEOUT, OAuthError, OAuthOptions, Reporter,
    acquire_token, authorization_url, stderr_reporter, system_browser,
};
pub use pending::{AuthorizationCode, CallbackError, CallbackParams, PendingAuthorization};
pub use pkce::{CODE_CHALLENGE_METHOD, CodeVerifier, InvalidVerifier};
pub use resolution::{
    CACHED_TOKEN_REJECTED, ResolveError, ResolvedToken, SignInError, StartToken, TokenSource,
    resolve_start_token, resolve_token, sign_in_and_save,
};
pub use token_store::{
    FileTokenStore, MemoryTokenStore, StoredToken, TokenKey, TokenStore, TokenStoreError,
};

/// A local-runner access token. Its `Debug` is redacted and it has no `Display`, so it
/// cannot end up in a log line or an error message by accident; [`Self::expose`] is the
/// one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    /// The token, remembered as a secret to keep out of logs and child environments.
    pub fn new(token: impl Into<String>) -> AccessToken {
        let token = token.into();
        crate::secrets::remember(&token);
        AccessToken(token)
    }

    /// The token itself, to put in an `Authorization` header or a socket URL.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(REDACTED)")
    }
}

/// What a token is asked for and validated against.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuthScope {
    /// No workspace or channel (`linzumi auth` without `--workspace/--channel`).
    Unscoped,
    /// One workspace and channel.
    Channel { workspace: String, channel: String },
    /// `linzumi start`'s onboarding: Kandan picks the workspace (`onboarding=start`).
    Onboarding,
}

impl AuthScope {
    pub fn channel(workspace: impl Into<String>, channel: impl Into<String>) -> AuthScope {
        AuthScope::Channel {
            workspace: workspace.into(),
            channel: channel.into(),
        }
    }

    /// The `(workspace, channel)` to send to the authorize and validate endpoints.
    pub fn workspace_channel(&self) -> Option<(&str, &str)> {
        match self {
            AuthScope::Channel { workspace, channel } => Some((workspace, channel)),
            AuthScope::Unscoped | AuthScope::Onboarding => None,
        }
    }
}

impl fmt::Display for AuthScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthScope::Unscoped => f.write_str("any workspace"),
            AuthScope::Channel { workspace, channel } => write!(f, "{workspace}/{channel}"),
            AuthScope::Onboarding => f.write_str("start onboarding"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_debug_is_redacted() {
        let token = AccessToken::new("secret-token");
        assert_eq!(format!("{token:?}"), "AccessToken(REDACTED)");
        assert_eq!(token.expose(), "secret-token");
    }

    #[test]
    fn scope_serializes_with_a_kind() {
        let json = serde_json::to_value(AuthScope::channel("acme", "codex")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "channel", "workspace": "acme", "channel": "codex"})
        );
        let onboarding: AuthScope = serde_json::from_str(r#"{"kind":"onboarding"}"#).unwrap();
        assert_eq!(onboarding, AuthScope::Onboarding);
        assert_eq!(AuthScope::channel("a", "b").to_string(), "a/b");
    }
}
