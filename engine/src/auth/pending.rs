//! One browser authorization in flight: the random `state` sent to Kandan, the PKCE verifier
//! whose challenge goes with it, the redirect URI the code will be bound to, and the check of
//! the callback that comes back.
//!
//! The check does not depend on how the callback arrives: the CLI's loopback server
//! ([`super::loopback`]) and the desktop app's `linzumi://oauth/callback` deep link both hand
//! it the callback's `code` and `state`. A callback is accepted once; a second one (a replay,
//! or a second tab) is refused.
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use url::Url;

use super::AuthScope;
use super::pkce::CodeVerifier;
use crate::kandan_url::KandanUrl;

/// The redirect URI of the desktop app's deep link.
pub const DEEP_LINK_REDIRECT_URI: &str = "linzumi://oauth/callback";

/// Why a callback was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    #[error("the OAuth callback is missing its authorization code or state")]
    MissingCode,
    #[error("local runner OAuth state mismatch")]
    StateMismatch,
    #[error(
        "this local runner authorization was already completed; start a new one to authorize again"
    )]
    AlreadyCompleted,
    #[error("Kandan did not authorize the local runner: {0}")]
    Denied(String),
}

/// The query of a callback: `code` and `state`, or an OAuth `error` instead of a code.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
}

impl CallbackParams {
    /// Reads `code`, `state` and `error` from a query string (without the `?`).
    pub fn from_query(query: &str) -> CallbackParams {
        let mut params = CallbackParams::default();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match key.as_ref() {
                "code" => &mut params.code,
                "state" => &mut params.state,
                "error" => &mut params.error,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value.into_owned());
            }
        }
        params
    }

    /// Reads the callback from a full URL such as `linzumi://oauth/callback?code=…&state=…`.
    pub fn from_url(url: &Url) -> CallbackParams {
        CallbackParams::from_query(url.query().unwrap_or(""))
    }
}

impl fmt::Debug for CallbackParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackParams")
            .field("code", &self.code.as_ref().map(|_| "REDACTED"))
            .field("state", &self.state)
            .field("error", &self.error)
            .finish()
    }
}

/// An accepted authorization code, ready for [`super::exchange_code`], with the redirect
/// URI it was issued for and the PKCE verifier of its authorization. `Debug` hides the code
/// and the verifier.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthorizationCode {
    code: String,
    redirect_uri: String,
    verifier: CodeVerifier,
}

impl AuthorizationCode {
    pub fn new(
        code: impl Into<String>,
        redirect_uri: impl Into<String>,
        verifier: CodeVerifier,
    ) -> AuthorizationCode {
        AuthorizationCode {
            code: code.into(),
            redirect_uri: redirect_uri.into(),
            verifier,
        }
    }

    pub fn expose(&self) -> &str {
        &self.code
    }

    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// The verifier the token exchange must send.
    pub fn verifier(&self) -> &CodeVerifier {
        &self.verifier
    }
}

impl fmt::Debug for AuthorizationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationCode")
            .field("code", &"REDACTED")
            .field("redirect_uri", &self.redirect_uri)
            .field("verifier", &self.verifier)
            .finish()
    }
}

/// An authorization waiting for its callback. Shareable (`&self` methods) so a server task
/// can complete it while another task waits.
pub struct PendingAuthorization {
    state: String,
    redirect_uri: String,
    /// Never leaves this process before the token exchange; Kandan sees its challenge.
    verifier: CodeVerifier,
    completed: AtomicBool,
}

impl PendingAuthorization {
    /// A new authorization with a fresh random state (18 random bytes, base64url) and a
    /// fresh PKCE verifier.
    pub fn new(redirect_uri: impl Into<String>) -> PendingAuthorization {
        let state = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 18]>());
        PendingAuthorization::with_state(redirect_uri, state)
    }

    /// An authorization for the desktop app's deep link.
    pub fn for_deep_link() -> PendingAuthorization {
        PendingAuthorization::new(DEEP_LINK_REDIRECT_URI)
    }

    /// An authorization with a given state (a test's) and a fresh PKCE verifier.
    pub fn with_state(
        redirect_uri: impl Into<String>,
        state: impl Into<String>,
    ) -> PendingAuthorization {
        PendingAuthorization {
            state: state.into(),
            redirect_uri: redirect_uri.into(),
            verifier: CodeVerifier::generate(),
            completed: AtomicBool::new(false),
        }
    }

    pub fn state(&self) -> &str {
        &self.state
    }

    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// The PKCE challenge the authorize URL carries (the verifier stays here).
    pub fn code_challenge(&self) -> String {
        self.verifier.challenge()
    }

    /// The browser's starting point for this authorization.
    pub fn authorization_url(&self, kandan: &KandanUrl, scope: &AuthScope) -> Url {
        super::oauth::authorization_url(
            kandan,
            &self.redirect_uri,
            &self.state,
            &self.code_challenge(),
            scope,
        )
    }

    /// Checks a callback. A missing code or state, or the wrong state, is refused without
    /// using up the authorization (a forged request must not spoil the real one); an OAuth
    /// `error` with the right state, and the first good callback, complete it; anything
    /// after that is [`CallbackError::AlreadyCompleted`].
    pub fn complete(&self, params: &CallbackParams) -> Result<AuthorizationCode, CallbackError> {
        let state = non_blank(&params.state).ok_or(CallbackError::MissingCode)?;
        let code = non_blank(&params.code);
        let error = non_blank(&params.error);
        if code.is_none() && error.is_none() {
            return Err(CallbackError::MissingCode);
        }
        if !constant_time_eq(state.as_bytes(), self.state.as_bytes()) {
            return Err(CallbackError::StateMismatch);
        }
        if self.completed.swap(true, Ordering::SeqCst) {
            return Err(CallbackError::AlreadyCompleted);
        }
        match (code, error) {
            (_, Some(error)) => Err(CallbackError::Denied(error.to_owned())),
            (Some(code), None) => Ok(AuthorizationCode::new(
                code,
                self.redirect_uri.clone(),
                self.verifier.clone(),
            )),
            (None, None) => Err(CallbackError::MissingCode),
        }
    }

    /// [`Self::complete`] for a callback URL (the desktop app's deep link).
    pub fn complete_url(&self, url: &Url) -> Result<AuthorizationCode, CallbackError> {
        self.complete(&CallbackParams::from_url(url))
    }

    pub fn is_completed(&self) -> bool {
        self.completed.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for PendingAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingAuthorization")
            .field("redirect_uri", &self.redirect_uri)
            .field("completed", &self.is_completed())
            .finish_non_exhaustive()
    }
}

fn non_blank(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|value| !value.trim().is_empty())
}

/// Compares without stopping at the first difference, so timing does not reveal the state.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(code: Option<&str>, state: Option<&str>) -> CallbackParams {
        CallbackParams {
            code: code.map(str::to_owned),
            state: state.map(str::to_owned),
            error: None,
        }
    }

    #[test]
    fn states_are_random_and_url_safe() {
        let a = PendingAuthorization::new("http://127.0.0.1:1/callback");
        let b = PendingAuthorization::new("http://127.0.0.1:1/callback");
        assert_ne!(a.state(), b.state());
        assert_eq!(a.state().len(), 24);
        assert!(
            a.state()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }

    #[test]
    fn a_good_callback_yields_the_code_bound_to_the_redirect_and_verifier() {
        let pending = PendingAuthorization::with_state("linzumi://oauth/callback", "s1");
        let code = pending.complete(&params(Some("c1"), Some("s1"))).unwrap();
        assert_eq!(code.expose(), "c1");
        assert_eq!(code.redirect_uri(), "linzumi://oauth/callback");
        assert_eq!(code.verifier().challenge(), pending.code_challenge());
        let shown = format!("{code:?}");
        assert!(!shown.contains("c1") && !shown.contains(code.verifier().expose()));
    }

    #[test]
    fn each_authorization_has_its_own_verifier() {
        let a = PendingAuthorization::with_state("r", "s");
        let b = PendingAuthorization::with_state("r", "s");
        assert_ne!(a.code_challenge(), b.code_challenge());
    }

    #[test]
    fn missing_or_blank_code_or_state_is_refused() {
        let pending = PendingAuthorization::with_state("r", "s1");
        for bad in [
            params(None, Some("s1")),
            params(Some("c"), None),
            params(Some(" "), Some("s1")),
            params(Some("c"), Some("")),
            params(None, None),
        ] {
            assert_eq!(pending.complete(&bad), Err(CallbackError::MissingCode));
        }
        assert!(!pending.is_completed());
    }

    #[test]
    fn a_wrong_state_is_refused_and_does_not_spoil_the_authorization() {
        let pending = PendingAuthorization::with_state("r", "s1");
        let error = pending
            .complete(&params(Some("c"), Some("forged")))
            .unwrap_err();
        assert_eq!(error, CallbackError::StateMismatch);
        assert_eq!(error.to_string(), "local runner OAuth state mismatch");
        let code = pending.complete(&params(Some("c"), Some("s1"))).unwrap();
        assert_eq!((code.expose(), code.redirect_uri()), ("c", "r"));
    }

    #[test]
    fn a_second_completion_is_refused() {
        let pending = PendingAuthorization::with_state("r", "s1");
        pending.complete(&params(Some("c"), Some("s1"))).unwrap();
        assert_eq!(
            pending.complete(&params(Some("c"), Some("s1"))),
            Err(CallbackError::AlreadyCompleted)
        );
        assert_eq!(
            pending.complete(&params(Some("other"), Some("s1"))),
            Err(CallbackError::AlreadyCompleted)
        );
    }

    #[test]
    fn an_oauth_error_with_the_right_state_ends_the_authorization() {
        let pending = PendingAuthorization::with_state("r", "s1");
        let denied = CallbackParams {
            error: Some("access_denied".into()),
            ..params(None, Some("s1"))
        };
        let forged = CallbackParams {
            state: Some("x".into()),
            ..denied.clone()
        };
        assert_eq!(pending.complete(&forged), Err(CallbackError::StateMismatch));
        assert_eq!(
            pending.complete(&denied),
            Err(CallbackError::Denied("access_denied".into()))
        );
        assert!(pending.is_completed());
    }

    #[test]
    fn deep_link_urls_are_parsed() {
        let pending = PendingAuthorization::with_state(DEEP_LINK_REDIRECT_URI, "s 1");
        let url =
            Url::parse("linzumi://oauth/callback?state=s+1&code=a%2Fb&state=ignored").unwrap();
        assert_eq!(pending.complete_url(&url).unwrap().expose(), "a/b");
        let for_link = PendingAuthorization::for_deep_link();
        assert_eq!(for_link.redirect_uri(), "linzumi://oauth/callback");
    }

    #[test]
    fn params_debug_hides_the_code() {
        let shown = format!("{:?}", params(Some("secret-code"), Some("s")));
        assert!(!shown.contains("secret-code"), "{shown}");
    }

    #[test]
    fn constant_time_eq_compares_whole_strings() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
