//! Kandan's local-runner HTTP endpoints (protocol.md §5, seed `oauth.ts`): exchange an
//! authorization code for a token, validate a token for a scope, and ask where
//! `linzumi start` should bind.
//!
//! Errors name the endpoint and the HTTP status, never the token or the code.
use std::error::Error as _;

use reqwest::StatusCode;
use reqwest::header::AUTHORIZATION;
use serde_json::{Value, json};
use url::Url;

use super::pending::AuthorizationCode;
use super::{AccessToken, AuthScope};
use crate::http::describe_status;
use crate::kandan_url::{KandanUrl, redact};

pub const TOKEN_PATH: &str = "/api/v2/local-codex-runner/oauth/token";
pub const VALIDATE_PATH: &str = "/api/v2/local-codex-runner/oauth/validate";
pub const START_TARGET_PATH: &str = "/api/v2/local-codex-runner/start-target";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("could not reach Kandan at {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error("local runner OAuth token exchange failed ({detail})")]
    TokenExchange { detail: String },
    #[error("local runner OAuth token response did not include access_token")]
    MissingAccessToken,
    #[error("local runner auth validation failed with {detail}")]
    Validation { detail: String },
    #[error("could not get the local runner start target from Kandan ({detail})")]
    StartTarget { detail: String },
    /// Kandan refused the token itself (401/403): it is invalid, expired or revoked.
    #[error("Kandan refused the sign-in at {endpoint} ({detail}): sign in again")]
    Unauthorized { endpoint: String, detail: String },
}

impl ApiError {
    /// Whether signing in again is what it takes.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, ApiError::Unauthorized { .. })
    }
}

/// What the token endpoint grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthToken {
    pub access_token: AccessToken,
    /// Seconds until the token expires, when Kandan says.
    pub expires_in: Option<u64>,
}

/// Where `linzumi start` binds: the answer of the start-target endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartTarget {
    pub workspace_slug: String,
    pub channel_slug: String,
}

impl StartTarget {
    pub fn scope(&self) -> AuthScope {
        AuthScope::channel(&self.workspace_slug, &self.channel_slug)
    }
}

/// `POST /oauth/token` with `{code, redirect_uri, code_verifier}`.
pub async fn exchange_code(
    http: &reqwest::Client,
    kandan: &KandanUrl,
    code: &AuthorizationCode,
) -> Result<OAuthToken, ApiError> {
    let endpoint = kandan.http_endpoint(TOKEN_PATH);
    let body = json!({
        "code": code.expose(),
        "redirect_uri": code.redirect_uri(),
        "code_verifier": code.verifier().expose(),
    });
    let response = http
        .post(endpoint.clone())
        .json(&body)
        .send()
        .await
        .map_err(|error| unreachable(&endpoint, &error))?;
    let status = response.status();
    let detail = describe_status(&response);
    let body = read_json(response).await;
    if !status.is_success() {
        let oauth_error = body
            .as_ref()
            .and_then(|body| body.get("error"))
            .and_then(Value::as_str)
            .map(|error| format!(": {error}"))
            .unwrap_or_default();
        return Err(ApiError::TokenExchange {
            detail: format!("{detail}{oauth_error}"),
        });
    }
    let Some(body) = body.filter(Value::is_object) else {
        return Err(ApiError::TokenExchange {
            detail: "the answer is not a JSON object".into(),
        });
    };
    let access_token = body
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|token| !token.trim().is_empty())
        .ok_or(ApiError::MissingAccessToken)?;
    Ok(OAuthToken {
        access_token: AccessToken::new(access_token),
        expires_in: body.get("expires_in").and_then(Value::as_u64),
    })
}

/// `GET /oauth/validate` for `scope`: `Ok(true)` if Kandan accepts the token for it,
/// `Ok(false)` if it refuses it (401/403, or a 200 without `"ok": true`).
pub async fn validate_token(
    http: &reqwest::Client,
    kandan: &KandanUrl,
    token: &AccessToken,
    scope: &AuthScope,
) -> Result<bool, ApiError> {
    let mut endpoint = kandan.http_endpoint(VALIDATE_PATH);
    if let Some((workspace, channel)) = scope.workspace_channel() {
        endpoint
            .query_pairs_mut()
            .append_pair("workspace", workspace)
            .append_pair("channel", channel);
    }
    let response = http
        .get(endpoint.clone())
        .header(AUTHORIZATION, bearer(token))
        .send()
        .await
        .map_err(|error| unreachable(&endpoint, &error))?;
    match response.status() {
        StatusCode::OK => {
            let body = read_json(response).await;
            Ok(body.and_then(|body| body.get("ok").cloned()) == Some(Value::Bool(true)))
        }
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Ok(false),
        _ => Err(ApiError::Validation {
            detail: describe_status(&response),
        }),
    }
}

/// `GET /start-target`: the workspace and channel Kandan chose for `linzumi start`.
pub async fn fetch_start_target(
    http: &reqwest::Client,
    kandan: &KandanUrl,
    token: &AccessToken,
) -> Result<StartTarget, ApiError> {
    let endpoint = kandan.http_endpoint(START_TARGET_PATH);
    let response = http
        .get(endpoint.clone())
        .header(AUTHORIZATION, bearer(token))
        .send()
        .await
        .map_err(|error| unreachable(&endpoint, &error))?;
    if matches!(
        response.status(),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    ) {
        return Err(ApiError::Unauthorized {
            endpoint: redact(&endpoint),
            detail: describe_status(&response),
        });
    }
    if !response.status().is_success() {
        return Err(ApiError::StartTarget {
            detail: describe_status(&response),
        });
    }
    let body = read_json(response).await;
    let slug = |field: &str| {
        body.as_ref()
            .and_then(|body| body.get(field))
            .and_then(Value::as_str)
            .filter(|slug| !slug.trim().is_empty())
            .map(str::to_owned)
    };
    match (slug("workspace_slug"), slug("channel_slug")) {
        (Some(workspace_slug), Some(channel_slug)) => Ok(StartTarget {
            workspace_slug,
            channel_slug,
        }),
        _ => Err(ApiError::StartTarget {
            detail: "the answer lacks workspace_slug or channel_slug".into(),
        }),
    }
}

fn bearer(token: &AccessToken) -> String {
    format!("Bearer {}", token.expose())
}

async fn read_json(response: reqwest::Response) -> Option<Value> {
    let bytes = response.bytes().await.ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn unreachable(endpoint: &Url, error: &reqwest::Error) -> ApiError {
    let mut reason = if error.is_timeout() {
        "timed out".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = error.source();
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    ApiError::Unreachable {
        endpoint: redact(endpoint),
        reason,
    }
}
