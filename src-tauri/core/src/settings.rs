//! The desktop app's settings and shared folders, kept in one JSON file
//! (`<config dir>/linzumi/desktop.json`, e.g. `~/.config/linzumi/desktop.json` on Linux).
//!
//! One file, because the two change together (a folder is started with the settings) and
//! a single atomic rename keeps them consistent. The rules follow the CLI's auth cache:
//!
//! - Written atomically (a temporary file in the same folder, then a rename), mode 0600 on
//!   Unix; a folder created for it gets mode 0700. Paths of shared folders are private.
//! - A file that cannot be read or parsed is never overwritten: it is renamed to
//!   `desktop.json.corrupt-<unix milliseconds>` with a warning, and defaults are used.
//! - A file with a newer `version` is left alone: loading and saving both fail, so an
//!   older app cannot throw away what a newer one wrote.
//! - Missing fields take their defaults and unknown fields are ignored, so that adding a
//!   setting needs no new `version`.
//!
//! The JSON uses camelCase names, the same as the UI snapshot.
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use linzumi_engine::kandan_url::{KandanUrl, KandanUrlError};
use linzumi_engine::private_file;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The format of `desktop.json` this code reads and writes.
pub const CONFIG_VERSION: u64 = 1;
pub const DEFAULT_KANDAN_URL: &str = "wss://serve.kandanai.com";
pub const DEFAULT_CODEX_BIN: &str = "codex";
pub const DEFAULT_STREAM_FLUSH_MS: u64 = 150;
/// The allowed range of [`Settings::stream_flush_ms`].
pub const STREAM_FLUSH_RANGE_MS: std::ops::RangeInclusive<u64> = 10..=10_000;

/// What the user can change in the settings window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Settings {
    pub kandan_url: String,
    /// The Codex executable: a name looked up on `PATH`, or a path.
    pub codex_bin: String,
    /// The user's own code-server; `None` uses the runtime Kandan approves.
    pub code_server_bin: Option<String>,
    pub model: Option<String>,
    pub reasoning_effort: Option<String>,
    pub fast: bool,
    /// When Codex asks before acting (`untrusted`, `on-request`, `never`); `None` is
    /// Codex's own default. The answers come as notifications and in the thread. Kandan
    /// may ask for a stricter policy, never a looser one.
    pub approval_policy: Option<String>,
    /// What Codex's commands may change (`read-only`, `workspace-write`,
    /// `danger-full-access`); `None` is Codex's own default. A ceiling, like the policy.
    pub sandbox: Option<String>,
    /// The Kandan user whose messages Codex acts on; `None` means the signed-in user.
    pub listen_user: Option<String>,
    /// Extra folders Codex may work in besides the shared folder (absolute paths).
    pub allowed_roots: Vec<String>,
    /// Ports forwarded without asking.
    pub forward_ports: Vec<u16>,
    pub stream_flush_ms: u64,
    pub start_at_login: bool,
    /// Look for a new Linzumi release at start and daily (the update feed).
    pub check_for_updates: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            kandan_url: DEFAULT_KANDAN_URL.to_owned(),
            codex_bin: DEFAULT_CODEX_BIN.to_owned(),
            code_server_bin: None,
            model: None,
            reasoning_effort: None,
            fast: false,
            approval_policy: None,
            sandbox: None,
            listen_user: None,
            allowed_roots: Vec::new(),
            forward_ports: Vec::new(),
            stream_flush_ms: DEFAULT_STREAM_FLUSH_MS,
            start_at_login: false,
            check_for_updates: true,
        }
    }
}

/// One thing wrong with the settings, named by its camelCase field so that the UI can
/// show the message next to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SettingsProblem {
    pub field: &'static str,
    pub message: String,
}

/// Why settings were not saved, for the window: every problem by field (shown at the
/// field), or a sentence for the form when the file could not be written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SettingsRejected {
    pub message: String,
    pub problems: Vec<SettingsProblem>,
}

impl From<InvalidSettings> for SettingsRejected {
    fn from(invalid: InvalidSettings) -> SettingsRejected {
        SettingsRejected {
            message: invalid.to_string(),
            problems: invalid.0,
        }
    }
}

impl From<String> for SettingsRejected {
    fn from(message: String) -> SettingsRejected {
        SettingsRejected {
            message,
            problems: Vec::new(),
        }
    }
}

/// The Kandan address as typed, made complete: a bare host name (`kandan.example.com`,
/// `kandan.example.com:4000/prefix`) means https.
pub fn complete_kandan_url(text: &str) -> String {
    let text = text.trim();
    if text.is_empty() || text.contains("://") {
        text.to_owned()
    } else {
        format!("https://{text}")
    }
}

/// Everything wrong with the settings (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(|problem| problem.message.as_str()).collect::<Vec<_>>().join(" "))]
pub struct InvalidSettings(pub Vec<SettingsProblem>);

impl Settings {
    /// The settings as they are saved: the Kandan address completed, text fields trimmed,
    /// empty optional ones unset.
    pub fn normalized(mut self) -> Settings {
        self.kandan_url = complete_kandan_url(&self.kandan_url);
        self.codex_bin = self.codex_bin.trim().to_owned();
        for value in [
            &mut self.code_server_bin,
            &mut self.model,
            &mut self.reasoning_effort,
            &mut self.listen_user,
        ] {
            *value = value
                .take()
                .map(|text| text.trim().to_owned())
                .filter(|text| !text.is_empty());
        }
        self
    }

    /// Checks every field and reports all problems at once, in plain sentences.
    pub fn validate(&self) -> Result<(), InvalidSettings> {
        let mut problems = Vec::new();
        let mut problem = |field, message: String| {
            problems.push(SettingsProblem { field, message });
        };
        if let Err(error) = KandanUrl::parse(self.kandan_url.trim()) {
            let why = match error {
                KandanUrlError::Invalid(_) => "it is not a web address",
                KandanUrlError::Scheme => "it must start with https:// (or wss://, http://, ws://)",
            };
            problem(
                "kandanUrl",
                format!(
                    "The Kandan server \"{}\" cannot be used: {why}. Enter its host name, like \
                     kandan.example.com.",
                    self.kandan_url
                ),
            );
        }
        if self.codex_bin.trim().is_empty() {
            problem(
                "codexBin",
                "The Codex program is empty: use \"codex\" or the path to it.".to_owned(),
            );
        }
        for (field, value, what) in [
            (
                "codeServerBin",
                &self.code_server_bin,
                "The code-server program",
            ),
            ("model", &self.model, "The model"),
            (
                "reasoningEffort",
                &self.reasoning_effort,
                "The reasoning effort",
            ),
            (
                "listenUser",
                &self.listen_user,
                "The Kandan user to listen to",
            ),
        ] {
            if value
                .as_deref()
                .is_some_and(|value| value.trim().is_empty())
            {
                problem(field, format!("{what} is empty: leave it unset instead."));
            }
        }
        for root in &self.allowed_roots {
            if !Path::new(root).is_absolute() {
                problem(
                    "allowedRoots",
                    format!(
                        "The allowed folder \"{root}\" must be a full path (like /home/ada/src)."
                    ),
                );
            }
        }
        if let Some(policy) = &self.approval_policy
            && !linzumi_engine::codex::runtime_options::APPROVAL_POLICIES.contains(&policy.as_str())
        {
            problem(
                "approvalPolicy",
                format!(
                    "\"{policy}\" is not an approval policy: use untrusted, on-request or never."
                ),
            );
        }
        if let Some(sandbox) = &self.sandbox
            && !linzumi_engine::codex::runtime_options::SANDBOX_MODES.contains(&sandbox.as_str())
        {
            problem(
                "sandbox",
                format!(
                    "\"{sandbox}\" is not a sandbox mode: use read-only, workspace-write or danger-full-access."
                ),
            );
        }
        if self.forward_ports.contains(&0) {
            problem(
                "forwardPorts",
                "Port 0 cannot be forwarded: use ports from 1 to 65535.".to_owned(),
            );
        }
        if !STREAM_FLUSH_RANGE_MS.contains(&self.stream_flush_ms) {
            problem(
                "streamFlushMs",
                format!(
                    "The streaming interval must be from {} to {} milliseconds (it is {}).",
                    STREAM_FLUSH_RANGE_MS.start(),
                    STREAM_FLUSH_RANGE_MS.end(),
                    self.stream_flush_ms
                ),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(InvalidSettings(problems))
        }
    }
}

/// A folder shared with Kandan: one runner each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SharedFolder {
    /// A UUID, stable for the life of the share.
    pub id: String,
    /// Canonical (symlinks resolved) when it was added.
    pub path: PathBuf,
    /// `desktop-<uuid>`: the runner id Kandan sees, stable across restarts.
    pub runner_id: String,
    pub workspace: Option<String>,
    pub channel: Option<String>,
    /// Unix seconds.
    pub added_at: u64,
}

impl SharedFolder {
    /// A new share of `path` (taken as given), with fresh ids.
    pub fn new(path: PathBuf) -> SharedFolder {
        SharedFolder {
            id: uuid::Uuid::new_v4().to_string(),
            path,
            runner_id: format!("desktop-{}", uuid::Uuid::new_v4()),
            workspace: None,
            channel: None,
            added_at: unix_now().as_secs(),
        }
    }

    /// Whether the folder is still where it was shared: its path resolves to itself (it
    /// was stored resolved) and is a folder. Moved, deleted, or replaced by a link to
    /// somewhere else, it is not.
    pub fn is_intact(&self) -> bool {
        fs::canonicalize(&self.path).is_ok_and(|now| now == self.path && now.is_dir())
    }

    /// The folder's own name, for titles ("3 more updates in my-app").
    pub fn display_name(&self) -> String {
        self.path.file_name().map_or_else(
            || self.path.display().to_string(),
            |name| name.to_string_lossy().into_owned(),
        )
    }
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesktopConfig {
    pub version: u64,
    #[serde(default)]
    pub settings: Settings,
    #[serde(default)]
    pub folders: Vec<SharedFolder>,
}

impl Default for DesktopConfig {
    fn default() -> DesktopConfig {
        DesktopConfig {
            version: CONFIG_VERSION,
            settings: Settings::default(),
            folders: Vec::new(),
        }
    }
}

/// Why a folder cannot be shared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FolderError {
    #[error("\"{}\" cannot be shared: {reason}.", path.display())]
    Unusable { path: PathBuf, reason: String },
    #[error("\"{}\" is a file, not a folder: choose the folder that contains it.", path.display())]
    NotAFolder { path: PathBuf },
    #[error("\"{}\" is already shared.", existing.display())]
    AlreadyShared { existing: PathBuf },
    #[error("That folder is not shared any more.")]
    NotShared,
}

impl DesktopConfig {
    /// Shares `path`: resolved to its canonical form, refused if it is not a folder or is
    /// already shared (under any spelling or symlink).
    pub fn add_folder(&mut self, path: &Path) -> Result<&SharedFolder, FolderError> {
        let canonical = usable_folder(path)?;
        if let Some(existing) = self.folders.iter().find(|folder| {
            fs::canonicalize(&folder.path).unwrap_or(folder.path.clone()) == canonical
        }) {
            return Err(FolderError::AlreadyShared {
                existing: existing.path.clone(),
            });
        }
        self.folders.push(SharedFolder::new(canonical));
        let index = self.folders.len() - 1;
        Ok(&self.folders[index])
    }

    /// Points the share `id` at `path`, where the folder is now (after "Locate…"): the
    /// same checks as sharing it; the share keeps its ids and channel.
    pub fn relocate(&mut self, id: &str, path: &Path) -> Result<&SharedFolder, FolderError> {
        let canonical = usable_folder(path)?;
        if let Some(existing) = self.folders.iter().find(|folder| {
            folder.id != id
                && fs::canonicalize(&folder.path).unwrap_or(folder.path.clone()) == canonical
        }) {
            return Err(FolderError::AlreadyShared {
                existing: existing.path.clone(),
            });
        }
        let folder = self
            .folders
            .iter_mut()
            .find(|folder| folder.id == id)
            .ok_or(FolderError::NotShared)?;
        folder.path = canonical;
        Ok(folder)
    }

    /// Stops sharing a folder; returns it if it was there.
    pub fn remove_folder(&mut self, id: &str) -> Option<SharedFolder> {
        let index = self.folders.iter().position(|folder| folder.id == id)?;
        Some(self.folders.remove(index))
    }

    pub fn folder(&self, id: &str) -> Option<&SharedFolder> {
        self.folders.iter().find(|folder| folder.id == id)
    }

    pub fn folder_mut(&mut self, id: &str) -> Option<&mut SharedFolder> {
        self.folders.iter_mut().find(|folder| folder.id == id)
    }
}

/// `path` resolved, if it is a folder that can be shared.
fn usable_folder(path: &Path) -> Result<PathBuf, FolderError> {
    let canonical = fs::canonicalize(path).map_err(|error| FolderError::Unusable {
        path: path.to_owned(),
        reason: io_reason(&error),
    })?;
    if !canonical.is_dir() {
        return Err(FolderError::NotAFolder { path: canonical });
    }
    if canonical.to_str().is_none() {
        // It could not be written to desktop.json or shown in the window.
        return Err(FolderError::Unusable {
            path: canonical,
            reason: "its name is not valid Unicode".to_owned(),
        });
    }
    Ok(canonical)
}

fn io_reason(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::NotFound => "it does not exist".to_owned(),
        io::ErrorKind::PermissionDenied => "you do not have permission to open it".to_owned(),
        _ => error.to_string(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("could not {action} the Linzumi settings file {}: {reason}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "the Linzumi settings file {} was written by a newer Linzumi (format version {version}); \
         it is left unchanged: update Linzumi Desktop",
        path.display()
    )]
    NewerFormat { path: PathBuf, version: u64 },
    #[error("there is no configuration folder for the Linzumi settings file")]
    NoConfigDir,
}

/// What [`ConfigStore::load_reporting`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub config: DesktopConfig,
    /// Set when an unusable file was moved aside: a sentence for the user.
    pub notice: Option<String>,
}

/// Reads and writes `desktop.json`.
#[derive(Debug, Clone)]
pub struct ConfigStore {
    path: PathBuf,
}

impl ConfigStore {
    /// The store at `path` (nothing is read yet).
    pub fn open(path: impl Into<PathBuf>) -> ConfigStore {
        ConfigStore { path: path.into() }
    }

    /// `<config dir>/linzumi/desktop.json`.
    pub fn default_path() -> Result<PathBuf, ConfigError> {
        let dir = dirs::config_dir()
            .filter(|dir| !dir.as_os_str().is_empty())
            .ok_or(ConfigError::NoConfigDir)?;
        Ok(dir.join("linzumi").join("desktop.json"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The configuration; defaults if there is no file (or it had to be moved aside).
    pub fn load(&self) -> Result<DesktopConfig, ConfigError> {
        self.load_reporting().map(|loaded| loaded.config)
    }

    /// Like [`Self::load`], also saying when the file was unusable and moved aside.
    pub fn load_reporting(&self) -> Result<Loaded, ConfigError> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Ok(Loaded {
                    config: DesktopConfig::default(),
                    notice: None,
                });
            }
            Err(error) => return self.set_aside(&format!("it cannot be read ({error})")),
        };
        match parse(&bytes) {
            Ok(config) if config.version == CONFIG_VERSION => Ok(Loaded {
                config,
                notice: None,
            }),
            Ok(config) if config.version > CONFIG_VERSION => Err(ConfigError::NewerFormat {
                path: self.path.clone(),
                version: config.version,
            }),
            Ok(config) => self.set_aside(&format!("unknown format version {}", config.version)),
            Err(problem) => self.set_aside(&problem),
        }
    }

    /// Replaces the file atomically with `config` (written as format [`CONFIG_VERSION`]).
    pub fn save(&self, config: &DesktopConfig) -> Result<(), ConfigError> {
        if let Ok(bytes) = fs::read(&self.path)
            && let Some(version) = newer_version(&bytes)
        {
            return Err(ConfigError::NewerFormat {
                path: self.path.clone(),
                version,
            });
        }
        let mut config = config.clone();
        config.version = CONFIG_VERSION;
        let mut json = serde_json::to_vec_pretty(&config).map_err(|error| ConfigError::Io {
            action: "encode",
            path: self.path.clone(),
            reason: error.to_string(),
        })?;
        json.push(b'\n');
        private_file::write_atomically(&self.path, &json)
            .map_err(|failed| self.io_error(failed.action, &failed.error))
    }

    fn io_error(&self, action: &'static str, error: &io::Error) -> ConfigError {
        ConfigError::Io {
            action,
            path: self.path.clone(),
            reason: error.to_string(),
        }
    }

    /// Renames the file to `<name>.corrupt-<unix ms>` and starts from defaults.
    fn set_aside(&self, problem: &str) -> Result<Loaded, ConfigError> {
        let aside = private_file::set_aside(&self.path)
            .map_err(|error| self.io_error("move aside the unusable", &error))?;
        tracing::warn!(
            path = %self.path.display(),
            moved_to = %aside.display(),
            problem,
            "the Linzumi settings file was unusable; moved it aside and starting from defaults"
        );
        Ok(Loaded {
            config: DesktopConfig::default(),
            notice: Some(format!(
                "Your Linzumi settings could not be read ({problem}), so the defaults are used. \
                 The old file was kept as {}.",
                aside.display()
            )),
        })
    }
}

/// Parses the file; a newer version is returned without looking at the rest.
fn parse(bytes: &[u8]) -> Result<DesktopConfig, String> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|error| format!("it is not valid JSON: {error}"))?;
    match value.get("version").and_then(Value::as_u64) {
        Some(version) if version > CONFIG_VERSION => Ok(DesktopConfig {
            version,
            ..DesktopConfig::default()
        }),
        _ => serde_json::from_value(value)
            .map_err(|error| format!("it does not have the expected fields: {error}")),
    }
}

fn newer_version(bytes: &[u8]) -> Option<u64> {
    let value: Value = serde_json::from_slice(bytes).ok()?;
    value
        .get("version")
        .and_then(Value::as_u64)
        .filter(|version| *version > CONFIG_VERSION)
}

fn unix_now() -> std::time::Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "linzumi-desktop-settings-{name}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn defaults() {
        let settings = Settings::default();
        assert_eq!(settings.kandan_url, "wss://serve.kandanai.com");
        assert_eq!(settings.codex_bin, "codex");
        assert_eq!(settings.stream_flush_ms, 150);
        assert!(!settings.fast && !settings.start_at_login);
        assert_eq!(settings.validate(), Ok(()));
    }

    #[test]
    fn settings_saved_before_the_update_setting_look_for_updates() {
        let settings: Settings =
            serde_json::from_str(r#"{"kandanUrl": "wss://serve.kandanai.com", "fast": true}"#)
                .unwrap();
        assert!(settings.check_for_updates && settings.fast);
    }

    #[test]
    fn missing_file_gives_defaults_and_save_round_trips() {
        let dir = temp_dir("roundtrip");
        let store = ConfigStore::open(dir.join("nested").join("desktop.json"));
        assert_eq!(store.load().unwrap(), DesktopConfig::default());
        let mut config = DesktopConfig::default();
        config.settings.model = Some("gpt-5".into());
        config.settings.forward_ports = vec![5173];
        config.add_folder(&dir).unwrap();
        store.save(&config).unwrap();
        assert_eq!(store.load().unwrap(), config);
        assert_eq!(
            entries(&dir.join("nested")),
            ["desktop.json"],
            "no temporary files"
        );
        let json: Value = serde_json::from_slice(&fs::read(store.path()).unwrap()).unwrap();
        assert_eq!(json["version"], 1);
        assert_eq!(json["settings"]["kandanUrl"], "wss://serve.kandanai.com");
        assert_eq!(json["settings"]["forwardPorts"], json!([5173]));
        assert_eq!(json["folders"][0]["runnerId"], config.folders[0].runner_id);
        fs::remove_dir_all(dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn file_and_new_folder_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = temp_dir("modes");
        let store = ConfigStore::open(dir.join("linzumi").join("desktop.json"));
        store.save(&DesktopConfig::default()).unwrap();
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(store.path()), 0o600);
        assert_eq!(mode(&dir.join("linzumi")), 0o700);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_fields_take_defaults_and_unknown_fields_are_ignored() {
        let dir = temp_dir("partial");
        let path = dir.join("desktop.json");
        fs::write(
            &path,
            r#"{"version": 1, "settings": {"fast": true, "someday": 1}, "extra": []}"#,
        )
        .unwrap();
        let config = ConfigStore::open(&path).load().unwrap();
        assert!(config.settings.fast);
        assert_eq!(config.settings.stream_flush_ms, 150);
        assert!(config.folders.is_empty());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn corrupt_files_are_moved_aside_and_defaults_used() {
        let dir = temp_dir("corrupt");
        let path = dir.join("desktop.json");
        for content in [
            "{ not json",
            r#"{"version": 1, "folders": "nope"}"#,
            r#"{"version": 0}"#,
            r#"{"settings": {}}"#,
        ] {
            fs::write(&path, content).unwrap();
            let store = ConfigStore::open(&path);
            let loaded = store.load_reporting().unwrap();
            assert_eq!(loaded.config, DesktopConfig::default(), "{content}");
            let notice = loaded.notice.unwrap();
            assert!(notice.contains("defaults are used"), "{notice}");
            assert!(!path.exists(), "{content}");
            let names = entries(&dir);
            assert_eq!(names.len(), 1);
            assert!(names[0].starts_with("desktop.json.corrupt-"), "{names:?}");
            assert!(notice.contains(&names[0]), "{notice}");
            assert_eq!(fs::read_to_string(dir.join(&names[0])).unwrap(), content);
            fs::remove_file(dir.join(&names[0])).unwrap();
        }
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_unreadable_file_is_moved_aside() {
        let dir = temp_dir("unreadable");
        let path = dir.join("desktop.json");
        fs::create_dir(&path).unwrap();
        let store = ConfigStore::open(&path);
        assert_eq!(store.load().unwrap(), DesktopConfig::default());
        store.save(&DesktopConfig::default()).unwrap();
        assert!(path.is_file());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn newer_formats_are_left_alone() {
        let dir = temp_dir("newer");
        let path = dir.join("desktop.json");
        let content = r#"{"version": 2, "settings": "different"}"#;
        fs::write(&path, content).unwrap();
        let store = ConfigStore::open(&path);
        let error = store.load().unwrap_err();
        assert!(matches!(error, ConfigError::NewerFormat { version: 2, .. }));
        assert!(error.to_string().contains("newer Linzumi"), "{error}");
        let error = store.save(&DesktopConfig::default()).unwrap_err();
        assert!(matches!(error, ConfigError::NewerFormat { version: 2, .. }));
        assert_eq!(fs::read_to_string(&path).unwrap(), content);
        assert_eq!(entries(&dir), ["desktop.json"]);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn validation_reports_every_problem_by_field() {
        let settings = Settings {
            kandan_url: "ftp://kandan.example".into(),
            codex_bin: " ".into(),
            model: Some(String::new()),
            approval_policy: Some("sometimes".into()),
            sandbox: Some("yolo".into()),
            allowed_roots: vec!["/ok".into(), "relative/dir".into()],
            forward_ports: vec![3000, 0],
            stream_flush_ms: 5,
            ..Settings::default()
        };
        let InvalidSettings(problems) = settings.validate().unwrap_err();
        let fields: Vec<_> = problems.iter().map(|problem| problem.field).collect();
        assert_eq!(
            fields,
            [
                "kandanUrl",
                "codexBin",
                "model",
                "allowedRoots",
                "approvalPolicy",
                "sandbox",
                "forwardPorts",
                "streamFlushMs"
            ]
        );
        assert_eq!(
            problems[4].message,
            "\"sometimes\" is not an approval policy: use untrusted, on-request or never."
        );
        assert_eq!(
            problems[0].message,
            "The Kandan server \"ftp://kandan.example\" cannot be used: it must start with \
             https:// (or wss://, http://, ws://). Enter its host name, like kandan.example.com."
        );
        assert!(
            problems[3]
                .message
                .contains("\"relative/dir\" must be a full path")
        );
        assert_eq!(
            problems[5].message,
            "\"yolo\" is not a sandbox mode: use read-only, workspace-write or danger-full-access."
        );
        assert!(
            problems[7]
                .message
                .contains("from 10 to 10000 milliseconds (it is 5)")
        );
        let not_a_url = Settings {
            kandan_url: "not a url".into(),
            ..Settings::default()
        };
        let error = not_a_url.validate().unwrap_err();
        assert!(
            error.to_string().contains("it is not a web address"),
            "{error}"
        );
        for ms in [10, 10_000] {
            let edge = Settings {
                stream_flush_ms: ms,
                ..Settings::default()
            };
            assert_eq!(edge.validate(), Ok(()));
        }
        let local = Settings {
            kandan_url: "http://127.0.0.1:4160".into(),
            approval_policy: Some("untrusted".into()),
            forward_ports: vec![1, 65535],
            ..Settings::default()
        };
        assert_eq!(local.validate(), Ok(()));
    }

    #[test]
    fn folders_are_canonical_and_shared_once() {
        let dir = temp_dir("folders");
        let project = dir.join("project");
        fs::create_dir(&project).unwrap();
        fs::write(dir.join("file.txt"), "x").unwrap();
        let mut config = DesktopConfig::default();
        let added = config
            .add_folder(&dir.join("project/../project"))
            .unwrap()
            .clone();
        assert_eq!(added.path, fs::canonicalize(&project).unwrap());
        assert!(added.runner_id.starts_with("desktop-"));
        assert_eq!(added.runner_id.len(), "desktop-".len() + 36);
        assert!(uuid::Uuid::parse_str(&added.id).is_ok());
        assert_eq!(added.display_name(), "project");

        let again = config.add_folder(&project).unwrap_err();
        assert_eq!(
            again.to_string(),
            format!("\"{}\" is already shared.", added.path.display())
        );
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&project, dir.join("link")).unwrap();
            let error = config.add_folder(&dir.join("link")).unwrap_err();
            assert!(
                matches!(error, FolderError::AlreadyShared { .. }),
                "{error}"
            );
        }
        let file = config.add_folder(&dir.join("file.txt")).unwrap_err();
        assert!(
            file.to_string().contains("is a file, not a folder"),
            "{file}"
        );
        let missing = config.add_folder(&dir.join("missing")).unwrap_err();
        assert!(
            missing
                .to_string()
                .ends_with("cannot be shared: it does not exist."),
            "{missing}"
        );
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::ffi::OsStrExt as _;
            let odd = dir.join(std::ffi::OsStr::from_bytes(b"odd-\xff"));
            fs::create_dir(&odd).unwrap();
            let error = config.add_folder(&odd).unwrap_err();
            assert!(
                error
                    .to_string()
                    .ends_with("its name is not valid Unicode."),
                "{error}"
            );
        }
        assert_eq!(config.folders.len(), 1);

        assert!(config.folder(&added.id).is_some());
        config.folder_mut(&added.id).unwrap().channel = Some("codex".into());
        assert_eq!(
            config.folder(&added.id).unwrap().channel.as_deref(),
            Some("codex")
        );
        assert_eq!(config.remove_folder(&added.id).unwrap().id, added.id);
        assert!(config.remove_folder(&added.id).is_none());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_bare_host_name_is_https_and_blank_fields_are_unset() {
        for (typed, saved) in [
            ("kandan.example.com", "https://kandan.example.com"),
            (
                "  kandan.example.com:4000/k ",
                "https://kandan.example.com:4000/k",
            ),
            ("localhost:4160", "https://localhost:4160"),
            ("ws://127.0.0.1:4160", "ws://127.0.0.1:4160"),
            ("wss://serve.kandanai.com", "wss://serve.kandanai.com"),
        ] {
            let settings = Settings {
                kandan_url: typed.into(),
                ..Settings::default()
            }
            .normalized();
            assert_eq!(settings.kandan_url, saved, "{typed}");
            assert_eq!(settings.validate(), Ok(()), "{typed}");
        }
        let settings = Settings {
            codex_bin: " /opt/codex ".into(),
            model: Some("  ".into()),
            listen_user: Some(" ada ".into()),
            ..Settings::default()
        }
        .normalized();
        assert_eq!(settings.codex_bin, "/opt/codex");
        assert_eq!(settings.model, None);
        assert_eq!(settings.listen_user.as_deref(), Some("ada"));
        let rejected = SettingsRejected::from(
            Settings {
                kandan_url: "https://".into(),
                ..Settings::default()
            }
            .normalized()
            .validate()
            .unwrap_err(),
        );
        assert_eq!(rejected.problems[0].field, "kandanUrl");
        assert_eq!(
            serde_json::to_value(&rejected).unwrap()["problems"][0]["field"],
            "kandanUrl"
        );
    }

    #[test]
    fn a_moved_folder_is_noticed_and_relocated_with_its_ids() {
        let dir = temp_dir("relocate");
        fs::create_dir(dir.join("app")).unwrap();
        fs::create_dir(dir.join("other")).unwrap();
        let mut config = DesktopConfig::default();
        let app = config.add_folder(&dir.join("app")).unwrap().clone();
        let other = config.add_folder(&dir.join("other")).unwrap().clone();
        assert!(app.is_intact());
        fs::rename(dir.join("app"), dir.join("moved")).unwrap();
        assert!(!app.is_intact(), "moved");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.join("other"), dir.join("app")).unwrap();
            assert!(!app.is_intact(), "a link to another folder in its place");
            fs::remove_file(dir.join("app")).unwrap();
        }
        fs::write(dir.join("file"), "x").unwrap();
        assert!(matches!(
            config.relocate(&app.id, &dir.join("file")),
            Err(FolderError::NotAFolder { .. })
        ));
        assert!(matches!(
            config.relocate(&app.id, &dir.join("other")),
            Err(FolderError::AlreadyShared { .. })
        ));
        assert!(matches!(
            config.relocate(&app.id, &dir.join("nowhere")),
            Err(FolderError::Unusable { .. })
        ));
        assert_eq!(
            config.relocate("no-such-id", &dir.join("moved")),
            Err(FolderError::NotShared)
        );
        let moved = config
            .relocate(&app.id, &dir.join("moved"))
            .unwrap()
            .clone();
        assert_eq!(moved.path, fs::canonicalize(dir.join("moved")).unwrap());
        assert_eq!(
            (&moved.id, &moved.runner_id, &moved.channel),
            (&app.id, &app.runner_id, &app.channel)
        );
        assert!(moved.is_intact());
        // Re-locating a folder to where it already is is fine.
        assert!(config.relocate(&other.id, &dir.join("other")).is_ok());
        fs::remove_dir_all(dir).unwrap();
    }
}
