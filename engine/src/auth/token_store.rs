//! Where local-runner tokens are kept between runs.
//!
//! [`TokenStore`] is the interface (the desktop app can plug in the OS keyring);
//! [`FileTokenStore`] is the CLI's cache file, `~/.kandan/auth.json` by default
//! (`--auth-file`), and [`MemoryTokenStore`] keeps nothing on disk.
//!
//! # The cache file
//!
//! ```json
//! {
//!   "version": 1,
//!   "tokens": [
//!     {
//!       "kandan_base_url": "https://serve.kandanai.com",
//!       "scope": { "kind": "channel", "workspace": "acme", "channel": "codex" },
//!       "access_token": "eyJhbGciOi…",
//!       "saved_at": 1777000000,
//!       "expires_at": 1777003600
//!     }
//!   ]
//! }
//! ```
//!
//! - One entry per key: `kandan_base_url` is the HTTP origin of `--kandan-url` with no
//!   trailing slash (so `ws://h:4160` and `http://h:4160/` share entries); `scope.kind` is
//!   `unscoped`, `channel` (with `workspace` and `channel`) or `onboarding` (`linzumi start`).
//! - `saved_at` and `expires_at` are Unix seconds; `expires_at` is `null` when Kandan gave
//!   no `expires_in`. Expiry is informational: the token is validated with Kandan before use.
//! - Written atomically (a temporary file in the same folder, then a rename), mode 0600 on
//!   Unix; a folder created for it gets mode 0700 (an existing folder is left as it is).
//! - A file that cannot be read or parsed is never overwritten: it is renamed to
//!   `auth.json.corrupt-<unix milliseconds>` with a warning, and the cache starts empty.
//!   A file with a newer `version` is left alone and not written to.
//! - Tokens never appear in logs or errors; parse errors are reported by position only.
//!
//! Two processes saving at the same moment can lose one of the two updates (the file is
//! never torn); the loser simply authorizes again next time.
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::api::OAuthToken;
use super::{AccessToken, AuthScope};
use crate::kandan_url::KandanUrl;
use crate::private_file;

/// The cache file format this code reads and writes.
pub const CACHE_VERSION: u64 = 1;

/// What a token is stored under: a Kandan and a scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey {
    /// The HTTP origin of the Kandan URL, without a trailing slash.
    pub kandan_base_url: String,
    pub scope: AuthScope,
}

impl TokenKey {
    pub fn new(kandan: &KandanUrl, scope: AuthScope) -> TokenKey {
        TokenKey {
            kandan_base_url: kandan.http_base().as_str().trim_end_matches('/').to_owned(),
            scope,
        }
    }
}

/// A kept token. `Debug` shows no token (see [`AccessToken`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    pub access_token: AccessToken,
    /// Unix seconds.
    pub saved_at: u64,
    /// Unix seconds, if Kandan said when it expires.
    pub expires_at: Option<u64>,
}

impl StoredToken {
    /// A token saved now.
    pub fn new(access_token: AccessToken, expires_in: Option<u64>) -> StoredToken {
        let now = unix_now().as_secs();
        StoredToken {
            access_token,
            saved_at: now,
            expires_at: expires_in.map(|seconds| now.saturating_add(seconds)),
        }
    }

    pub fn from_oauth(token: &OAuthToken) -> StoredToken {
        StoredToken::new(token.access_token.clone(), token.expires_in)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenStoreError {
    #[error("could not {action} the Kandan auth cache {}: {reason}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "the Kandan auth cache {} has format version {version}, newer than this linzumi \
         understands; it is left unchanged (update linzumi, or pass another --auth-file)",
        path.display()
    )]
    NewerFormat { path: PathBuf, version: u64 },
    #[error("there is no home folder to keep the Kandan auth cache in; pass --auth-file")]
    NoHome,
    #[error("the token store failed: {0}")]
    Backend(String),
}

/// Keeps tokens by [`TokenKey`]. Implementations may block (a file, an OS keyring):
/// call them from blocking-friendly code (see `resolution`, which uses `spawn_blocking`).
pub trait TokenStore: Send + Sync {
    fn load(&self, key: &TokenKey) -> Result<Option<StoredToken>, TokenStoreError>;
    /// Saves `token` under `key`, replacing any token already there.
    fn save(&self, key: &TokenKey, token: &StoredToken) -> Result<(), TokenStoreError>;
    /// Forgets the token under `key`; `Ok(true)` if there was one.
    fn remove(&self, key: &TokenKey) -> Result<bool, TokenStoreError>;
}

/// Tokens kept in this process only.
#[derive(Debug, Default)]
pub struct MemoryTokenStore {
    tokens: Mutex<Vec<(TokenKey, StoredToken)>>,
}

impl TokenStore for MemoryTokenStore {
    fn load(&self, key: &TokenKey) -> Result<Option<StoredToken>, TokenStoreError> {
        let tokens = lock(&self.tokens);
        Ok(tokens
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, t)| t.clone()))
    }

    fn save(&self, key: &TokenKey, token: &StoredToken) -> Result<(), TokenStoreError> {
        let mut tokens = lock(&self.tokens);
        tokens.retain(|(k, _)| k != key);
        tokens.push((key.clone(), token.clone()));
        Ok(())
    }

    fn remove(&self, key: &TokenKey) -> Result<bool, TokenStoreError> {
        let mut tokens = lock(&self.tokens);
        let before = tokens.len();
        tokens.retain(|(k, _)| k != key);
        Ok(tokens.len() != before)
    }
}

/// The auth cache file (format in the module documentation).
#[derive(Debug)]
pub struct FileTokenStore {
    path: PathBuf,
    /// Serializes this process's read-modify-write cycles.
    guard: Mutex<()>,
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    version: u64,
    tokens: Vec<CacheEntry>,
}

#[derive(Serialize, Deserialize)]
struct CacheEntry {
    kandan_base_url: String,
    scope: AuthScope,
    access_token: String,
    saved_at: u64,
    expires_at: Option<u64>,
}

impl CacheEntry {
    fn key(&self) -> TokenKey {
        TokenKey {
            kandan_base_url: self.kandan_base_url.clone(),
            scope: self.scope.clone(),
        }
    }
}

impl FileTokenStore {
    pub fn new(path: impl Into<PathBuf>) -> FileTokenStore {
        FileTokenStore {
            path: path.into(),
            guard: Mutex::new(()),
        }
    }

    /// `~/.kandan/auth.json`.
    pub fn default_path() -> Result<PathBuf, TokenStoreError> {
        let home = std::env::home_dir()
            .filter(|home| !home.as_os_str().is_empty())
            .ok_or(TokenStoreError::NoHome)?;
        Ok(home.join(".kandan").join("auth.json"))
    }

    /// The store at `path`, or at [`Self::default_path`] when `None` (`--auth-file`).
    pub fn at(path: Option<PathBuf>) -> Result<FileTokenStore, TokenStoreError> {
        Ok(FileTokenStore::new(match path {
            Some(path) => path,
            None => FileTokenStore::default_path()?,
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io_error(&self, action: &'static str, error: &io::Error) -> TokenStoreError {
        TokenStoreError::Io {
            action,
            path: self.path.clone(),
            reason: error.to_string(),
        }
    }

    /// The file's entries; an unreadable or corrupt file is moved aside first.
    fn read(&self) -> Result<Vec<CacheEntry>, TokenStoreError> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return self.set_aside(&format!("it cannot be read ({error})")),
        };
        match parse(&bytes) {
            Ok(cache) if cache.version == CACHE_VERSION => Ok(cache.tokens),
            Ok(cache) if cache.version > CACHE_VERSION => Err(TokenStoreError::NewerFormat {
                path: self.path.clone(),
                version: cache.version,
            }),
            Ok(cache) => self.set_aside(&format!("unknown format version {}", cache.version)),
            Err(problem) => self.set_aside(&problem),
        }
    }

    /// Renames the cache to `<name>.corrupt-<unix ms>` and starts empty.
    fn set_aside(&self, problem: &str) -> Result<Vec<CacheEntry>, TokenStoreError> {
        let aside = private_file::set_aside(&self.path)
            .map_err(|error| self.io_error("move aside the unusable", &error))?;
        tracing::warn!(
            path = %self.path.display(),
            moved_to = %aside.display(),
            problem,
            "the Kandan auth cache was unusable; moved it aside and starting with an empty cache"
        );
        Ok(Vec::new())
    }

    /// Replaces the file atomically with `entries`.
    fn write(&self, entries: Vec<CacheEntry>) -> Result<(), TokenStoreError> {
        let cache = CacheFile {
            version: CACHE_VERSION,
            tokens: entries,
        };
        let mut json = serde_json::to_vec_pretty(&cache)
            .map_err(|error| TokenStoreError::Backend(error.to_string()))?;
        json.push(b'\n');
        private_file::write_atomically(&self.path, &json)
            .map_err(|failed| self.io_error(failed.action, &failed.error))
    }
}

impl TokenStore for FileTokenStore {
    fn load(&self, key: &TokenKey) -> Result<Option<StoredToken>, TokenStoreError> {
        let _guard = lock(&self.guard);
        let entries = self.read()?;
        Ok(entries
            .into_iter()
            .find(|entry| entry.key() == *key)
            .map(|entry| StoredToken {
                access_token: AccessToken::new(entry.access_token),
                saved_at: entry.saved_at,
                expires_at: entry.expires_at,
            }))
    }

    fn save(&self, key: &TokenKey, token: &StoredToken) -> Result<(), TokenStoreError> {
        let _guard = lock(&self.guard);
        let mut entries = self.read()?;
        entries.retain(|entry| entry.key() != *key);
        entries.push(CacheEntry {
            kandan_base_url: key.kandan_base_url.clone(),
            scope: key.scope.clone(),
            access_token: token.access_token.expose().to_owned(),
            saved_at: token.saved_at,
            expires_at: token.expires_at,
        });
        self.write(entries)
    }

    fn remove(&self, key: &TokenKey) -> Result<bool, TokenStoreError> {
        let _guard = lock(&self.guard);
        let mut entries = self.read()?;
        let before = entries.len();
        entries.retain(|entry| entry.key() != *key);
        if entries.len() == before {
            return Ok(false);
        }
        self.write(entries)?;
        Ok(true)
    }
}

/// Parses the cache; a problem is described by position and kind only, since serde's own
/// messages may quote values, and values here are tokens.
fn parse(bytes: &[u8]) -> Result<CacheFile, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|error| {
        format!(
            "it is not valid JSON ({:?} error at line {} column {})",
            error.classify(),
            error.line(),
            error.column()
        )
    })?;
    let version = value.get("version").and_then(Value::as_u64);
    match version {
        Some(version) if version > CACHE_VERSION => Ok(CacheFile {
            version,
            tokens: Vec::new(),
        }),
        _ => serde_json::from_value(value)
            .map_err(|_| "it does not have the expected version and tokens fields".to_owned()),
    }
}

fn unix_now() -> std::time::Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "linzumi-token-store-{name}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn key(channel: &str) -> TokenKey {
        TokenKey::new(
            &KandanUrl::parse("ws://127.0.0.1:4160").unwrap(),
            AuthScope::channel("acme", channel),
        )
    }

    fn token(value: &str) -> StoredToken {
        StoredToken::new(AccessToken::new(value), Some(60))
    }

    #[test]
    fn keys_share_the_http_origin() {
        let ws = TokenKey::new(
            &KandanUrl::parse("ws://h:4160/socket").unwrap(),
            AuthScope::Onboarding,
        );
        let http = TokenKey::new(
            &KandanUrl::parse("http://h:4160/").unwrap(),
            AuthScope::Onboarding,
        );
        assert_eq!(ws, http);
        assert_eq!(ws.kandan_base_url, "http://h:4160");
        let tls = TokenKey::new(&KandanUrl::parse("wss://h").unwrap(), AuthScope::Onboarding);
        assert_eq!(tls.kandan_base_url, "https://h");
    }

    #[test]
    fn save_load_replace_and_remove() {
        let dir = temp_dir("roundtrip");
        let store = FileTokenStore::new(dir.join("nested").join("auth.json"));
        assert_eq!(store.load(&key("a")).unwrap(), None);
        store.save(&key("a"), &token("t-a")).unwrap();
        store.save(&key("b"), &token("t-b")).unwrap();
        store.save(&key("a"), &token("t-a2")).unwrap();
        let loaded = store.load(&key("a")).unwrap().unwrap();
        assert_eq!(loaded.access_token.expose(), "t-a2");
        assert_eq!(loaded.expires_at, Some(loaded.saved_at + 60));
        assert_eq!(
            store
                .load(&key("b"))
                .unwrap()
                .unwrap()
                .access_token
                .expose(),
            "t-b"
        );
        assert!(store.remove(&key("a")).unwrap());
        assert!(!store.remove(&key("a")).unwrap());
        assert_eq!(store.load(&key("a")).unwrap(), None);
        let json: Value = serde_json::from_slice(&fs::read(store.path()).unwrap()).unwrap();
        assert_eq!(json["version"], 1);
        assert_eq!(json["tokens"].as_array().unwrap().len(), 1);
        assert_eq!(json["tokens"][0]["scope"]["kind"], "channel");
        let leftovers: Vec<_> = fs::read_dir(store.path().parent().unwrap())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(
            leftovers,
            ["auth.json"],
            "no temporary files are left behind"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn corrupt_files_are_moved_aside_without_quoting_tokens() {
        let dir = temp_dir("corrupt");
        let path = dir.join("auth.json");
        for content in [
            "{ not json".to_owned(),
            r#"{"version": 1, "tokens": "secret-token-value"}"#.to_owned(),
            r#"{"version": 0, "tokens": []}"#.to_owned(),
        ] {
            fs::write(&path, &content).unwrap();
            let problem = parse(content.as_bytes()).err().unwrap_or_default();
            assert!(!problem.contains("secret"), "{problem}");
            let store = FileTokenStore::new(&path);
            assert_eq!(store.load(&key("a")).unwrap(), None);
            assert!(!path.exists(), "{content}");
            let aside: Vec<_> = fs::read_dir(&dir)
                .unwrap()
                .map(|entry| entry.unwrap().path())
                .collect();
            assert_eq!(aside.len(), 1);
            assert_eq!(fs::read_to_string(&aside[0]).unwrap(), content);
            fs::remove_file(&aside[0]).unwrap();
        }
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_unreadable_cache_is_moved_aside() {
        let dir = temp_dir("unreadable");
        let path = dir.join("auth.json");
        // A folder where the file should be cannot be read as a file, even by root.
        fs::create_dir(&path).unwrap();
        let store = FileTokenStore::new(&path);
        assert_eq!(store.load(&key("a")).unwrap(), None);
        assert!(!path.exists());
        store.save(&key("a"), &token("t")).unwrap();
        assert!(path.is_file());
        let aside = fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.starts_with("auth.json.corrupt-"))
            .count();
        assert_eq!(aside, 1);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn newer_formats_are_left_alone() {
        let dir = temp_dir("newer");
        let path = dir.join("auth.json");
        let content = r#"{"version": 2, "something": "else"}"#;
        fs::write(&path, content).unwrap();
        let store = FileTokenStore::new(&path);
        assert!(matches!(
            store.load(&key("a")),
            Err(TokenStoreError::NewerFormat { version: 2, .. })
        ));
        let error = store.save(&key("a"), &token("t")).unwrap_err();
        assert!(error.to_string().contains("format version 2"), "{error}");
        assert_eq!(fs::read_to_string(&path).unwrap(), content);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn memory_store_round_trips() {
        let store = MemoryTokenStore::default();
        store.save(&key("a"), &token("t")).unwrap();
        assert_eq!(
            store
                .load(&key("a"))
                .unwrap()
                .unwrap()
                .access_token
                .expose(),
            "t"
        );
        assert_eq!(store.load(&key("b")).unwrap(), None);
        assert!(store.remove(&key("a")).unwrap());
        assert_eq!(store.load(&key("a")).unwrap(), None);
    }

    #[test]
    fn debug_never_shows_the_token() {
        let shown = format!("{:?}", token("secret-token-value"));
        assert!(!shown.contains("secret"), "{shown}");
    }
}
