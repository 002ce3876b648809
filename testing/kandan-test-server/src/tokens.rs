//! Access tokens: JWT-shaped (HS256 with a per-server random key) so the runner can read its
//! identity from the claims, but verified by lookup so tests can revoke them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use serde_json::{Value, json};

use crate::TestUser;
use crate::sync::lock;

/// How long an issued token is valid (the `expires_in` of the token endpoint).
pub(crate) const TOKEN_TTL: Duration = Duration::from_secs(3600);

/// The workspace and channel a token is limited to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenScope {
    pub workspace: String,
    pub channel: String,
}

/// What a valid token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    pub user: TestUser,
    /// `None`: the token is not limited to one workspace/channel.
    pub scope: Option<TokenScope>,
    expires_at: SystemTime,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum TokenError {
    #[error("unknown or revoked token")]
    Unknown,
    #[error("token expired")]
    Expired,
}

pub(crate) struct TokenStore {
    key: hmac::Key,
    issued: Mutex<HashMap<String, Grant>>,
}

impl Default for TokenStore {
    fn default() -> Self {
        let secret: [u8; 32] = rand::random();
        TokenStore {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            issued: Mutex::new(HashMap::new()),
        }
    }
}

impl TokenStore {
    pub(crate) fn issue(&self, user: &TestUser, scope: Option<TokenScope>) -> String {
        let issued_at = SystemTime::now();
        let expires_at = issued_at + TOKEN_TTL;
        let mut claims = json!({
            "sub": format!("user:{}", user.id),
            "user_id": user.id,
            "username": user.slug,
            "iat": unix_seconds(issued_at),
            "exp": unix_seconds(expires_at),
            // Makes every token unique, even two issued for the same claims in the same second.
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        if let Some(scope) = &scope {
            claims["workspace"] = json!(scope.workspace);
            claims["channel"] = json!(scope.channel);
        }
        let token = self.sign(&claims);
        let grant = Grant {
            user: user.clone(),
            scope,
            expires_at,
        };
        lock(&self.issued).insert(token.clone(), grant);
        token
    }

    pub(crate) fn revoke(&self, token: &str) {
        lock(&self.issued).remove(token);
    }

    /// Revokes every token of `user_slug` (signed out everywhere, or the account
    /// disabled); returns how many there were.
    pub(crate) fn revoke_user(&self, user_slug: &str) -> usize {
        let mut issued = lock(&self.issued);
        let before = issued.len();
        issued.retain(|_, grant| grant.user.slug != user_slug);
        before - issued.len()
    }

    pub(crate) fn verify(&self, token: &str) -> Result<Grant, TokenError> {
        let grant = lock(&self.issued)
            .get(token)
            .cloned()
            .ok_or(TokenError::Unknown)?;
        if SystemTime::now() >= grant.expires_at {
            return Err(TokenError::Expired);
        }
        Ok(grant)
    }

    fn sign(&self, claims: &Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let signing_input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signature = hmac::sign(&self.key, signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        )
    }
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user() -> TestUser {
        TestUser {
            id: 42,
            slug: "sean".into(),
        }
    }

    fn claims_of(token: &str) -> Value {
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "JWT-shaped: header.claims.signature");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("base64url")).expect("json")
    }

    #[test]
    fn claims_carry_the_identity_and_scope() {
        let store = TokenStore::default();
        let scope = TokenScope {
            workspace: "acme".into(),
            channel: "codex".into(),
        };
        let token = store.issue(&user(), Some(scope.clone()));
        let claims = claims_of(&token);
        assert_eq!(claims["sub"], json!("user:42"));
        assert_eq!(claims["user_id"], json!(42));
        assert_eq!(claims["username"], json!("sean"));
        assert_eq!(claims["workspace"], json!("acme"));
        assert_eq!(claims["channel"], json!("codex"));
        assert!(claims["exp"].as_u64() > claims["iat"].as_u64());
        let grant = store.verify(&token).expect("valid");
        assert_eq!(grant.scope, Some(scope));
        assert_eq!(grant.user, user());
    }

    #[test]
    fn unscoped_tokens_omit_scope_claims() {
        let store = TokenStore::default();
        let claims = claims_of(&store.issue(&user(), None));
        assert!(claims.get("workspace").is_none());
        assert!(claims.get("channel").is_none());
    }

    #[test]
    fn revoked_and_foreign_tokens_are_rejected() {
        let store = TokenStore::default();
        let token = store.issue(&user(), None);
        assert_ne!(token, store.issue(&user(), None), "tokens are unique");
        store.revoke(&token);
        assert_eq!(store.verify(&token), Err(TokenError::Unknown));
        let store = TokenStore::default();
        let (first, second) = (store.issue(&user(), None), store.issue(&user(), None));
        assert_eq!(store.revoke_user(&user().slug), 2);
        assert_eq!(store.verify(&first), Err(TokenError::Unknown));
        assert_eq!(store.verify(&second), Err(TokenError::Unknown));
        let other = TokenStore::default().issue(&user(), None);
        assert_eq!(store.verify(&other), Err(TokenError::Unknown));
    }
}
