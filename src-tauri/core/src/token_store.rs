//! Where the desktop app keeps Kandan sign-ins: the OS keyring when there is one, else
//! the CLI's private cache file.
//!
//! The keyring (Secret Service on Linux, Keychain on macOS, Credential Manager on
//! Windows) keeps tokens out of plain files. Linux desktops without a Secret Service
//! (minimal window managers, remote sessions) are common, so [`DesktopTokenStore::open`]
//! probes the keyring once (write, read back, delete a probe entry) and otherwise falls
//! back to the engine's [`FileTokenStore`] (mode 0600), with a warning the UI shows.
//!
//! Keyring entries: service `linzumi`, user `"<kandan_base_url> <scope>"` (for example
//! `https://serve.kandanai.com channel:acme/codex`; scope is `unscoped`, `onboarding` or
//! `channel:<workspace>/<channel>`), value `{"access_token", "saved_at", "expires_at"}`.
//! Tokens never appear in logs or error messages.
//!
//! All calls block (D-Bus round trips; a locked keyring may even show an unlock prompt):
//! call them from a blocking-friendly thread, as the engine's token resolution does.
use std::path::{Path, PathBuf};

use linzumi_engine::auth::token_store::{FileTokenStore, StoredToken, TokenKey, TokenStore};
use linzumi_engine::auth::{AccessToken, AuthScope, TokenStoreError};
use serde::{Deserialize, Serialize};

/// The keyring service name of every Linzumi entry.
pub const KEYRING_SERVICE: &str = "linzumi";
/// The fallback file's name inside the fallback folder.
pub const FALLBACK_FILE: &str = "auth.json";

/// Where tokens ended up (the snapshot's `tokenStorage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenStorage {
    Keyring,
    File,
}

/// The store [`DesktopTokenStore::open_detailed`] chose.
pub struct OpenedTokenStore {
    pub store: Box<dyn TokenStore>,
    pub storage: TokenStorage,
    /// Set when the keyring could not be used: a sentence for the user.
    pub warning: Option<String>,
}

/// Chooses between the keyring and the fallback file.
pub struct DesktopTokenStore;

impl DesktopTokenStore {
    /// The keyring if it works, else `<fallback_dir>/auth.json` and a warning.
    pub fn open(fallback_dir: &Path) -> (Box<dyn TokenStore>, Option<String>) {
        let opened = DesktopTokenStore::open_detailed(fallback_dir);
        (opened.store, opened.warning)
    }

    /// Like [`Self::open`], also saying which storage was chosen.
    pub fn open_detailed(fallback_dir: &Path) -> OpenedTokenStore {
        let keyring = KeyringTokenStore::new();
        match keyring.probe() {
            Ok(()) => OpenedTokenStore {
                store: Box::new(keyring),
                storage: TokenStorage::Keyring,
                warning: None,
            },
            Err(reason) => {
                let path = fallback_dir.join(FALLBACK_FILE);
                tracing::warn!(%reason, path = %path.display(), "the system keyring is not available; keeping Kandan sign-ins in a file");
                OpenedTokenStore {
                    warning: Some(fallback_warning(&reason, &path)),
                    store: Box::new(FileTokenStore::new(path)),
                    storage: TokenStorage::File,
                }
            }
        }
    }
}

fn fallback_warning(reason: &str, path: &Path) -> String {
    let private = if cfg!(unix) {
        " (readable only by you)"
    } else {
        ""
    };
    format!(
        "The system keyring is not available ({reason}); your Kandan sign-in is kept in {}{private}.",
        path.display()
    )
}

/// Tokens in the OS keyring, one entry per [`TokenKey`].
#[derive(Debug, Clone)]
pub struct KeyringTokenStore {
    service: String,
}

/// The JSON kept as the entry's password.
#[derive(Serialize, Deserialize)]
struct KeyringValue {
    access_token: String,
    saved_at: u64,
    expires_at: Option<u64>,
}

impl Default for KeyringTokenStore {
    fn default() -> KeyringTokenStore {
        KeyringTokenStore::new()
    }
}

impl KeyringTokenStore {
    /// Entries under the service [`KEYRING_SERVICE`].
    pub fn new() -> KeyringTokenStore {
        KeyringTokenStore::with_service(KEYRING_SERVICE)
    }

    /// Entries under another service name (tests).
    pub fn with_service(service: impl Into<String>) -> KeyringTokenStore {
        KeyringTokenStore {
            service: service.into(),
        }
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    /// The keyring user name of `key`: `"<kandan_base_url> <scope>"`.
    pub fn user_for(key: &TokenKey) -> String {
        let scope = match &key.scope {
            AuthScope::Unscoped => "unscoped".to_owned(),
            AuthScope::Onboarding => "onboarding".to_owned(),
            AuthScope::Channel { workspace, channel } => format!("channel:{workspace}/{channel}"),
        };
        format!("{} {scope}", key.kandan_base_url)
    }

    /// Checks that the keyring works: writes, reads back and deletes a probe entry.
    /// `Err` says why not, in words fit for the user.
    pub fn probe(&self) -> Result<(), String> {
        if let Err(error) = keyring::Entry::store_status() {
            return Err(describe(error));
        }
        let user = format!("probe {}", uuid::Uuid::new_v4().simple());
        let entry = keyring::Entry::new(&self.service, &user).map_err(|error| describe(&error))?;
        let value = "linzumi keyring probe";
        entry
            .set_password(value)
            .map_err(|error| describe(&error))?;
        let read = entry.get_password();
        let deleted = entry.delete_credential();
        match read {
            Ok(read) if read == value => {}
            Ok(_) => return Err("it returned something else than was saved".to_owned()),
            Err(error) => return Err(describe(&error)),
        }
        deleted.map_err(|error| describe(&error))
    }

    fn entry(&self, key: &TokenKey) -> Result<keyring::Entry, TokenStoreError> {
        keyring::Entry::new(&self.service, &KeyringTokenStore::user_for(key))
            .map_err(|error| backend(&error))
    }
}

impl TokenStore for KeyringTokenStore {
    fn load(&self, key: &TokenKey) -> Result<Option<StoredToken>, TokenStoreError> {
        let password = match self.entry(key)?.get_password() {
            Ok(password) => password,
            Err(keyring::Error::NoEntry) => return Ok(None),
            Err(error) => return Err(backend(&error)),
        };
        // serde's messages may quote the value, and the value is a token: say nothing of it.
        let value: KeyringValue = serde_json::from_str(&password).map_err(|_| {
            TokenStoreError::Backend(format!(
                "the keyring entry \"{}\" is not a Linzumi sign-in",
                KeyringTokenStore::user_for(key)
            ))
        })?;
        Ok(Some(StoredToken {
            access_token: AccessToken::new(value.access_token),
            saved_at: value.saved_at,
            expires_at: value.expires_at,
        }))
    }

    fn save(&self, key: &TokenKey, token: &StoredToken) -> Result<(), TokenStoreError> {
        let value = KeyringValue {
            access_token: token.access_token.expose().to_owned(),
            saved_at: token.saved_at,
            expires_at: token.expires_at,
        };
        let json = serde_json::to_string(&value)
            .map_err(|_| TokenStoreError::Backend("could not encode the sign-in".to_owned()))?;
        self.entry(key)?
            .set_password(&json)
            .map_err(|error| backend(&error))
    }

    fn remove(&self, key: &TokenKey) -> Result<bool, TokenStoreError> {
        match self.entry(key)?.delete_credential() {
            Ok(()) => Ok(true),
            Err(keyring::Error::NoEntry) => Ok(false),
            Err(error) => Err(backend(&error)),
        }
    }
}

/// A keyring error in words; keyring-core's messages never contain secret values.
fn describe(error: &keyring::Error) -> String {
    match error {
        keyring::Error::NoDefaultStore => "no keyring service was found".to_owned(),
        keyring::Error::PlatformFailure(inner) | keyring::Error::NoStorageAccess(inner) => {
            inner.to_string()
        }
        other => other.to_string(),
    }
}

fn backend(error: &keyring::Error) -> TokenStoreError {
    TokenStoreError::Backend(format!("the system keyring failed: {}", describe(error)))
}

/// The fallback file's path for a folder (what [`DesktopTokenStore::open`] uses).
pub fn fallback_path(fallback_dir: &Path) -> PathBuf {
    fallback_dir.join(FALLBACK_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use linzumi_engine::kandan_url::KandanUrl;

    #[test]
    fn user_names_are_stable_per_key() {
        let kandan = KandanUrl::parse("wss://serve.kandanai.com/socket").unwrap();
        let cases = [
            (AuthScope::Unscoped, "https://serve.kandanai.com unscoped"),
            (
                AuthScope::Onboarding,
                "https://serve.kandanai.com onboarding",
            ),
            (
                AuthScope::channel("acme", "codex"),
                "https://serve.kandanai.com channel:acme/codex",
            ),
        ];
        for (scope, user) in cases {
            assert_eq!(
                KeyringTokenStore::user_for(&TokenKey::new(&kandan, scope)),
                user
            );
        }
    }

    #[test]
    fn the_warning_names_the_reason_and_the_file() {
        let warning = fallback_warning("no keyring service was found", Path::new("/h/auth.json"));
        assert!(
            warning.starts_with(
                "The system keyring is not available (no keyring service was found); your Kandan \
                 sign-in is kept in /h/auth.json"
            ),
            "{warning}"
        );
        assert_eq!(fallback_path(Path::new("/h")), Path::new("/h/auth.json"));
    }

    #[test]
    fn the_value_format() {
        let json = serde_json::to_value(KeyringValue {
            access_token: "t".into(),
            saved_at: 1,
            expires_at: None,
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"access_token": "t", "saved_at": 1, "expires_at": null})
        );
    }
}
