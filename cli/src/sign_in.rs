//! Getting a token for a command: `--token`, the auth cache, or the browser.
use std::path::PathBuf;
use std::sync::Arc;

use linzumi_engine::auth::{self, AccessToken, AuthScope, OAuthOptions, TokenStore};
use linzumi_engine::kandan_url::KandanUrl;

use crate::args::KandanFlags;

/// What a sign-in needs, built from the flags.
pub struct SignIn {
    pub oauth: OAuthOptions,
    pub store: Arc<dyn TokenStore>,
    pub explicit: Option<AccessToken>,
}

impl SignIn {
    pub fn new(kandan: &KandanUrl, flags: &KandanFlags) -> Result<SignIn, String> {
        let http = linzumi_engine::http::client_for(kandan).map_err(|error| error.to_string())?;
        let mut oauth = OAuthOptions::new(kandan.clone(), http);
        oauth.callback_host = flags.oauth_callback_host.clone();
        if let Some(browser) = browser_from_env() {
            oauth.open_browser = browser;
        }
        let store = auth::FileTokenStore::at(flags.auth_file.as_deref().map(PathBuf::from))
            .map_err(|error| error.to_string())?;
        Ok(SignIn {
            oauth,
            store: Arc::new(store),
            explicit: flags.token.clone().map(AccessToken::new),
        })
    }

    pub async fn token(&self, scope: &AuthScope) -> Result<AccessToken, String> {
        auth::resolve_token(&self.oauth, &self.store, self.explicit.as_ref(), scope)
            .await
            .map(|resolved| resolved.token)
            .map_err(|error| error.to_string())
    }
}

/// `$BROWSER <url>`, the common convention, instead of the system's default browser
/// (also how tests play the person clicking through the sign-in).
fn browser_from_env() -> Option<auth::BrowserOpener> {
    let command = std::env::var("BROWSER")
        .ok()
        .filter(|c| !c.trim().is_empty())?;
    Some(Arc::new(move |url: &url::Url| {
        std::process::Command::new(&command)
            .arg(url.as_str())
            .spawn()
            .map(|_| ())
            .map_err(|error| format!("could not run $BROWSER ({command}): {error}"))
    }))
}
