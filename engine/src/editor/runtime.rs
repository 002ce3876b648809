//! The code-server editor runtime Kandan approves, downloaded, verified and cached.
//!
//! Unless the user passes `--code-server-bin`, the runner asks Kandan which code-server build
//! to use for this platform ([`fetch_manifest`]: `GET` [`EDITOR_RUNTIME_PATH`]`?platform=…`),
//! downloads that archive, checks its size and SHA-256 while it streams, and unpacks it into a
//! cache ([`RuntimeCache`]):
//!
//! - `<root>/code-server-<version>-<platform>/`: an unpacked runtime, the archive's single
//!   top-level directory stripped. Its [`MARKER_FILE`] (`{version, platform, sha256,
//!   entrypoint}`) is written last; an install is reused only when the marker matches the
//!   manifest's version and checksum and the entrypoint exists.
//! - `<root>/downloads/<sha256>.<id>.partial`: a download in progress (each download has its
//!   own file, so two runners installing at once never write into the same one). A rejected
//!   download is deleted, never unpacked; a verified one is deleted once unpacked.
//! - `<root>/.staging-<uuid>/`: an unpack in progress, renamed into place when complete.
//!
//! Errors say what went wrong and what to do, and never include the token.
use std::error::Error as _;
use std::ffi::OsString;
use std::fs;
use std::io::{self, BufReader, Read, Write as _};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;
use url::Url;

use crate::http::{CONNECT_TIMEOUT, USER_AGENT, describe_status, untrusting_tls_config};
use crate::kandan_url::{KandanUrl, redact};
use crate::tls;

/// Kandan's endpoint naming the approved editor runtime for a platform.
pub const EDITOR_RUNTIME_PATH: &str = "/api/v2/local-codex-runner/editor-runtime";
/// The only runtime this module installs.
pub const CODE_SERVER: &str = "code-server";
/// The platforms code-server publishes builds for, as Kandan names them.
pub const PLATFORMS: [&str; 4] = ["linux-x64", "linux-arm64", "darwin-x64", "darwin-arm64"];
/// Written last into an unpacked runtime: it is what makes the install count.
pub const MARKER_FILE: &str = "linzumi-runtime.json";
/// Downloads tried before giving up.
pub const DOWNLOAD_ATTEMPTS: u32 = 3;
/// A download that receives nothing for this long fails (and is retried).
pub const DOWNLOAD_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Redirects a download may follow (archives often live on a CDN).
pub const MAX_DOWNLOAD_REDIRECTS: usize = 5;
/// The wait before the second attempt; the third waits twice as long.
const RETRY_BACKOFF: Duration = Duration::from_millis(500);
/// Download progress is reported at most this often and only after this many new bytes.
const PROGRESS_MIN_BYTES: u64 = 64 * 1024;
const PROGRESS_MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Leftover partial downloads and staging directories older than this are from runners
/// that died; they are removed at the next install.
const STALE_AFTER: Duration = Duration::from_secs(60 * 60);
const DOWNLOADS_DIR: &str = "downloads";
const STAGING_PREFIX: &str = ".staging-";
const USE_YOUR_OWN: &str = "pass --code-server-bin with a code-server you installed";

/// Kandan's name for the platform this runner runs on; `None` where code-server publishes
/// no build (Windows, other CPUs): the user must pass `--code-server-bin`.
pub fn current_platform() -> Option<&'static str> {
    platform_for(std::env::consts::OS, std::env::consts::ARCH)
}

/// Kandan's platform name for Rust's `std::env::consts::{OS, ARCH}`.
pub fn platform_for(os: &str, arch: &str) -> Option<&'static str> {
    match (os, arch) {
        ("linux", "x86_64") => Some("linux-x64"),
        ("linux", "aarch64") => Some("linux-arm64"),
        ("macos", "x86_64") => Some("darwin-x64"),
        ("macos", "aarch64") => Some("darwin-arm64"),
        _ => None,
    }
}

/// Kandan's answer: the approved runtime for one platform.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeManifest {
    /// Always `code-server`.
    pub runtime: String,
    pub version: String,
    pub platform: String,
    /// The archive: absolute, or a path relative to the Kandan base.
    pub url: String,
    /// The archive's SHA-256, 64 hex digits.
    pub sha256: String,
    /// The archive's size in bytes.
    pub size: u64,
    /// The launcher, relative to the runtime's directory (`bin/code-server`).
    pub entrypoint: String,
}

impl RuntimeManifest {
    /// Checks everything the cache relies on: the runtime is code-server for `platform`, the
    /// version and platform are safe in a directory name, the checksum is 64 hex digits, the
    /// size is not zero, the entrypoint stays inside the runtime and the URL is http(s).
    pub fn validate(&self, platform: &str) -> Result<(), RuntimeError> {
        let invalid = |reason: String| Err(RuntimeError::InvalidManifest { reason });
        if self.runtime != CODE_SERVER {
            return invalid(format!(
                "runtime is {:?}, expected {CODE_SERVER:?}",
                self.runtime
            ));
        }
        if self.platform != platform {
            return invalid(format!(
                "it is for platform {:?}, but {platform:?} was asked for",
                self.platform
            ));
        }
        if !is_safe_name(&self.platform) {
            return invalid(format!("platform {:?} is not a usable name", self.platform));
        }
        if !is_safe_name(&self.version) {
            return invalid(format!("version {:?} is not a usable name", self.version));
        }
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return invalid(format!(
                "sha256 {:?} is not 64 hexadecimal digits",
                self.sha256
            ));
        }
        if self.size == 0 {
            return invalid("size is 0".to_owned());
        }
        if !is_inside_relative(&self.entrypoint) {
            return invalid(format!(
                "entrypoint {:?} is not a relative path inside the runtime",
                self.entrypoint
            ));
        }
        let url = Url::parse("http://kandan.invalid/").and_then(|base| base.join(&self.url));
        match url {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(()),
            _ => invalid(format!("url {:?} is not an http(s) URL or path", self.url)),
        }
    }

    /// The archive's URL: `url` as is when absolute, else resolved against Kandan's origin.
    pub fn archive_url(&self, kandan: &KandanUrl) -> Result<Url, RuntimeError> {
        kandan
            .http_base()
            .join(&self.url)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https"))
            .ok_or_else(|| RuntimeError::InvalidManifest {
                reason: format!("url {:?} is not an http(s) URL or path", self.url),
            })
    }

    /// `code-server-<version>-<platform>`: the runtime's directory in the cache.
    pub fn install_dir_name(&self) -> String {
        format!("{CODE_SERVER}-{}-{}", self.version, self.platform)
    }

    fn sha256_lowercase(&self) -> String {
        self.sha256.to_ascii_lowercase()
    }
}

/// Letters, digits, `.`, `-`, `_` and `+`, not starting with a dot: safe in a directory name.
fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b".-_+".contains(&byte))
}

/// A non-empty relative path made only of plain names (no `..`, `.`, root or drive).
fn is_inside_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.contains('\\')
        && Path::new(path)
            .components()
            .all(|component| matches!(component, Component::Normal(_)))
}

/// Whether the archive download carries the runner's token: only to Kandan's own origin
/// (same scheme, host and port), never to a CDN. Redirects to another origin drop the header
/// too (reqwest strips `Authorization` on cross-origin redirects).
pub fn archive_gets_token(kandan: &KandanUrl, archive: &Url) -> bool {
    archive.origin() == kandan.http_base().origin()
}

/// What an install is doing, for progress reports.
#[derive(Clone, Debug, PartialEq)]
pub enum Progress {
    /// Bytes received of the archive's `total`; reported at most every 100 ms and 64 KiB.
    Downloading {
        received: u64,
        total: u64,
    },
    /// Attempt `attempt` (2 or 3) is about to start because of `reason`.
    Retrying {
        attempt: u32,
        reason: String,
    },
    /// The whole archive is in; its checksum is being compared.
    Verifying,
    Unpacking,
    /// Installed (or found installed); always the last report of a successful install.
    Ready,
}

impl Progress {
    /// 0..1 while downloading.
    pub fn fraction(&self) -> Option<f64> {
        match self {
            Progress::Downloading { received, total } if *total > 0 => {
                Some((*received as f64 / *total as f64).clamp(0.0, 1.0))
            }
            _ => None,
        }
    }
}

/// An unpacked, verified runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledRuntime {
    pub version: String,
    pub platform: String,
    /// The runtime's directory.
    pub root: PathBuf,
    /// The launcher to run: `root` joined with the manifest's entrypoint.
    pub code_server_bin: PathBuf,
}

/// What the marker file records.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct Marker {
    version: String,
    platform: String,
    sha256: String,
    entrypoint: String,
}

impl Marker {
    fn of(manifest: &RuntimeManifest) -> Marker {
        Marker {
            version: manifest.version.clone(),
            platform: manifest.platform.clone(),
            sha256: manifest.sha256_lowercase(),
            entrypoint: manifest.entrypoint.clone(),
        }
    }
}

/// The editor-runtime status reported to Kandan (capabilities `editorRuntime` and
/// `toolStatus.editorRuntime`). The default is `missing` with nothing else.
#[derive(Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeStatus {
    pub state: RuntimeState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// 0..1 while downloading.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
}

#[derive(Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum RuntimeState {
    /// Installed and usable.
    Ready,
    /// Being downloaded or unpacked.
    Downloading,
    /// Not installed (yet).
    #[default]
    Missing,
    /// The install failed; `detail` says why.
    Failed,
    /// code-server has no build for this platform.
    Unsupported,
    /// The user's own code-server (`--code-server-bin`).
    Custom,
}

impl RuntimeStatus {
    fn new(state: RuntimeState) -> RuntimeStatus {
        RuntimeStatus {
            state,
            version: None,
            path: None,
            detail: None,
            progress: None,
        }
    }

    pub fn ready(runtime: &InstalledRuntime) -> RuntimeStatus {
        RuntimeStatus {
            version: Some(runtime.version.clone()),
            path: Some(runtime.code_server_bin.clone()),
            ..RuntimeStatus::new(RuntimeState::Ready)
        }
    }

    /// The user's own code-server at `code_server_bin`.
    pub fn custom(code_server_bin: PathBuf) -> RuntimeStatus {
        RuntimeStatus {
            path: Some(code_server_bin),
            ..RuntimeStatus::new(RuntimeState::Custom)
        }
    }

    /// `version` on its way; `progress` is what [`Progress::fraction`] gives (None after
    /// the download, while verifying and unpacking).
    pub fn downloading(version: &str, progress: Option<f64>) -> RuntimeStatus {
        RuntimeStatus {
            version: Some(version.to_owned()),
            progress,
            ..RuntimeStatus::new(RuntimeState::Downloading)
        }
    }

    pub fn missing(detail: impl Into<String>) -> RuntimeStatus {
        RuntimeStatus {
            detail: Some(detail.into()),
            ..RuntimeStatus::new(RuntimeState::Missing)
        }
    }

    pub fn failed(detail: impl Into<String>) -> RuntimeStatus {
        RuntimeStatus {
            detail: Some(detail.into()),
            ..RuntimeStatus::new(RuntimeState::Failed)
        }
    }

    /// This platform has no code-server build.
    pub fn unsupported() -> RuntimeStatus {
        RuntimeStatus {
            detail: Some(RuntimeError::unsupported_platform().to_string()),
            ..RuntimeStatus::new(RuntimeState::Unsupported)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "code-server publishes no build for this platform ({os} {arch}): pass --code-server-bin \
         with a code-server you installed"
    )]
    UnsupportedPlatform { os: String, arch: String },
    #[error("could not reach Kandan at {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error(
        "Kandan refused the runner's token when asked for the editor runtime (HTTP {status}): \
         sign in again, or {USE_YOUR_OWN}"
    )]
    Unauthorized { status: u16 },
    #[error("Kandan has no code-server editor runtime for {platform}: {USE_YOUR_OWN}")]
    NoRuntimeForPlatform { platform: String },
    #[error("could not get the editor runtime manifest from Kandan ({detail})")]
    Manifest { detail: String },
    #[error("Kandan's editor runtime manifest is not usable: {reason}")]
    InvalidManifest { reason: String },
    #[error("could not set up the HTTP client for the editor runtime download: {0}")]
    Client(String),
    #[error("the editor runtime download from {url} was refused ({detail})")]
    DownloadRefused { url: String, detail: String },
    #[error(
        "the editor runtime download from {url} failed its checksum {attempts} times \
         (expected {expected}, got {actual})"
    )]
    ChecksumMismatch {
        url: String,
        attempts: u32,
        expected: String,
        actual: String,
    },
    #[error(
        "the editor runtime download from {url} had the wrong size {attempts} times \
         (expected {expected} bytes, got {received})"
    )]
    SizeMismatch {
        url: String,
        attempts: u32,
        expected: u64,
        received: u64,
    },
    #[error("the editor runtime download from {url} failed {attempts} times; the last: {reason}")]
    DownloadFailed {
        url: String,
        attempts: u32,
        reason: String,
    },
    #[error("the editor runtime archive from {url} is not a usable code-server archive: {reason}")]
    BadArchive { url: String, reason: String },
    #[error("could not {action} {}: {source}{}", .path.display(), io_hint(.source))]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("the editor runtime install stopped unexpectedly: {0}")]
    Interrupted(String),
}

impl RuntimeError {
    /// The error for a platform [`current_platform`] does not know.
    pub fn unsupported_platform() -> RuntimeError {
        RuntimeError::UnsupportedPlatform {
            os: std::env::consts::OS.to_owned(),
            arch: std::env::consts::ARCH.to_owned(),
        }
    }

    fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> RuntimeError {
        let path = path.to_owned();
        move |source| RuntimeError::Io {
            action,
            path,
            source,
        }
    }
}

/// What a person can do about an I/O error.
fn io_hint(error: &io::Error) -> &'static str {
    match error.kind() {
        io::ErrorKind::StorageFull => {
            "; the disk is full: free some space on it and start again, or pass \
             --code-server-bin with a code-server you installed"
        }
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
            "; check that this user may write there"
        }
        _ => "",
    }
}

/// `GET <kandan>/api/v2/local-codex-runner/editor-runtime?platform=<platform>` with the
/// runner's bearer token: the approved runtime for `platform`, validated.
pub async fn fetch_manifest(
    http: &reqwest::Client,
    kandan: &KandanUrl,
    token: &str,
    platform: &str,
) -> Result<RuntimeManifest, RuntimeError> {
    let mut endpoint = kandan.http_endpoint(EDITOR_RUNTIME_PATH);
    endpoint.query_pairs_mut().append_pair("platform", platform);
    let unreachable = |error: reqwest::Error| RuntimeError::Unreachable {
        endpoint: redact(&endpoint),
        reason: describe_error(&error),
    };
    let response = http
        .get(endpoint.clone())
        .bearer_auth(token)
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status();
    let detail = describe_status(&response);
    match status {
        StatusCode::OK => {}
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            return Err(RuntimeError::Unauthorized {
                status: status.as_u16(),
            });
        }
        StatusCode::NOT_FOUND => {
            let body: Option<serde_json::Value> = match response.bytes().await {
                Ok(bytes) => serde_json::from_slice(&bytes).ok(),
                Err(_) => None,
            };
            let error = body.as_ref().and_then(|body| body.get("error"));
            return Err(match error.and_then(serde_json::Value::as_str) {
                Some("no_editor_runtime_for_platform") => RuntimeError::NoRuntimeForPlatform {
                    platform: platform.to_owned(),
                },
                _ => RuntimeError::Manifest {
                    detail: format!("{detail}: this Kandan does not offer editor runtimes"),
                },
            });
        }
        _ => return Err(RuntimeError::Manifest { detail }),
    }
    let bytes = response.bytes().await.map_err(unreachable)?;
    let manifest: RuntimeManifest =
        serde_json::from_slice(&bytes).map_err(|error| RuntimeError::InvalidManifest {
            reason: format!("the answer is not the expected JSON ({error})"),
        })?;
    manifest.validate(platform)?;
    Ok(manifest)
}

/// Where unpacked runtimes and downloads live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeCache {
    root: PathBuf,
}

impl RuntimeCache {
    /// `<platform cache dir>/linzumi/editor-runtime` (`~/.cache` on Linux,
    /// `~/Library/Caches` on macOS), or under the temp dir when there is no cache dir.
    pub fn default_location() -> RuntimeCache {
        let base = dirs::cache_dir().unwrap_or_else(std::env::temp_dir);
        RuntimeCache::at(base.join("linzumi").join("editor-runtime"))
    }

    pub fn at(root: impl Into<PathBuf>) -> RuntimeCache {
        RuntimeCache { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/code-server-<version>-<platform>`.
    pub fn runtime_dir(&self, manifest: &RuntimeManifest) -> PathBuf {
        self.root.join(manifest.install_dir_name())
    }

    /// The runtime `manifest` names, if it is installed: its marker matches the manifest's
    /// version, platform and checksum, and its entrypoint exists.
    pub fn installed(&self, manifest: &RuntimeManifest) -> Option<InstalledRuntime> {
        manifest.validate(&manifest.platform).ok()?;
        installed_at(&self.runtime_dir(manifest), manifest)
    }

    /// Makes the runtime `manifest` names available: the cached one if [`Self::installed`],
    /// else downloaded (the token is sent only to Kandan's own origin), verified (size and
    /// SHA-256; a bad download is deleted and retried, [`DOWNLOAD_ATTEMPTS`] in all) and
    /// unpacked. `progress` hears about each step and, on success, ends with
    /// [`Progress::Ready`].
    pub async fn install(
        &self,
        kandan: &KandanUrl,
        token: &str,
        manifest: &RuntimeManifest,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<InstalledRuntime, RuntimeError> {
        manifest.validate(&manifest.platform)?;
        if let Some(installed) = self.installed(manifest) {
            progress(Progress::Ready);
            return Ok(installed);
        }
        let url = manifest.archive_url(kandan)?;
        let token = archive_gets_token(kandan, &url).then_some(token);
        let downloads = self.root.join(DOWNLOADS_DIR);
        tokio::fs::create_dir_all(&downloads)
            .await
            .map_err(RuntimeError::io("create the directory", &downloads))?;
        remove_stale(&self.root, &downloads);

        let partial = downloads.join(format!(
            "{}.{}.partial",
            manifest.sha256_lowercase(),
            uuid::Uuid::new_v4().simple()
        ));
        download(&url, token, manifest, &partial, progress).await?;

        progress(Progress::Unpacking);
        let job = {
            let (partial, root, manifest) = (partial.clone(), self.root.clone(), manifest.clone());
            let shown = shown_url(&url);
            tokio::task::spawn_blocking(move || install_archive(&partial, &root, &manifest, &shown))
        };
        let installed = job.await;
        let _ = tokio::fs::remove_file(&partial).await;
        let installed =
            installed.map_err(|error| RuntimeError::Interrupted(error.to_string()))??;
        progress(Progress::Ready);
        Ok(installed)
    }
}

/// The install in `dir`, if its marker matches `manifest` and its entrypoint exists.
fn installed_at(dir: &Path, manifest: &RuntimeManifest) -> Option<InstalledRuntime> {
    let marker = fs::read(dir.join(MARKER_FILE)).ok()?;
    let marker: Marker = serde_json::from_slice(&marker).ok()?;
    let matches = marker.version == manifest.version
        && marker.platform == manifest.platform
        && marker.sha256.eq_ignore_ascii_case(&manifest.sha256);
    let code_server_bin = dir.join(&manifest.entrypoint);
    (matches && code_server_bin.is_file()).then(|| InstalledRuntime {
        version: manifest.version.clone(),
        platform: manifest.platform.clone(),
        root: dir.to_owned(),
        code_server_bin,
    })
}

/// Removes partial downloads and staging directories left by runners that died.
fn remove_stale(root: &Path, downloads: &Path) {
    let stale = |path: &Path| {
        fs::symlink_metadata(path)
            .and_then(|metadata| metadata.modified())
            .ok()
            .and_then(|modified| SystemTime::now().duration_since(modified).ok())
            .is_some_and(|age| age > STALE_AFTER)
    };
    let names = |dir: &Path| -> Vec<(OsString, PathBuf)> {
        fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|entry| (entry.file_name(), entry.path()))
                    .collect()
            })
            .unwrap_or_default()
    };
    for (name, path) in names(downloads) {
        if name.to_string_lossy().ends_with(".partial") && stale(&path) {
            let _ = fs::remove_file(&path);
        }
    }
    for (name, path) in names(root) {
        if name.to_string_lossy().starts_with(STAGING_PREFIX) && stale(&path) {
            let _ = fs::remove_dir_all(&path);
        }
    }
}

/// `url` as shown in messages: no query (CDN URLs often carry signatures there), no
/// fragment, no credentials.
fn shown_url(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// Why one download attempt failed, when another attempt may succeed.
#[derive(Debug, Clone, PartialEq)]
enum Problem {
    Checksum { expected: String, actual: String },
    Size { expected: u64, received: u64 },
    Transfer(String),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Checksum { expected, actual } => {
                write!(f, "checksum mismatch (expected {expected}, got {actual})")
            }
            Problem::Size { expected, received } => {
                write!(f, "wrong size (expected {expected} bytes, got {received})")
            }
            Problem::Transfer(reason) => f.write_str(reason),
        }
    }
}

enum Failure {
    Retry(Problem),
    Fatal(RuntimeError),
}

/// The error after every attempt failed: the specific one when all failed alike.
fn give_up(url: &str, problems: &[Problem]) -> RuntimeError {
    let url = url.to_owned();
    let attempts = u32::try_from(problems.len()).unwrap_or(u32::MAX);
    let alike = |a: &Problem, b: &Problem| std::mem::discriminant(a) == std::mem::discriminant(b);
    let all_alike = problems.windows(2).all(|pair| alike(&pair[0], &pair[1]));
    match problems.last() {
        Some(Problem::Checksum { expected, actual }) if all_alike => {
            RuntimeError::ChecksumMismatch {
                url,
                attempts,
                expected: expected.clone(),
                actual: actual.clone(),
            }
        }
        Some(Problem::Size { expected, received }) if all_alike => RuntimeError::SizeMismatch {
            url,
            attempts,
            expected: *expected,
            received: *received,
        },
        last => RuntimeError::DownloadFailed {
            url,
            attempts,
            reason: last.map_or_else(|| "no attempt was made".to_owned(), ToString::to_string),
        },
    }
}

/// Downloads the archive into `partial`, verified; retries what may pass next time.
async fn download(
    url: &Url,
    token: Option<&str>,
    manifest: &RuntimeManifest,
    partial: &Path,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<(), RuntimeError> {
    let client = download_client(url)?;
    let shown = shown_url(url);
    let mut problems = Vec::new();
    for attempt in 1..=DOWNLOAD_ATTEMPTS {
        if let Some(problem) = problems.last() {
            progress(Progress::Retrying {
                attempt,
                reason: format!("{problem}"),
            });
            tokio::time::sleep(RETRY_BACKOFF * (attempt - 1)).await;
        }
        let result = download_once(&client, url, &shown, token, manifest, partial, progress).await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(partial).await;
        }
        match result {
            Ok(()) => return Ok(()),
            Err(Failure::Fatal(error)) => return Err(error),
            Err(Failure::Retry(problem)) => {
                tracing::warn!(url = %shown, attempt, %problem, "editor runtime download failed");
                problems.push(problem);
            }
        }
    }
    Err(give_up(&shown, &problems))
}

/// A client for the archive: our TLS trust, a few redirects (never https to http), a connect
/// timeout and a read timeout, but no total timeout: a 100+ MB download may take minutes.
fn download_client(url: &Url) -> Result<reqwest::Client, RuntimeError> {
    let client_error = |error: String| RuntimeError::Client(error);
    let trust = match tls::client_config_from_env() {
        Ok(trust) => trust,
        Err(error) if url.scheme() == "http" => {
            tracing::debug!(%error, "no TLS trust available; the download is plain http");
            untrusting_tls_config().map_err(|error| client_error(error.to_string()))?
        }
        Err(error) => return Err(client_error(error.to_string())),
    };
    let redirects = reqwest::redirect::Policy::custom(|attempt| {
        let downgrade = attempt
            .previous()
            .last()
            .is_some_and(|previous| previous.scheme() == "https")
            && attempt.url().scheme() != "https";
        if downgrade {
            attempt.error("refusing a redirect from https to plain http")
        } else if attempt.previous().len() > MAX_DOWNLOAD_REDIRECTS {
            attempt.error(format!("more than {MAX_DOWNLOAD_REDIRECTS} redirects"))
        } else {
            attempt.follow()
        }
    });
    reqwest::Client::builder()
        .tls_backend_preconfigured((*trust).clone())
        .user_agent(USER_AGENT)
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(DOWNLOAD_READ_TIMEOUT)
        .redirect(redirects)
        .build()
        .map_err(|error| client_error(error.without_url().to_string()))
}

async fn download_once(
    client: &reqwest::Client,
    url: &Url,
    shown: &str,
    token: Option<&str>,
    manifest: &RuntimeManifest,
    partial: &Path,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<(), Failure> {
    let transfer =
        |error: reqwest::Error| Failure::Retry(Problem::Transfer(describe_error(&error)));
    let mut request = client.get(url.clone());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let mut response = request.send().await.map_err(transfer)?;
    let status = response.status();
    if !status.is_success() {
        let detail = describe_status(&response);
        let retry = status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS;
        return Err(if retry {
            Failure::Retry(Problem::Transfer(detail))
        } else {
            Failure::Fatal(RuntimeError::DownloadRefused {
                url: shown.to_owned(),
                detail,
            })
        });
    }

    let write_error =
        |error| Failure::Fatal(RuntimeError::io("write the download to", partial)(error));
    let file = tokio::fs::File::create(partial)
        .await
        .map_err(write_error)?;
    let mut file = tokio::io::BufWriter::with_capacity(256 * 1024, file);
    let total = manifest.size;
    let mut hasher = Sha256::new();
    let mut received: u64 = 0;
    let (mut reported, mut reported_at) = (0_u64, Instant::now());
    progress(Progress::Downloading { received, total });
    while let Some(chunk) = response.chunk().await.map_err(transfer)? {
        received += chunk.len() as u64;
        if received > total {
            return Err(Failure::Retry(Problem::Size {
                expected: total,
                received,
            }));
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(write_error)?;
        let due = received - reported >= PROGRESS_MIN_BYTES
            && reported_at.elapsed() >= PROGRESS_MIN_INTERVAL;
        if due || received == total {
            progress(Progress::Downloading { received, total });
            (reported, reported_at) = (received, Instant::now());
        }
    }
    file.flush().await.map_err(write_error)?;
    file.get_ref().sync_all().await.map_err(write_error)?;
    if received != total {
        return Err(Failure::Retry(Problem::Size {
            expected: total,
            received,
        }));
    }
    progress(Progress::Verifying);
    let actual = format!("{:x}", hasher.finalize());
    let expected = manifest.sha256_lowercase();
    if actual != expected {
        return Err(Failure::Retry(Problem::Checksum { expected, actual }));
    }
    Ok(())
}

/// A transport error without its URL (which may carry a signed query), with its causes.
fn describe_error(error: &reqwest::Error) -> String {
    let mut reason = if error.is_timeout() {
        format!(
            "timed out (nothing received for {} s)",
            DOWNLOAD_READ_TIMEOUT.as_secs()
        )
    } else if error.is_redirect() {
        "too many or unsafe redirects".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = error.source();
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    reason
}

/// Unpacks the verified archive into a staging directory, checks the entrypoint, writes the
/// marker and renames the staging directory into place. Blocking. On failure nothing is left.
fn install_archive(
    archive: &Path,
    root: &Path,
    manifest: &RuntimeManifest,
    shown_url: &str,
) -> Result<InstalledRuntime, RuntimeError> {
    let staging = root.join(format!("{STAGING_PREFIX}{}", uuid::Uuid::new_v4().simple()));
    fs::create_dir(&staging).map_err(RuntimeError::io("create the directory", &staging))?;
    let prepared = fs::File::open(archive)
        .map_err(RuntimeError::io("read the download", archive))
        .and_then(|file| {
            unpack(file, &staging).map_err(|error| error.into_runtime_error(shown_url))
        })
        .and_then(|()| prepare_entrypoint(&staging, &manifest.entrypoint, shown_url))
        .and_then(|()| write_marker(&staging, manifest));
    if let Err(error) = prepared {
        let _ = fs::remove_dir_all(&staging);
        return Err(error);
    }
    let placed = place(&staging, &root.join(manifest.install_dir_name()), manifest);
    if placed.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    placed
}

/// The entrypoint must be a file; on unix it is made executable if the archive forgot.
fn prepare_entrypoint(dir: &Path, entrypoint: &str, shown_url: &str) -> Result<(), RuntimeError> {
    let path = dir.join(entrypoint);
    let bad = |reason: String| RuntimeError::BadArchive {
        url: shown_url.to_owned(),
        reason,
    };
    let metadata = match fs::metadata(&path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(bad(format!("it has no {entrypoint}")));
        }
        Err(error) => return Err(RuntimeError::io("inspect", &path)(error)),
    };
    if !metadata.is_file() {
        return Err(bad(format!("{entrypoint} is not a file")));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = metadata.permissions().mode();
        if mode & 0o111 != 0o111 {
            let executable = fs::Permissions::from_mode((mode | 0o555) & 0o7755);
            fs::set_permissions(&path, executable)
                .map_err(RuntimeError::io("make executable", &path))?;
        }
    }
    Ok(())
}

fn write_marker(dir: &Path, manifest: &RuntimeManifest) -> Result<(), RuntimeError> {
    let path = dir.join(MARKER_FILE);
    let json = serde_json::to_vec_pretty(&Marker::of(manifest))
        .map_err(|error| RuntimeError::Interrupted(error.to_string()))?;
    let write = || -> io::Result<()> {
        let mut file = fs::File::create(&path)?;
        file.write_all(&json)?;
        file.sync_all()
    };
    write().map_err(RuntimeError::io("write", &path))
}

/// Renames `staging` to `target`. A valid install already there (another runner was
/// quicker) is kept and `staging` removed; a stale or half-made one is replaced.
fn place(
    staging: &Path,
    target: &Path,
    manifest: &RuntimeManifest,
) -> Result<InstalledRuntime, RuntimeError> {
    let theirs = |staging: &Path| {
        installed_at(target, manifest).inspect(|_| {
            let _ = fs::remove_dir_all(staging);
        })
    };
    if let Some(installed) = theirs(staging) {
        return Ok(installed);
    }
    if fs::symlink_metadata(target).is_ok() {
        remove_path(target).map_err(RuntimeError::io("remove the stale runtime", target))?;
    }
    match fs::rename(staging, target) {
        Ok(()) => {}
        Err(error) => {
            if let Some(installed) = theirs(staging) {
                return Ok(installed);
            }
            return Err(RuntimeError::io("move the unpacked runtime to", target)(
                error,
            ));
        }
    }
    installed_at(target, manifest).ok_or_else(|| {
        RuntimeError::Interrupted(format!(
            "{} vanished right after it was installed",
            target.display()
        ))
    })
}

fn remove_path(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(metadata) if metadata.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

/// Why an archive could not be unpacked.
#[derive(Debug)]
enum UnpackError {
    /// The archive itself is unusable or unsafe.
    Refused(String),
    /// Writing the unpacked files failed.
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl UnpackError {
    fn into_runtime_error(self, shown_url: &str) -> RuntimeError {
        match self {
            UnpackError::Refused(reason) => RuntimeError::BadArchive {
                url: shown_url.to_owned(),
                reason,
            },
            UnpackError::Io {
                action,
                path,
                source,
            } => RuntimeError::Io {
                action,
                path,
                source,
            },
        }
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> UnpackError {
    let path = path.to_owned();
    move |source| UnpackError::Io {
        action,
        path,
        source,
    }
}

fn read_error(error: io::Error) -> UnpackError {
    UnpackError::Refused(format!("it could not be read as a gzip'd tar ({error})"))
}

/// Unpacks a gzip'd tar whose entries all sit under one top-level directory into `dest`
/// (which exists), stripping that directory. Refuses absolute paths, `..`, links that point
/// outside `dest`, writes through links, and entries other than files, directories and links.
fn unpack(archive: impl Read, dest: &Path) -> Result<(), UnpackError> {
    let dest_real = fs::canonicalize(dest).map_err(io_error("open", dest))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(BufReader::new(archive)));
    let mut top: Option<OsString> = None;
    let mut symlinks = Vec::new();
    for entry in tar.entries().map_err(read_error)? {
        let mut entry = entry.map_err(read_error)?;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader
                | tar::EntryType::XHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink
        ) {
            continue;
        }
        let name = entry.path().map_err(read_error)?.into_owned();
        let relative = strip_top(&name, &mut top)?;
        if relative.as_os_str().is_empty() {
            if kind.is_dir() {
                continue;
            }
            return Err(UnpackError::Refused(format!(
                "{} is not inside the archive's top-level directory",
                name.display()
            )));
        }
        let target = dest.join(&relative);
        match kind {
            tar::EntryType::Directory => {
                make_dirs(dest, &dest_real, &relative)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                prepare_target(dest, &dest_real, &relative)?;
                write_file(&mut entry, &target)?;
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(read_error)?
                    .ok_or_else(|| {
                        UnpackError::Refused(format!("link {} has no target", name.display()))
                    })?
                    .into_owned();
                if !link_stays_inside(&relative, &link) {
                    return Err(UnpackError::Refused(format!(
                        "link {} points outside the runtime ({})",
                        name.display(),
                        link.display()
                    )));
                }
                prepare_target(dest, &dest_real, &relative)?;
                make_symlink(&link, &target)?;
                symlinks.push(target);
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(read_error)?
                    .ok_or_else(|| {
                        UnpackError::Refused(format!("link {} has no target", name.display()))
                    })?
                    .into_owned();
                let source_relative = strip_top(&link, &mut top)?;
                let source = dest.join(&source_relative);
                let inside = fs::canonicalize(&source)
                    .is_ok_and(|real| real.starts_with(&dest_real) && real.is_file());
                if source_relative.as_os_str().is_empty() || !inside {
                    return Err(UnpackError::Refused(format!(
                        "hard link {} does not point at a file unpacked before it ({})",
                        name.display(),
                        link.display()
                    )));
                }
                prepare_target(dest, &dest_real, &relative)?;
                fs::hard_link(&source, &target).map_err(io_error("create", &target))?;
            }
            other => {
                return Err(UnpackError::Refused(format!(
                    "{} is a {other:?} entry; only files, directories and links are allowed",
                    name.display()
                )));
            }
        }
    }
    if top.is_none() {
        return Err(UnpackError::Refused("it is empty".to_owned()));
    }
    // A chain of links that each look fine can still lead outside (`a -> .`, `b -> a/..`).
    for link in symlinks {
        if let Ok(real) = fs::canonicalize(&link)
            && !real.starts_with(&dest_real)
        {
            return Err(UnpackError::Refused(format!(
                "link {} leads outside the runtime",
                link.strip_prefix(dest).unwrap_or(&link).display()
            )));
        }
    }
    Ok(())
}

/// `name` without its first component, which must be the same for every entry; refuses
/// absolute paths and `..` anywhere.
fn strip_top(name: &Path, top: &mut Option<OsString>) -> Result<PathBuf, UnpackError> {
    let refused = || {
        UnpackError::Refused(format!(
            "entry {} escapes the runtime directory",
            name.display()
        ))
    };
    let mut parts = Vec::new();
    for component in name.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(refused());
            }
        }
    }
    let Some((first, rest)) = parts.split_first() else {
        return Err(UnpackError::Refused(
            "an entry has an empty name".to_owned(),
        ));
    };
    match top {
        Some(top) if top.as_os_str() != *first => {
            return Err(UnpackError::Refused(format!(
                "it has more than one top-level directory ({} and {})",
                Path::new(top).display(),
                Path::new(first).display()
            )));
        }
        Some(_) => {}
        None => *top = Some(first.to_os_string()),
    }
    Ok(rest.iter().collect())
}

/// Whether a symlink at `at` (relative to the runtime root) to `target` stays inside the
/// root, judged on the names alone.
fn link_stays_inside(at: &Path, target: &Path) -> bool {
    let mut depth: usize = at.components().count().saturating_sub(1);
    for component in target.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => match depth.checked_sub(1) {
                Some(up) => depth = up,
                None => return false,
            },
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// Creates `relative`'s directories under `dest` one by one, refusing to go through a link
/// that leads outside `dest_real` or through a file.
fn make_dirs(dest: &Path, dest_real: &Path, relative: &Path) -> Result<(), UnpackError> {
    let mut current = dest.to_path_buf();
    for component in relative.components() {
        current.push(component);
        match fs::symlink_metadata(&current) {
            Ok(metadata) if metadata.file_type().is_symlink() => {
                let inside = fs::canonicalize(&current)
                    .is_ok_and(|real| real.starts_with(dest_real) && real.is_dir());
                if !inside {
                    return Err(UnpackError::Refused(format!(
                        "{} would be written through a link that does not lead to a directory \
                         inside the runtime",
                        relative.display()
                    )));
                }
            }
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => {
                return Err(UnpackError::Refused(format!(
                    "{} needs a directory where the archive put a file",
                    relative.display()
                )));
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&current).map_err(io_error("create the directory", &current))?;
            }
            Err(error) => return Err(io_error("inspect", &current)(error)),
        }
    }
    Ok(())
}

/// Makes `relative`'s parent directories and clears what an earlier entry put at its place
/// (a later entry replaces an earlier one, as with tar; writing through a link never happens).
fn prepare_target(dest: &Path, dest_real: &Path, relative: &Path) -> Result<(), UnpackError> {
    if let Some(parent) = relative.parent() {
        make_dirs(dest, dest_real, parent)?;
    }
    let target = dest.join(relative);
    match fs::symlink_metadata(&target) {
        Ok(metadata) if metadata.is_dir() => Err(UnpackError::Refused(format!(
            "{} is both a directory and a file",
            relative.display()
        ))),
        Ok(_) => fs::remove_file(&target).map_err(io_error("replace", &target)),
        Err(_) => Ok(()),
    }
}

fn write_file(entry: &mut impl Read, target: &Path) -> Result<(), UnpackError> {
    let mut file = fs::File::create(target).map_err(io_error("create", target))?;
    let mut buffer = vec![0_u8; 64 * 1024];
    loop {
        let read = match entry.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(read_error(error)),
        };
        file.write_all(&buffer[..read])
            .map_err(io_error("write", target))?;
    }
    file.sync_all().map_err(io_error("write", target))?;
    Ok(())
}

#[cfg(unix)]
fn make_symlink(link: &Path, at: &Path) -> Result<(), UnpackError> {
    std::os::unix::fs::symlink(link, at).map_err(io_error("create the link", at))
}

#[cfg(not(unix))]
fn make_symlink(_link: &Path, at: &Path) -> Result<(), UnpackError> {
    Err(UnpackError::Refused(format!(
        "{} is a symbolic link, which this platform's runtime does not use",
        at.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> RuntimeManifest {
        RuntimeManifest {
            runtime: "code-server".into(),
            version: "4.100.3".into(),
            platform: "linux-x64".into(),
            url: "/downloads/editor-runtime/code-server-4.100.3-linux-x64.tar.gz".into(),
            sha256: "ab".repeat(32),
            size: 1234,
            entrypoint: "bin/code-server".into(),
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "linzumi-runtime-unit-{name}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// An entry: name, kind, link target, contents.
    type Entry<'a> = (&'a str, tar::EntryType, &'a str, &'a [u8]);

    /// A gzip'd tar whose entry names and link targets are written verbatim.
    fn tar_gz(entries: &[Entry]) -> Vec<u8> {
        let gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut builder = tar::Builder::new(gzip);
        for (name, kind, link, data) in entries {
            let mut header = tar::Header::new_old();
            let old = header.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
            header.set_entry_type(*kind);
            header.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
            header.set_size(data.len() as u64);
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    const DIR: tar::EntryType = tar::EntryType::Directory;
    const FILE: tar::EntryType = tar::EntryType::Regular;
    const LINK: tar::EntryType = tar::EntryType::Symlink;

    fn unpack_refused(entries: &[Entry]) -> (String, PathBuf) {
        let outer = temp_dir("refused");
        let dest = outer.join("dest");
        fs::create_dir(&dest).unwrap();
        let error = unpack(&tar_gz(entries)[..], &dest).unwrap_err();
        let UnpackError::Refused(reason) = error else {
            panic!("expected a refusal, got {error:?}");
        };
        (reason, outer)
    }

    #[test]
    fn platforms_map_from_rust_names() {
        assert_eq!(platform_for("linux", "x86_64"), Some("linux-x64"));
        assert_eq!(platform_for("linux", "aarch64"), Some("linux-arm64"));
        assert_eq!(platform_for("macos", "x86_64"), Some("darwin-x64"));
        assert_eq!(platform_for("macos", "aarch64"), Some("darwin-arm64"));
        assert_eq!(platform_for("windows", "x86_64"), None);
        assert_eq!(platform_for("linux", "riscv64"), None);
        for platform in PLATFORMS {
            assert!(is_safe_name(platform));
        }
    }

    #[test]
    fn a_good_manifest_validates() {
        manifest().validate("linux-x64").unwrap();
        let absolute = RuntimeManifest {
            url: "https://cdn.example.com/cs.tar.gz?sig=1".into(),
            sha256: "AB".repeat(32),
            ..manifest()
        };
        absolute.validate("linux-x64").unwrap();
    }

    #[test]
    fn bad_manifests_are_refused() {
        let cases: Vec<(RuntimeManifest, &str)> = vec![
            (
                RuntimeManifest {
                    runtime: "vscode".into(),
                    ..manifest()
                },
                "runtime is \"vscode\"",
            ),
            (
                RuntimeManifest {
                    platform: "darwin-arm64".into(),
                    ..manifest()
                },
                "but \"linux-x64\" was asked for",
            ),
            (
                RuntimeManifest {
                    sha256: "ab".repeat(31),
                    ..manifest()
                },
                "is not 64 hexadecimal digits",
            ),
            (
                RuntimeManifest {
                    sha256: "zz".repeat(32),
                    ..manifest()
                },
                "is not 64 hexadecimal digits",
            ),
            (
                RuntimeManifest {
                    entrypoint: "../bin/code-server".into(),
                    ..manifest()
                },
                "entrypoint \"../bin/code-server\"",
            ),
            (
                RuntimeManifest {
                    entrypoint: "/usr/bin/code-server".into(),
                    ..manifest()
                },
                "entrypoint \"/usr/bin/code-server\"",
            ),
            (
                RuntimeManifest {
                    entrypoint: "bin/../../x".into(),
                    ..manifest()
                },
                "entrypoint",
            ),
            (
                RuntimeManifest {
                    entrypoint: "".into(),
                    ..manifest()
                },
                "entrypoint",
            ),
            (
                RuntimeManifest {
                    version: "../4".into(),
                    ..manifest()
                },
                "version \"../4\"",
            ),
            (
                RuntimeManifest {
                    version: "4/100".into(),
                    ..manifest()
                },
                "version",
            ),
            (
                RuntimeManifest {
                    size: 0,
                    ..manifest()
                },
                "size is 0",
            ),
            (
                RuntimeManifest {
                    url: "file:///etc/passwd".into(),
                    ..manifest()
                },
                "url \"file:///etc/passwd\"",
            ),
        ];
        for (bad, expected) in cases {
            let error = bad.validate("linux-x64").unwrap_err();
            let message = error.to_string();
            assert!(
                matches!(error, RuntimeError::InvalidManifest { .. }),
                "{message}"
            );
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        }
    }

    #[test]
    fn archive_url_resolves_against_kandan() {
        let kandan = KandanUrl::parse("wss://serve.kandanai.com/app").unwrap();
        assert_eq!(
            manifest().archive_url(&kandan).unwrap().as_str(),
            "https://serve.kandanai.com/downloads/editor-runtime/code-server-4.100.3-linux-x64.tar.gz"
        );
        let cdn = RuntimeManifest {
            url: "https://cdn.example.com/cs.tar.gz".into(),
            ..manifest()
        };
        assert_eq!(
            cdn.archive_url(&kandan).unwrap().as_str(),
            "https://cdn.example.com/cs.tar.gz"
        );
    }

    #[test]
    fn the_token_goes_only_to_kandans_origin() {
        let kandan = KandanUrl::parse("ws://127.0.0.1:4160").unwrap();
        let url = |text: &str| Url::parse(text).unwrap();
        assert!(archive_gets_token(
            &kandan,
            &url("http://127.0.0.1:4160/downloads/x.tar.gz")
        ));
        for other in [
            "http://127.0.0.1:4161/downloads/x.tar.gz",
            "https://127.0.0.1:4160/downloads/x.tar.gz",
            "http://localhost:4160/downloads/x.tar.gz",
            "https://cdn.example.com/x.tar.gz",
        ] {
            assert!(!archive_gets_token(&kandan, &url(other)), "{other}");
        }
        let secure = KandanUrl::parse("wss://serve.kandanai.com").unwrap();
        assert!(archive_gets_token(
            &secure,
            &url("https://serve.kandanai.com:443/x")
        ));
        assert!(!archive_gets_token(
            &secure,
            &url("http://serve.kandanai.com/x")
        ));
    }

    #[test]
    fn shown_urls_drop_queries_and_credentials() {
        let url = Url::parse("https://user:pw@cdn.example.com/cs.tar.gz?sig=secret#x").unwrap();
        assert_eq!(shown_url(&url), "https://cdn.example.com/cs.tar.gz");
    }

    #[test]
    fn path_escapes_are_refused_when_unpacking() {
        let cases: [(&[Entry], &str); 6] = [
            (
                &[("top/", DIR, "", b""), ("top/../../evil", FILE, "", b"x")],
                "entry top/../../evil escapes",
            ),
            (
                &[("top/", DIR, "", b""), ("../evil", FILE, "", b"x")],
                "entry ../evil escapes",
            ),
            (&[("/tmp/evil", FILE, "", b"x")], "entry /tmp/evil escapes"),
            (
                &[("top/", DIR, "", b""), ("top/up", LINK, "../../..", b"")],
                "points outside the runtime",
            ),
            (
                &[("top/", DIR, "", b""), ("top/etc", LINK, "/etc", b"")],
                "points outside the runtime",
            ),
            (
                // Each link looks inside on its own; through both, `b/evil` would be outside.
                &[
                    ("top/", DIR, "", b""),
                    ("top/a", LINK, ".", b""),
                    ("top/b", LINK, "a/..", b""),
                    ("top/b/evil", FILE, "", b"x"),
                ],
                "written through a link",
            ),
        ];
        for (entries, expected) in cases {
            let (reason, outer) = unpack_refused(entries);
            assert!(reason.contains(expected), "{reason:?} lacks {expected:?}");
            assert!(!outer.join("evil").exists());
            fs::remove_dir_all(outer).unwrap();
        }
    }

    #[test]
    fn a_link_chain_leading_outside_is_refused() {
        let (reason, outer) = unpack_refused(&[
            ("top/", DIR, "", b""),
            ("top/a", LINK, ".", b""),
            ("top/b", LINK, "a/..", b""),
        ]);
        assert_eq!(reason, "link b leads outside the runtime");
        fs::remove_dir_all(outer).unwrap();
    }

    #[test]
    fn archives_need_one_top_level_directory() {
        let (reason, outer) = unpack_refused(&[("a/x", FILE, "", b"1"), ("b/y", FILE, "", b"2")]);
        assert_eq!(reason, "it has more than one top-level directory (a and b)");
        fs::remove_dir_all(outer).unwrap();
        let (reason, outer) = unpack_refused(&[("loose-file", FILE, "", b"1")]);
        assert_eq!(
            reason,
            "loose-file is not inside the archive's top-level directory"
        );
        fs::remove_dir_all(outer).unwrap();
        let (reason, outer) = unpack_refused(&[]);
        assert_eq!(reason, "it is empty");
        fs::remove_dir_all(outer).unwrap();
    }

    #[test]
    fn a_good_archive_unpacks_with_the_top_directory_stripped() {
        let dest = temp_dir("good");
        let archive = tar_gz(&[
            ("./top/", DIR, "", b""),
            ("./top/bin/code-server", FILE, "", b"#!/bin/sh\n"),
            (
                "./top/lib/node_modules/.bin/cs",
                LINK,
                "../../../bin/code-server",
                b"",
            ),
        ]);
        unpack(&archive[..], &dest).unwrap();
        assert_eq!(
            fs::read(dest.join("bin/code-server")).unwrap(),
            b"#!/bin/sh\n"
        );
        assert_eq!(
            fs::read(dest.join("lib/node_modules/.bin/cs")).unwrap(),
            b"#!/bin/sh\n"
        );
        assert!(!dest.join("top").exists());
        fs::remove_dir_all(dest).unwrap();
    }

    #[test]
    fn a_refused_archive_leaves_no_staging_directory() {
        let root = temp_dir("install");
        let archive = root.join("archive.tar.gz");
        fs::write(
            &archive,
            tar_gz(&[("top/", DIR, "", b""), ("top/../evil", FILE, "", b"x")]),
        )
        .unwrap();
        let error = install_archive(&archive, &root, &manifest(), "http://k/a.tar.gz").unwrap_err();
        assert_eq!(
            error.to_string(),
            "the editor runtime archive from http://k/a.tar.gz is not a usable code-server \
             archive: entry top/../evil escapes the runtime directory"
        );
        let left: Vec<_> = fs::read_dir(&root)
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(left, ["archive.tar.gz"]);
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn an_archive_without_the_entrypoint_is_refused() {
        let root = temp_dir("no-entrypoint");
        let archive = root.join("archive.tar.gz");
        fs::write(&archive, tar_gz(&[("top/README", FILE, "", b"hi")])).unwrap();
        let error = install_archive(&archive, &root, &manifest(), "http://k/a").unwrap_err();
        assert!(
            error.to_string().ends_with("it has no bin/code-server"),
            "{error}"
        );
        assert!(!root.join(manifest().install_dir_name()).exists());
        fs::remove_dir_all(root).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn the_entrypoint_is_made_executable() {
        use std::os::unix::fs::PermissionsExt as _;
        let root = temp_dir("exec");
        let archive = root.join("archive.tar.gz");
        // tar_gz writes files with mode 0644.
        fs::write(
            &archive,
            tar_gz(&[("top/bin/code-server", FILE, "", b"#!/bin/sh\n")]),
        )
        .unwrap();
        let installed = install_archive(&archive, &root, &manifest(), "http://k/a").unwrap();
        let mode = fs::metadata(&installed.code_server_bin)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            installed.code_server_bin,
            root.join("code-server-4.100.3-linux-x64/bin/code-server")
        );
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn the_marker_decides_reuse() {
        let root = temp_dir("marker");
        let cache = RuntimeCache::at(&root);
        let manifest = manifest();
        let dir = cache.runtime_dir(&manifest);
        fs::create_dir_all(dir.join("bin")).unwrap();
        fs::write(dir.join("bin/code-server"), "#!/bin/sh\n").unwrap();
        assert_eq!(cache.installed(&manifest), None, "no marker: not installed");

        let write_marker = |marker: &Marker| {
            fs::write(dir.join(MARKER_FILE), serde_json::to_vec(marker).unwrap()).unwrap();
        };
        write_marker(&Marker {
            sha256: "cd".repeat(32),
            ..Marker::of(&manifest)
        });
        assert_eq!(cache.installed(&manifest), None, "another checksum");
        write_marker(&Marker {
            version: "4.99.0".into(),
            ..Marker::of(&manifest)
        });
        assert_eq!(cache.installed(&manifest), None, "another version");
        fs::write(dir.join(MARKER_FILE), "{not json").unwrap();
        assert_eq!(cache.installed(&manifest), None, "a torn marker");

        write_marker(&Marker::of(&manifest));
        let installed = cache.installed(&manifest).unwrap();
        assert_eq!(
            installed,
            InstalledRuntime {
                version: "4.100.3".into(),
                platform: "linux-x64".into(),
                root: dir.clone(),
                code_server_bin: dir.join("bin/code-server"),
            }
        );
        let upper = RuntimeManifest {
            sha256: manifest.sha256.to_uppercase(),
            ..manifest.clone()
        };
        assert!(
            cache.installed(&upper).is_some(),
            "hex case does not matter"
        );

        fs::remove_file(dir.join("bin/code-server")).unwrap();
        assert_eq!(cache.installed(&manifest), None, "entrypoint gone");
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn the_marker_has_the_documented_fields() {
        let json = serde_json::to_value(Marker::of(&manifest())).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "version": "4.100.3",
                "platform": "linux-x64",
                "sha256": "ab".repeat(32),
                "entrypoint": "bin/code-server",
            })
        );
    }

    #[test]
    fn a_stale_install_is_replaced_and_a_fresh_one_kept() {
        let root = temp_dir("place");
        let manifest = manifest();
        let target = root.join(manifest.install_dir_name());
        let stage = |name: &str, content: &str| {
            let staging = root.join(name);
            fs::create_dir_all(staging.join("bin")).unwrap();
            fs::write(staging.join("bin/code-server"), content).unwrap();
            write_marker(&staging, &manifest).unwrap();
            staging
        };
        // A half-made install (no marker) is replaced.
        fs::create_dir_all(&target).unwrap();
        fs::write(target.join("junk"), "x").unwrap();
        let first = stage(".staging-1", "first");
        place(&first, &target, &manifest).unwrap();
        assert!(!first.exists());
        assert!(!target.join("junk").exists());
        // Another runner was quicker: its install is kept and ours removed.
        let second = stage(".staging-2", "second");
        place(&second, &target, &manifest).unwrap();
        assert!(!second.exists());
        assert_eq!(
            fs::read_to_string(target.join("bin/code-server")).unwrap(),
            "first"
        );
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn download_failures_are_summed_up() {
        let checksum = |actual: &str| Problem::Checksum {
            expected: "a".repeat(64),
            actual: actual.repeat(64),
        };
        assert_eq!(
            give_up("http://k/a", &[checksum("b"), checksum("c"), checksum("d")]).to_string(),
            format!(
                "the editor runtime download from http://k/a failed its checksum 3 times \
                 (expected {}, got {})",
                "a".repeat(64),
                "d".repeat(64)
            )
        );
        let short = Problem::Size {
            expected: 10,
            received: 5,
        };
        assert_eq!(
            give_up("http://k/a", &[short.clone(), short.clone()]).to_string(),
            "the editor runtime download from http://k/a had the wrong size 2 times \
             (expected 10 bytes, got 5)"
        );
        assert_eq!(
            give_up(
                "http://k/a",
                &[short, checksum("b"), Problem::Transfer("HTTP 503".into())]
            )
            .to_string(),
            "the editor runtime download from http://k/a failed 3 times; the last: HTTP 503"
        );
    }

    #[test]
    fn a_full_disk_is_explained() {
        let error = RuntimeError::io("write", Path::new("/cache/x.partial"))(io::Error::from(
            io::ErrorKind::StorageFull,
        ));
        let message = error.to_string();
        assert!(
            message.starts_with("could not write /cache/x.partial: "),
            "{message}"
        );
        assert!(
            message.ends_with(
                "; the disk is full: free some space on it and start again, or pass \
                 --code-server-bin with a code-server you installed"
            ),
            "{message}"
        );
    }

    #[test]
    fn status_serializes_camel_case_without_empty_fields() {
        let downloading = RuntimeStatus::downloading("4.100.3", Some(0.5));
        assert_eq!(
            serde_json::to_value(&downloading).unwrap(),
            serde_json::json!({"state": "downloading", "version": "4.100.3", "progress": 0.5})
        );
        let ready = RuntimeStatus::ready(&InstalledRuntime {
            version: "4.100.3".into(),
            platform: "linux-x64".into(),
            root: "/c/code-server-4.100.3-linux-x64".into(),
            code_server_bin: "/c/code-server-4.100.3-linux-x64/bin/code-server".into(),
        });
        assert_eq!(
            serde_json::to_value(&ready).unwrap(),
            serde_json::json!({
                "state": "ready",
                "version": "4.100.3",
                "path": "/c/code-server-4.100.3-linux-x64/bin/code-server",
            })
        );
        let unsupported = serde_json::to_value(RuntimeStatus::unsupported()).unwrap();
        assert_eq!(unsupported["state"], "unsupported");
        assert!(
            unsupported["detail"]
                .as_str()
                .unwrap()
                .contains("pass --code-server-bin")
        );
        assert_eq!(
            serde_json::to_value(RuntimeStatus::custom("/opt/cs".into())).unwrap(),
            serde_json::json!({"state": "custom", "path": "/opt/cs"})
        );
        assert_eq!(
            serde_json::to_value(RuntimeStatus::failed("boom")).unwrap(),
            serde_json::json!({"state": "failed", "detail": "boom"})
        );
        assert_eq!(
            serde_json::to_value(RuntimeStatus::missing("not yet")).unwrap()["state"],
            "missing"
        );
    }

    #[test]
    fn progress_fraction() {
        let at = |received, total| Progress::Downloading { received, total }.fraction();
        assert_eq!(at(50, 200), Some(0.25));
        assert_eq!(at(0, 0), None);
        assert_eq!(Progress::Verifying.fraction(), None);
    }
}
