//! The OAuth callback (`auth::pending`): the query the loopback server reads and the
//! `linzumi://oauth/callback?…` URL the desktop app's deep link hands over, checked
//! against a pending authorization; plus the URLs built from a `--kandan-url`
//! (`kandan_url`, `auth::callback_host`, `auth::oauth`) and the unverified token claims
//! (`auth::identity`).
//!
//! (The desktop's routing of those links, `auth::deep_link`, has a target of its own.)
//!
//! Properties: nothing panics; a callback is accepted only with the pending state and a
//! non-blank code, exactly once, with the PKCE verifier whose challenge the authorization
//! sends, and a refused forgery does not use the authorization up; the socket URL carries one
//! token and one vsn and never shows the token once redacted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use linzumi_engine::auth::callback_host::{LOOPBACK_HOST, callback_host, is_private_ipv4};
use linzumi_engine::auth::pending::DEEP_LINK_REDIRECT_URI;
use linzumi_engine::auth::{
    AuthScope, CallbackError, CallbackParams, PendingAuthorization, authorization_url,
    identity_from_token,
};
use linzumi_engine::kandan_url::{KandanUrl, redact};
use url::Url;

const STATE: &str = "Zm9vYmFyYmF6cXV4cXV1eA";
/// RFC 7636 Appendix B's challenge.
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
/// Stands for a real token.
const SECRET: &str = "SECRETtok3n";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    callback(text);
    kandan_url(text);
    let _ = identity_from_token(text);
});

fn callback(text: &str) {
    // The loopback server passes the request's query; the deep link a whole URL.
    let query = text.split_once('?').map_or(text, |(_, query)| query);
    check_callback(&CallbackParams::from_query(query));
    if let Ok(url) = Url::parse(text) {
        let params = CallbackParams::from_url(&url);
        let pending = PendingAuthorization::with_state(DEEP_LINK_REDIRECT_URI, STATE);
        let first = pending.complete_url(&url);
        check_outcome(&params, &first, &pending);
        if first.is_ok() || matches!(first, Err(CallbackError::Denied(_))) {
            assert_eq!(
                pending.complete_url(&url),
                Err(CallbackError::AlreadyCompleted),
                "a callback was accepted twice"
            );
        }
    }
}

fn check_callback(params: &CallbackParams) {
    let pending = PendingAuthorization::with_state("http://127.0.0.1:1/callback", STATE);
    let outcome = pending.complete(params);
    check_outcome(params, &outcome, &pending);
}

fn check_outcome(
    params: &CallbackParams,
    outcome: &Result<linzumi_engine::auth::AuthorizationCode, CallbackError>,
    pending: &PendingAuthorization,
) {
    let blank = |value: &Option<String>| value.as_deref().is_none_or(|v| v.trim().is_empty());
    match outcome {
        Ok(code) => {
            assert_eq!(params.state.as_deref(), Some(STATE));
            assert!(
                blank(&params.error),
                "accepted a callback that carries an error"
            );
            assert_eq!(Some(code.expose()), params.code.as_deref());
            assert!(!code.expose().trim().is_empty());
            assert_eq!(code.redirect_uri(), pending.redirect_uri());
            assert_eq!(code.verifier().challenge(), pending.code_challenge());
            assert!(pending.is_completed());
        }
        Err(CallbackError::Denied(reason)) => {
            assert_eq!(params.state.as_deref(), Some(STATE));
            assert_eq!(Some(reason.as_str()), params.error.as_deref());
            assert!(pending.is_completed());
        }
        Err(CallbackError::StateMismatch) => {
            assert_ne!(params.state.as_deref(), Some(STATE));
            assert!(
                !pending.is_completed(),
                "a forged callback used the authorization up"
            );
        }
        Err(CallbackError::MissingCode) => {
            assert!(blank(&params.state) || (blank(&params.code) && blank(&params.error)));
            assert!(!pending.is_completed());
        }
        Err(CallbackError::AlreadyCompleted) => panic!("fresh authorization already completed"),
    }
}

fn kandan_url(text: &str) {
    let Ok(kandan) = KandanUrl::parse(text) else {
        return;
    };
    let host = callback_host(&kandan, None);
    assert!(
        host == LOOPBACK_HOST || (is_private_ipv4(&host) && kandan.host() == Some(host.as_str()))
    );

    let socket = kandan.phoenix_socket_url(SECRET);
    assert!(matches!(socket.scheme(), "ws" | "wss"));
    let count = |url: &Url, key: &str| url.query_pairs().filter(|(k, _)| k == key).count();
    assert_eq!(count(&socket, "token"), 1, "{socket}");
    assert_eq!(count(&socket, "vsn"), 1, "{socket}");
    // Redacted, the token is gone; the value may only appear where the base URL itself
    // carried it in another parameter.
    let shown = Url::parse(&redact(&socket)).expect("a redacted URL is a URL");
    let secrets = |url: &Url, skip: &[&str]| {
        url.query_pairs()
            .filter(|(key, value)| value == SECRET && !skip.contains(&key.as_ref()))
            .count()
    };
    let given = Url::parse(text.trim()).map_or(0, |base| secrets(&base, &["token", "vsn"]));
    assert!(secrets(&shown, &[]) <= given, "token shown in {shown}");
    assert!(
        shown
            .query_pairs()
            .all(|(key, value)| key != "token" || value == "REDACTED")
    );

    let tunnel = kandan.forward_tunnel_url("runner-1");
    assert_eq!(tunnel.path(), "/api/v2/local-codex-runner/forward-tunnel");
    assert_eq!(count(&tunnel, "runner_id"), 1);

    // The redirect URI, state and PKCE challenge reach Kandan exactly as given, whatever the
    // base URL.
    let redirect = "http://127.0.0.1:5000/callback?x=1&y=2";
    let url = authorization_url(
        &kandan,
        redirect,
        STATE,
        CHALLENGE,
        &AuthScope::channel("a&b", "c=d"),
    );
    assert!(matches!(url.scheme(), "http" | "https"));
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    let expected = [
        ("redirect_uri", redirect),
        ("state", STATE),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("workspace", "a&b"),
        ("channel", "c=d"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    assert_eq!(pairs, expected, "{url}");
}
