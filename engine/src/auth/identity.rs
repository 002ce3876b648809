//! Who a token says it belongs to, read from its JWT claims WITHOUT verifying the
//! signature (seed `identityFromAccessToken`, `defaultListenUserFromToken`).
//!
//! This is only ever a default (whose chat replies the runner accepts when `--listen-user`
//! is not given); Kandan checks the token itself on every request. A token that is not a
//! JWT, or whose claims name nobody, has no identity.
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIdentity {
    /// `username`, else `preferred_username`, else `slug`.
    pub username: Option<String>,
    /// `user_id`, else the `<id>` of `sub = "user:<id>"`.
    pub user_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("missing --listen-user and authenticated user is unavailable")]
pub struct NoListenUser;

/// The identity in `token`'s claims, if it has a username or a user id.
pub fn identity_from_token(token: &str) -> Option<TokenIdentity> {
    let mut parts = token.trim().split('.');
    let (Some(_header), Some(claims), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let bytes = URL_SAFE_NO_PAD.decode(claims.trim_end_matches('=')).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    let text = |key: &str| {
        claims
            .get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    };
    let username = text("username")
        .or_else(|| text("preferred_username"))
        .or_else(|| text("slug"));
    let user_id = claims
        .get("user_id")
        .and_then(|id| id.as_i64().or_else(|| id.as_str()?.trim().parse().ok()))
        .or_else(|| text("sub")?.strip_prefix("user:")?.parse().ok());
    if username.is_none() && user_id.is_none() {
        return None;
    }
    Some(TokenIdentity { username, user_id })
}

/// The `--listen-user` default: the token's username.
/// Whose chat messages a session takes: `chosen` (a username, or `all`), else the user the
/// token belongs to (seed `index.ts`).
pub fn listen_user(
    chosen: Option<&str>,
    token: &str,
) -> Result<crate::session::ListenUser, NoListenUser> {
    use crate::session::ListenUser;
    let identity = identity_from_token(token);
    let own = identity
        .as_ref()
        .and_then(|identity| Some((identity.username.clone()?, identity.user_id?)));
    match chosen.map(str::trim).filter(|value| !value.is_empty()) {
        Some(value) => Ok(ListenUser::parse(value, own)),
        None => {
            let username = identity
                .and_then(|identity| identity.username)
                .ok_or(NoListenUser)?;
            Ok(ListenUser::parse(&username, own))
        }
    }
}

pub fn default_listen_user(token: &str) -> Result<String, NoListenUser> {
    identity_from_token(token)
        .and_then(|identity| identity.username)
        .ok_or(NoListenUser)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn jwt(claims: Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        format!("{header}.{claims}.c2lnbmF0dXJl")
    }

    #[test]
    fn reads_the_test_servers_claims() {
        let token = jwt(json!({
            "sub": "user:42", "user_id": 42, "username": "sean",
            "workspace": "acme", "channel": "codex", "exp": 1
        }));
        assert_eq!(
            identity_from_token(&token),
            Some(TokenIdentity {
                username: Some("sean".into()),
                user_id: Some(42)
            })
        );
        assert_eq!(default_listen_user(&token).unwrap(), "sean");
    }

    #[test]
    fn falls_back_to_other_claim_names() {
        let token = jwt(json!({"preferred_username": "ana", "sub": "user:7"}));
        assert_eq!(
            identity_from_token(&token),
            Some(TokenIdentity {
                username: Some("ana".into()),
                user_id: Some(7)
            })
        );
        let slug = jwt(json!({"slug": "bo", "user_id": "9"}));
        assert_eq!(
            identity_from_token(&slug).unwrap().username.as_deref(),
            Some("bo")
        );
        assert_eq!(identity_from_token(&slug).unwrap().user_id, Some(9));
    }

    #[test]
    fn an_id_without_a_name_gives_no_listen_user() {
        let token = jwt(json!({"sub": "user:5"}));
        assert_eq!(identity_from_token(&token).unwrap().user_id, Some(5));
        let error = default_listen_user(&token).unwrap_err();
        assert_eq!(
            error.to_string(),
            "missing --listen-user and authenticated user is unavailable"
        );
    }

    #[test]
    fn garbage_has_no_identity() {
        for token in [
            String::new(),
            "not-a-jwt".into(),
            "a.b".into(),
            "a.b.c.d".into(),
            "a.!!!.c".into(),
            format!("a.{}.c", URL_SAFE_NO_PAD.encode("not json")),
            format!("a.{}.c", URL_SAFE_NO_PAD.encode("[1,2]")),
            jwt(json!({"sub": "service:1", "username": ""})),
            jwt(json!({"username": 5, "user_id": "x"})),
        ] {
            assert_eq!(identity_from_token(&token), None, "{token}");
        }
    }
}
