//! Which token a command runs with (seed `index.ts` and `authResolution.ts`):
//!
//! 1. `--token` given: that token, as is.
//! 2. Else the cached token for (Kandan, scope), if Kandan still accepts it for the scope.
//!    If Kandan rejects it, say [`CACHED_TOKEN_REJECTED`], forget it, and go on to 3.
//! 3. Else the browser OAuth flow; the new token is saved in the store.
//!
//! `linzumi start` ([`resolve_start_token`]) first gets a token for the onboarding scope,
//! asks Kandan for its start target, and re-scopes to that workspace/channel when the
//! token is not good for it: an explicit token cannot be re-scoped, so that is an error.
//!
//! `linzumi auth` ([`sign_in_and_save`]) does not resolve: it always signs in through the
//! browser and saves the new token, or saves the `--token` it was given (seed `index.ts`,
//! `runAuthCommand`).
//!
//! Store failures never stop a command: the token is still good for this run, so they are
//! logged (and, for a failed save, reported) and the command goes on.
use std::sync::Arc;

use super::api::{self, ApiError, StartTarget};
use super::oauth::{self, OAuthError, OAuthOptions};
use super::token_store::{StoredToken, TokenKey, TokenStore, TokenStoreError};
use super::{AccessToken, AuthScope};

/// Reported when Kandan no longer accepts the cached token.
pub const CACHED_TOKEN_REJECTED: &str =
    "Cached Kandan local runner auth was rejected; starting OAuth.";

/// Where a resolved token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// `--token`.
    Explicit,
    /// The token store, validated with Kandan.
    Cached,
    /// A fresh browser authorization.
    OAuth,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedToken {
    pub token: AccessToken,
    pub source: TokenSource,
}

/// `linzumi start`'s token and where it binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartToken {
    pub token: ResolvedToken,
    pub target: StartTarget,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("provided local runner token is not scoped to {workspace}/{channel}")]
    NotScoped { workspace: String, channel: String },
}

/// The token for `scope`: `explicit`, else a still-valid cached one, else a new one from
/// the browser flow (then saved in `store`).
pub async fn resolve_token(
    oauth: &OAuthOptions,
    store: &Arc<dyn TokenStore>,
    explicit: Option<&AccessToken>,
    scope: &AuthScope,
) -> Result<ResolvedToken, ResolveError> {
    if let Some(token) = explicit.filter(|token| !token.expose().trim().is_empty()) {
        return Ok(ResolvedToken {
            token: token.clone(),
            source: TokenSource::Explicit,
        });
    }
    let key = TokenKey::new(&oauth.kandan, scope.clone());
    let cached = with_store(store, &key, |store, key| store.load(key))
        .await
        .unwrap_or_else(|error| {
            tracing::warn!(%error, "could not read the cached Kandan auth; authorizing again");
            None
        });
    if let Some(cached) = cached {
        let token = cached.access_token;
        if api::validate_token(&oauth.http, &oauth.kandan, &token, scope).await? {
            return Ok(ResolvedToken {
                token,
                source: TokenSource::Cached,
            });
        }
        (oauth.report)(CACHED_TOKEN_REJECTED);
        if let Err(error) = with_store(store, &key, |store, key| store.remove(key)).await {
            tracing::warn!(%error, "could not forget the rejected Kandan auth");
        }
    }
    let granted = oauth::acquire_token(oauth, scope).await?;
    let stored = StoredToken::from_oauth(&granted);
    if let Err(error) = with_store(store, &key, move |store, key| store.save(key, &stored)).await {
        tracing::warn!(%error, "could not save the Kandan auth");
        (oauth.report)(&format!(
            "Warning: {error}. You will be asked to authorize again next time."
        ));
    }
    Ok(ResolvedToken {
        token: granted.access_token,
        source: TokenSource::OAuth,
    })
}

/// `linzumi auth`: the given token, or a new one from the browser flow, saved for
/// (Kandan, scope). Unlike [`resolve_token`] a cached token is never reused, and a save
/// that fails is an error: saving is the whole point of the command.
pub async fn sign_in_and_save(
    oauth: &OAuthOptions,
    store: &Arc<dyn TokenStore>,
    explicit: Option<&AccessToken>,
    scope: &AuthScope,
) -> Result<ResolvedToken, SignInError> {
    let (stored, source) = match explicit.filter(|token| !token.expose().trim().is_empty()) {
        Some(token) => (StoredToken::new(token.clone(), None), TokenSource::Explicit),
        None => {
            let granted = oauth::acquire_token(oauth, scope).await?;
            (StoredToken::from_oauth(&granted), TokenSource::OAuth)
        }
    };
    let token = stored.access_token.clone();
    let key = TokenKey::new(&oauth.kandan, scope.clone());
    with_store(store, &key, move |store, key| store.save(key, &stored)).await?;
    Ok(ResolvedToken { token, source })
}

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    #[error("could not save the Kandan auth: {0}")]
    Save(#[from] TokenStoreError),
}

/// `linzumi start`: a token for the onboarding scope, Kandan's start target for it, and a
/// token valid for that target (the same one, or a new one scoped to the target).
pub async fn resolve_start_token(
    oauth: &OAuthOptions,
    store: &Arc<dyn TokenStore>,
    explicit: Option<&AccessToken>,
) -> Result<StartToken, ResolveError> {
    let onboarding = resolve_token(oauth, store, explicit, &AuthScope::Onboarding).await?;
    let target = api::fetch_start_target(&oauth.http, &oauth.kandan, &onboarding.token).await?;
    let scope = target.scope();
    if api::validate_token(&oauth.http, &oauth.kandan, &onboarding.token, &scope).await? {
        return Ok(StartToken {
            token: onboarding,
            target,
        });
    }
    if onboarding.source == TokenSource::Explicit {
        return Err(ResolveError::NotScoped {
            workspace: target.workspace_slug,
            channel: target.channel_slug,
        });
    }
    let token = resolve_token(oauth, store, None, &scope).await?;
    Ok(StartToken { token, target })
}

/// Runs a store call off the async threads: a file or a keyring may block.
async fn with_store<T, F>(
    store: &Arc<dyn TokenStore>,
    key: &TokenKey,
    call: F,
) -> Result<T, TokenStoreError>
where
    T: Send + 'static,
    F: FnOnce(&dyn TokenStore, &TokenKey) -> Result<T, TokenStoreError> + Send + 'static,
{
    let store = Arc::clone(store);
    let key = key.clone();
    tokio::task::spawn_blocking(move || call(store.as_ref(), &key))
        .await
        .map_err(|error| {
            TokenStoreError::Backend(format!("the token store task failed: {error}"))
        })?
}
