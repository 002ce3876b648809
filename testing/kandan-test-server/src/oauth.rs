//! The runner's HTTP API (`/api/v2/local-codex-runner/...`): browser OAuth (authorize with
//! optional consent page, code-for-token exchange), token validation and the onboarding start
//! target — the endpoints and shapes the runner's `oauth.ts` relies on.
//!
//! PKCE (RFC 7636, S256 only) is required: authorize takes `code_challenge` and
//! `code_challenge_method=S256`, the code remembers the challenge, and the token exchange must
//! bring the `code_verifier` whose SHA-256 it is. A stolen code alone is worth nothing.
//!
//! With an admin key ([`crate::ServerConfig::admin_key`]) nothing is auto-approved: the
//! consent page asks for the key, so that only whoever started the server can sign in.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use crate::TestUser;
use crate::bearer::Bearer;
use crate::consent_page;
use crate::guard;
use crate::server::ServerCore;
use crate::sync::lock;
use crate::tokens::{TOKEN_TTL, TokenScope};

const AUTHORIZE_PATH: &str = "/api/v2/local-codex-runner/oauth/authorize";
/// Channel of the personal workspace that onboarding (`onboarding=start`) lands in.
const ONBOARDING_CHANNEL: &str = "codex";
/// The only PKCE method accepted (`plain` would send the verifier itself through the browser).
const PKCE_METHOD: &str = "S256";

pub(crate) fn routes() -> Router<Arc<ServerCore>> {
    Router::new()
        .route(AUTHORIZE_PATH, get(authorize).post(approve))
        .route("/api/v2/local-codex-runner/oauth/token", post(token))
        .route("/api/v2/local-codex-runner/oauth/validate", get(validate))
        .route("/api/v2/local-codex-runner/start-target", get(start_target))
}

/// Query of the authorize endpoint (and hidden fields of the consent form).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct AuthorizeRequest {
    pub redirect_uri: String,
    pub state: String,
    pub workspace: Option<String>,
    pub channel: Option<String>,
    pub onboarding: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
}

#[derive(Deserialize)]
struct ApproveForm {
    #[serde(flatten)]
    request: AuthorizeRequest,
    /// Slug of the user the operator picked on the consent page.
    user: String,
    /// The admin key typed into the consent page (servers with a key).
    key: Option<String>,
}

/// Issued authorization codes awaiting exchange.
#[derive(Default)]
pub(crate) struct AuthorizationCodes {
    pending: Mutex<HashMap<String, PendingCode>>,
}

struct PendingCode {
    redirect_uri: String,
    /// BASE64URL(SHA-256(code_verifier)), from the authorize request.
    code_challenge: String,
    user: TestUser,
    scope: Option<TokenScope>,
}

impl AuthorizationCodes {
    fn create(
        &self,
        redirect_uri: &str,
        code_challenge: &str,
        user: TestUser,
        scope: Option<TokenScope>,
    ) -> String {
        let code = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>());
        let pending = PendingCode {
            redirect_uri: redirect_uri.to_owned(),
            code_challenge: code_challenge.to_owned(),
            user,
            scope,
        };
        lock(&self.pending).insert(code.clone(), pending);
        code
    }

    /// Consumes `code` if it exists, was issued for `redirect_uri` and `code_verifier` is the
    /// one whose challenge it was issued with. A refused exchange leaves the code as it was:
    /// whoever stole it cannot spoil the real client's exchange, nor guess the verifier.
    fn redeem(
        &self,
        code: &str,
        redirect_uri: &str,
        code_verifier: Option<&str>,
    ) -> Option<PendingCode> {
        let mut pending = lock(&self.pending);
        let issued = pending.get(code)?;
        let verified = code_verifier.is_some_and(|verifier| {
            is_pkce_value(verifier)
                && guard::constant_time_eq(
                    s256(verifier).as_bytes(),
                    issued.code_challenge.as_bytes(),
                )
        });
        if issued.redirect_uri != redirect_uri || !verified {
            return None;
        }
        pending.remove(code)
    }
}

/// BASE64URL(SHA-256(verifier)) without padding: the S256 code challenge (RFC 7636 §4.2).
fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ))
}

/// 43 to 128 unreserved characters (RFC 7636 §4.1 and §4.2: both the verifier and the
/// challenge have that shape).
fn is_pkce_value(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// The request's code challenge, or why it cannot be used.
fn pkce_challenge(request: &AuthorizeRequest) -> Result<&str, String> {
    let Some(challenge) = request.code_challenge.as_deref() else {
        return Err("code_challenge is required (PKCE, RFC 7636)".into());
    };
    if request.code_challenge_method.as_deref() != Some(PKCE_METHOD) {
        return Err(format!("code_challenge_method must be {PKCE_METHOD}"));
    }
    if !is_pkce_value(challenge) {
        return Err("code_challenge must be 43 to 128 unreserved characters".into());
    }
    Ok(challenge)
}

async fn authorize(
    State(core): State<Arc<ServerCore>>,
    Query(request): Query<AuthorizeRequest>,
) -> Response {
    let redirect = match check_redirect_uri(&request.redirect_uri) {
        Ok(redirect) => redirect,
        Err(problem) => return bad_request(problem),
    };
    if let Err(problem) = pkce_challenge(&request) {
        return error_redirect(&redirect, &request.state, "invalid_request", &problem);
    }
    if !core.auto_approve_oauth || core.admin_key.is_some() {
        let page = consent_page::render(
            AUTHORIZE_PATH,
            &request,
            &core.users.all(),
            core.admin_key.is_some(),
        );
        return Html(page).into_response();
    }
    let Some(user) = core.users.first() else {
        return bad_request("no test users are configured, so nobody can authorize".into());
    };
    grant_code(&core, &request, &redirect, user, StatusCode::FOUND)
}

/// The consent page's "Authorize" button.
async fn approve(State(core): State<Arc<ServerCore>>, Form(form): Form<ApproveForm>) -> Response {
    let redirect = match check_redirect_uri(&form.request.redirect_uri) {
        Ok(redirect) => redirect,
        Err(problem) => return bad_request(problem),
    };
    if !guard::key_accepted(&core, form.key.as_deref()) {
        let problem = "wrong or missing server key: it is printed where the server was started";
        return (StatusCode::FORBIDDEN, format!("{problem}\n")).into_response();
    }
    let Some(user) = core.users.find(&form.user) else {
        return bad_request(format!("unknown user {:?}", form.user));
    };
    // 303: the browser follows a POST's redirect with a GET.
    grant_code(&core, &form.request, &redirect, user, StatusCode::SEE_OTHER)
}

/// Issues a one-time code and redirects the browser back to the runner with it.
fn grant_code(
    core: &ServerCore,
    request: &AuthorizeRequest,
    redirect: &Url,
    user: TestUser,
    status: StatusCode,
) -> Response {
    let scope = match requested_scope(request, &user) {
        Ok(scope) => scope,
        Err(problem) => return bad_request(problem),
    };
    let challenge = match pkce_challenge(request) {
        Ok(challenge) => challenge,
        Err(problem) => {
            return error_redirect(redirect, &request.state, "invalid_request", &problem);
        }
    };
    let code = core
        .oauth_codes
        .create(&request.redirect_uri, challenge, user, scope);
    let mut location = redirect.clone();
    location
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &request.state);
    (status, [(header::LOCATION, location.to_string())]).into_response()
}

/// The scope the token will carry: the requested workspace/channel, the user's personal
/// onboarding channel for `onboarding=start`, or none.
fn requested_scope(
    request: &AuthorizeRequest,
    user: &TestUser,
) -> Result<Option<TokenScope>, String> {
    match (&request.workspace, &request.channel) {
        (Some(workspace), Some(channel)) => Ok(Some(TokenScope {
            workspace: workspace.clone(),
            channel: channel.clone(),
        })),
        (None, None) if request.onboarding.as_deref() == Some("start") => {
            Ok(Some(personal_scope(user)))
        }
        (None, None) => Ok(None),
        _ => Err("workspace and channel must be given together".into()),
    }
}

fn personal_scope(user: &TestUser) -> TokenScope {
    TokenScope {
        workspace: format!("personal-{}", user.slug),
        channel: ONBOARDING_CHANNEL.to_owned(),
    }
}

/// Accepts the runner's loopback callback (`http(s)://<host>:<port>/callback`) or the desktop
/// app's deep link (`linzumi://oauth/callback`), nothing else: an open redirect would leak codes.
fn check_redirect_uri(raw: &str) -> Result<Url, String> {
    let expected =
        "redirect_uri must be http(s)://<host>:<port>/callback or linzumi://oauth/callback";
    let url = Url::parse(raw).map_err(|err| format!("{expected}; {raw:?} is not a URL ({err})"))?;
    let extras = url.query().is_some() || url.fragment().is_some() || !url.username().is_empty();
    let shape_ok = match url.scheme() {
        "http" | "https" => {
            url.host().is_some() && url.port().is_some() && url.path() == "/callback"
        }
        "linzumi" => url.host_str() == Some("oauth") && url.path() == "/callback",
        _ => false,
    };
    if shape_ok && !extras {
        Ok(url)
    } else {
        Err(format!("{expected}; got {raw:?}"))
    }
}

#[derive(Deserialize)]
struct TokenRequest {
    code: String,
    redirect_uri: String,
    code_verifier: Option<String>,
}

async fn token(State(core): State<Arc<ServerCore>>, body: axum::body::Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<TokenRequest>(&body) else {
        return oauth_error("invalid_request");
    };
    let Some(pending) = core.oauth_codes.redeem(
        &request.code,
        &request.redirect_uri,
        request.code_verifier.as_deref(),
    ) else {
        return oauth_error("invalid_grant");
    };
    let access_token = core.tokens.issue(&pending.user, pending.scope);
    Json(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": TOKEN_TTL.as_secs(),
    }))
    .into_response()
}

#[derive(Deserialize)]
struct ScopeQuery {
    workspace: Option<String>,
    channel: Option<String>,
}

async fn validate(Bearer(grant): Bearer, Query(query): Query<ScopeQuery>) -> Response {
    // An unscoped token is good for any workspace and channel.
    let mismatch = grant.scope.as_ref().is_some_and(|scope| {
        query
            .workspace
            .as_ref()
            .is_some_and(|w| *w != scope.workspace)
            || query.channel.as_ref().is_some_and(|c| *c != scope.channel)
    });
    if mismatch {
        let body =
            json!({ "ok": false, "error": "token is scoped to another workspace or channel" });
        return (StatusCode::FORBIDDEN, Json(body)).into_response();
    }
    Json(json!({ "ok": true })).into_response()
}

/// Where `linzumi start` should go: the token's scope, or the user's personal onboarding channel.
async fn start_target(Bearer(grant): Bearer) -> Json<Value> {
    let scope = grant.scope.unwrap_or_else(|| personal_scope(&grant.user));
    Json(json!({ "workspace_slug": scope.workspace, "channel_slug": scope.channel }))
}

/// An authorization error sent back to the client (RFC 6749 §4.1.2.1), once the redirect URI
/// is known to be good.
fn error_redirect(redirect: &Url, state: &str, error: &str, description: &str) -> Response {
    let mut location = redirect.clone();
    location
        .query_pairs_mut()
        .append_pair("error", error)
        .append_pair("error_description", description)
        .append_pair("state", state);
    (
        StatusCode::FOUND,
        [(header::LOCATION, location.to_string())],
    )
        .into_response()
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response()
}

fn oauth_error(error: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_callback_redirects() {
        for good in [
            "http://127.0.0.1:53121/callback",
            "https://10.0.0.5:8443/callback",
            "http://localhost:9/callback",
            "linzumi://oauth/callback",
        ] {
            assert!(check_redirect_uri(good).is_ok(), "{good}");
        }
        for bad in [
            "http://127.0.0.1/callback",
            "http://127.0.0.1:5000/other",
            "http://127.0.0.1:5000/callback?next=evil",
            "http://user@127.0.0.1:5000/callback",
            "ftp://127.0.0.1:21/callback",
            "linzumi://evil/callback",
            "javascript:alert(1)",
            "not a url",
        ] {
            let err = check_redirect_uri(bad).expect_err(bad);
            assert!(err.contains("redirect_uri must be"), "{err}");
        }
    }

    /// RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn s256_matches_the_rfc_example() {
        assert_eq!(s256(VERIFIER), CHALLENGE);
        assert!(is_pkce_value(VERIFIER) && is_pkce_value(CHALLENGE));
        assert!(!is_pkce_value(&VERIFIER[..42]));
        assert!(!is_pkce_value(&"a".repeat(129)));
        assert!(!is_pkce_value(&format!("{}+", &VERIFIER[..42])));
    }

    #[test]
    fn codes_are_single_use_and_bound_to_their_redirect_and_verifier() {
        let codes = AuthorizationCodes::default();
        let user = TestUser {
            id: 1,
            slug: "sean".into(),
        };
        let redirect = "http://127.0.0.1:1/callback";
        let code = codes.create(redirect, CHALLENGE, user, None);
        let other_verifier = "a".repeat(43);
        assert!(
            codes
                .redeem(&code, "http://127.0.0.1:2/callback", Some(VERIFIER))
                .is_none()
        );
        assert!(codes.redeem(&code, redirect, None).is_none());
        assert!(
            codes
                .redeem(&code, redirect, Some(&other_verifier))
                .is_none()
        );
        assert!(codes.redeem(&code, redirect, Some(CHALLENGE)).is_none());
        assert!(codes.redeem(&code, redirect, Some(VERIFIER)).is_some());
        assert!(codes.redeem(&code, redirect, Some(VERIFIER)).is_none());
    }

    #[test]
    fn onboarding_scopes_to_the_personal_workspace() {
        let user = TestUser {
            id: 1,
            slug: "sean".into(),
        };
        let request = AuthorizeRequest {
            redirect_uri: String::new(),
            state: String::new(),
            workspace: None,
            channel: None,
            onboarding: Some("start".into()),
            code_challenge: None,
            code_challenge_method: None,
        };
        let scope = requested_scope(&request, &user).expect("valid");
        assert_eq!(
            scope,
            Some(TokenScope {
                workspace: "personal-sean".into(),
                channel: "codex".into()
            })
        );
        let half = AuthorizeRequest {
            workspace: Some("acme".into()),
            ..request
        };
        assert!(requested_scope(&half, &user).is_err());
    }
}
