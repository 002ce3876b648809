//! The code-server editor runtime against the Kandan test server over real loopback
//! sockets: the manifest, the verified download (with retries), the cache and its reuse.
//! Each test has its own cache directory.
// A failed unwrap is a failed test; helpers outside #[test] fns need the allowance too.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kandan_test_server::editor_runtime::{ArchiveBuilder, archive_with_entrypoint, sha256_hex};
use kandan_test_server::{EditorRuntimeFixture, KandanTestServer, ServerConfig};
use linzumi_engine::editor::runtime::{
    self, InstalledRuntime, MARKER_FILE, Progress, RuntimeCache, RuntimeError, RuntimeManifest,
};
use linzumi_engine::http;
use linzumi_engine::kandan_url::KandanUrl;

const VERSION: &str = "4.100.3";
const PLATFORM: &str = "linux-x64";
const SCRIPT: &[u8] = b"#!/bin/sh\necho code-server 4.100.3\n";

async fn server() -> KandanTestServer {
    KandanTestServer::start(ServerConfig::default())
        .await
        .unwrap()
}

fn kandan_of(server: &KandanTestServer) -> KandanUrl {
    KandanUrl::parse(&server.ws_url()).unwrap()
}

fn good_archive() -> Vec<u8> {
    archive_with_entrypoint("code-server-4.100.3-linux-amd64", SCRIPT)
}

/// A cache directory of its own, removed when dropped.
struct TempCache {
    root: PathBuf,
}

impl TempCache {
    fn new(name: &str) -> TempCache {
        let root = std::env::temp_dir().join(format!(
            "linzumi-editor-runtime-{name}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        TempCache { root }
    }

    fn cache(&self) -> RuntimeCache {
        RuntimeCache::at(&self.root)
    }

    /// Every name in the cache root and its downloads folder.
    fn contents(&self) -> Vec<String> {
        let list = |dir: &Path| -> Vec<String> {
            match std::fs::read_dir(dir) {
                Ok(entries) => entries
                    .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                    .collect(),
                Err(_) => Vec::new(),
            }
        };
        let mut names = list(&self.root);
        for name in list(&self.root.join("downloads")) {
            names.push(format!("downloads/{name}"));
        }
        names.sort();
        names
    }
}

impl Drop for TempCache {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Collects progress reports.
#[derive(Clone, Default)]
struct Reports(Arc<Mutex<Vec<Progress>>>);

impl Reports {
    fn sink(&self) -> impl Fn(Progress) + Send + Sync + 'static {
        let reports = Arc::clone(&self.0);
        move |progress| reports.lock().unwrap().push(progress)
    }

    fn all(&self) -> Vec<Progress> {
        self.0.lock().unwrap().clone()
    }

    fn retries(&self) -> Vec<(u32, String)> {
        self.all()
            .into_iter()
            .filter_map(|progress| match progress {
                Progress::Retrying { attempt, reason } => Some((attempt, reason)),
                _ => None,
            })
            .collect()
    }
}

async fn manifest_from(server: &KandanTestServer, token: &str) -> RuntimeManifest {
    let kandan = kandan_of(server);
    let http = http::client_for(&kandan).unwrap();
    runtime::fetch_manifest(&http, &kandan, token, PLATFORM)
        .await
        .unwrap()
}

async fn install(
    server: &KandanTestServer,
    cache: &TempCache,
    token: &str,
    reports: &Reports,
) -> Result<InstalledRuntime, RuntimeError> {
    let manifest = manifest_from(server, token).await;
    let sink = reports.sink();
    cache
        .cache()
        .install(&kandan_of(server), token, &manifest, &sink)
        .await
}

#[tokio::test]
async fn the_manifest_describes_the_offered_runtime() {
    let server = server().await;
    let archive = good_archive();
    server.set_editor_runtime(EditorRuntimeFixture::new(
        VERSION,
        PLATFORM,
        archive.clone(),
    ));
    let token = server.issue_token("tester", None);
    let manifest = manifest_from(&server, &token).await;
    assert_eq!(
        manifest,
        RuntimeManifest {
            runtime: "code-server".into(),
            version: VERSION.into(),
            platform: PLATFORM.into(),
            url: "/downloads/editor-runtime/code-server-4.100.3-linux-x64.tar.gz".into(),
            sha256: sha256_hex(&archive),
            size: archive.len() as u64,
            entrypoint: "bin/code-server".into(),
        }
    );
}

#[tokio::test]
async fn a_good_archive_is_installed_and_then_reused() {
    let server = server().await;
    server.set_editor_runtime(EditorRuntimeFixture::new(VERSION, PLATFORM, good_archive()));
    let token = server.issue_token("tester", None);
    let cache = TempCache::new("good");
    let reports = Reports::default();

    let installed = install(&server, &cache, &token, &reports).await.unwrap();
    let dir = cache.root.join("code-server-4.100.3-linux-x64");
    assert_eq!(
        installed,
        InstalledRuntime {
            version: VERSION.into(),
            platform: PLATFORM.into(),
            root: dir.clone(),
            code_server_bin: dir.join("bin/code-server"),
        }
    );
    assert_eq!(std::fs::read(&installed.code_server_bin).unwrap(), SCRIPT);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&installed.code_server_bin)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "entrypoint mode {mode:o}");
        // The archive's relative link is kept and stays inside.
        assert_eq!(
            std::fs::read_link(dir.join("lib/code-server")).unwrap(),
            Path::new("../bin/code-server")
        );
    }
    // The top-level directory is stripped; the marker is there; the archive is gone.
    assert!(dir.join("package.json").is_file());
    assert!(!dir.join("code-server-4.100.3-linux-amd64").exists());
    let marker: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(MARKER_FILE)).unwrap()).unwrap();
    assert_eq!(marker["version"], VERSION);
    assert_eq!(marker["sha256"], sha256_hex(&good_archive()));
    assert_eq!(
        cache.contents(),
        ["code-server-4.100.3-linux-x64", "downloads"]
    );

    let progress = reports.all();
    assert_eq!(
        progress.first(),
        Some(&Progress::Downloading {
            received: 0,
            total: good_archive().len() as u64
        })
    );
    let tail = &progress[progress.len() - 3..];
    assert_eq!(
        tail,
        [Progress::Verifying, Progress::Unpacking, Progress::Ready]
    );
    assert!(progress.contains(&Progress::Downloading {
        received: good_archive().len() as u64,
        total: good_archive().len() as u64
    }));
    assert_eq!(server.editor_runtime_downloads(), 1);
    // Same origin as Kandan: the download carried the token.
    let log = server.editor_runtime_download_log();
    assert_eq!(log.len(), 1);
    assert!(log[0].had_authorization);
    assert_eq!(log[0].status, 200);

    // Reused: no download, straight to Ready.
    let again = Reports::default();
    let reused = install(&server, &cache, &token, &again).await.unwrap();
    assert_eq!(reused, installed);
    assert_eq!(again.all(), [Progress::Ready]);
    assert_eq!(server.editor_runtime_downloads(), 1);
    let manifest = manifest_from(&server, &token).await;
    assert_eq!(cache.cache().installed(&manifest), Some(installed));
}

#[tokio::test]
async fn a_wrong_checksum_is_retried_then_refused_and_nothing_is_installed() {
    let server = server().await;
    let archive = good_archive();
    let advertised = "0".repeat(64);
    server.set_editor_runtime(EditorRuntimeFixture {
        advertised_sha256: Some(advertised.clone()),
        ..EditorRuntimeFixture::new(VERSION, PLATFORM, archive.clone())
    });
    let token = server.issue_token("tester", None);
    let cache = TempCache::new("checksum");
    let reports = Reports::default();

    let error = install(&server, &cache, &token, &reports)
        .await
        .unwrap_err();
    let url = format!(
        "{}/downloads/editor-runtime/code-server-4.100.3-linux-x64.tar.gz",
        server.http_url()
    );
    assert_eq!(
        error.to_string(),
        format!(
            "the editor runtime download from {url} failed its checksum 3 times (expected \
             {advertised}, got {})",
            sha256_hex(&archive)
        )
    );
    assert!(!error.to_string().contains(&token));
    assert_eq!(server.editor_runtime_downloads(), 3);
    // No runtime directory, no staging directory, no partial download.
    assert_eq!(cache.contents(), ["downloads"]);
    let retries = reports.retries();
    assert_eq!(
        retries
            .iter()
            .map(|(attempt, _)| *attempt)
            .collect::<Vec<_>>(),
        [2, 3]
    );
    assert!(retries[0].1.starts_with("checksum mismatch"), "{retries:?}");
    assert!(!reports.all().contains(&Progress::Unpacking));
    assert!(!reports.all().contains(&Progress::Ready));
}

#[tokio::test]
async fn a_corrupted_download_is_retried_and_the_next_one_installs() {
    let server = server().await;
    server.set_editor_runtime(EditorRuntimeFixture {
        corrupt_downloads: 1,
        ..EditorRuntimeFixture::new(VERSION, PLATFORM, good_archive())
    });
    let token = server.issue_token("tester", None);
    let cache = TempCache::new("corrupt");
    let reports = Reports::default();

    let installed = install(&server, &cache, &token, &reports).await.unwrap();
    assert_eq!(std::fs::read(&installed.code_server_bin).unwrap(), SCRIPT);
    assert_eq!(server.editor_runtime_downloads(), 2);
    let retries = reports.retries();
    assert_eq!(retries.len(), 1, "{retries:?}");
    assert_eq!(retries[0].0, 2);
    assert!(retries[0].1.starts_with("checksum mismatch"), "{retries:?}");
    assert_eq!(reports.all().last(), Some(&Progress::Ready));
    assert_eq!(
        cache.contents(),
        ["code-server-4.100.3-linux-x64", "downloads"]
    );
}

#[tokio::test]
async fn a_truncated_download_is_retried_and_the_next_one_installs() {
    let server = server().await;
    let archive = good_archive();
    server.set_editor_runtime(EditorRuntimeFixture {
        truncate_downloads: 1,
        ..EditorRuntimeFixture::new(VERSION, PLATFORM, archive.clone())
    });
    let token = server.issue_token("tester", None);
    let cache = TempCache::new("truncated");
    let reports = Reports::default();

    let installed = install(&server, &cache, &token, &reports).await.unwrap();
    assert!(installed.code_server_bin.is_file());
    assert_eq!(server.editor_runtime_downloads(), 2);
    let retries = reports.retries();
    assert_eq!(
        retries,
        [(
            2,
            format!(
                "wrong size (expected {} bytes, got {})",
                archive.len(),
                archive.len() / 2
            )
        )]
    );
}

#[tokio::test]
async fn downloads_that_stay_short_fail_after_three_attempts() {
    let server = server().await;
    let archive = good_archive();
    server.set_editor_runtime(EditorRuntimeFixture {
        truncate_downloads: 5,
        ..EditorRuntimeFixture::new(VERSION, PLATFORM, archive.clone())
    });
    let token = server.issue_token("tester", None);
    let cache = TempCache::new("short");
    let error = install(&server, &cache, &token, &Reports::default())
        .await
        .unwrap_err();
    assert!(
        matches!(error, RuntimeError::SizeMismatch { attempts: 3, .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains(&format!(
            "had the wrong size 3 times (expected {} bytes, got {})",
            archive.len(),
            archive.len() / 2
        )),
        "{error}"
    );
    assert_eq!(server.editor_runtime_downloads(), 3);
    assert_eq!(cache.contents(), ["downloads"]);
}

#[tokio::test]
async fn a_bad_token_gets_a_clear_error() {
    let server = server().await;
    server.set_editor_runtime(EditorRuntimeFixture::new(VERSION, PLATFORM, good_archive()));
    let kandan = kandan_of(&server);
    let http = http::client_for(&kandan).unwrap();
    let error = runtime::fetch_manifest(&http, &kandan, "not-a-token", PLATFORM)
        .await
        .unwrap_err();
    assert!(
        matches!(error, RuntimeError::Unauthorized { status: 401 }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "Kandan refused the runner's token when asked for the editor runtime (HTTP 401): sign \
         in again, or pass --code-server-bin with a code-server you installed"
    );
}

#[tokio::test]
async fn a_token_revoked_before_the_download_is_refused_without_retrying() {
    let server = server().await;
    server.set_editor_runtime(EditorRuntimeFixture::new(VERSION, PLATFORM, good_archive()));
    let token = server.issue_token("tester", None);
    let manifest = manifest_from(&server, &token).await;
    server.revoke_token(&token);
    let cache = TempCache::new("revoked");
    let error = cache
        .cache()
        .install(&kandan_of(&server), &token, &manifest, &|_| {})
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "the editor runtime download from {}/downloads/editor-runtime/\
             code-server-4.100.3-linux-x64.tar.gz was refused (HTTP 401)",
            server.http_url()
        )
    );
    let log = server.editor_runtime_download_log();
    assert_eq!(log.len(), 1, "401 is not retried: {log:?}");
    assert_eq!(server.editor_runtime_downloads(), 0);
}

#[tokio::test]
async fn a_platform_without_a_runtime_gets_a_clear_error() {
    let server = server().await;
    server.set_editor_runtime(EditorRuntimeFixture::new(VERSION, PLATFORM, good_archive()));
    let token = server.issue_token("tester", None);
    let kandan = kandan_of(&server);
    let http = http::client_for(&kandan).unwrap();
    let error = runtime::fetch_manifest(&http, &kandan, &token, "darwin-arm64")
        .await
        .unwrap_err();
    assert!(
        matches!(error, RuntimeError::NoRuntimeForPlatform { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "Kandan has no code-server editor runtime for darwin-arm64: pass --code-server-bin \
         with a code-server you installed"
    );
}

#[tokio::test]
async fn an_archive_on_another_origin_gets_no_token() {
    let kandan = server().await;
    let cdn = server().await;
    let archive = good_archive();
    let on_cdn = EditorRuntimeFixture {
        public_download: true,
        ..EditorRuntimeFixture::new(VERSION, PLATFORM, archive.clone())
    };
    let cdn_url = format!(
        "{}/downloads/editor-runtime/{}?signature=abc",
        cdn.http_url(),
        on_cdn.file_name()
    );
    cdn.set_editor_runtime(on_cdn);
    kandan.set_editor_runtime(EditorRuntimeFixture {
        archive_url: Some(cdn_url.clone()),
        ..EditorRuntimeFixture::new(VERSION, PLATFORM, archive)
    });
    let token = kandan.issue_token("tester", None);
    let cache = TempCache::new("cdn");

    let manifest = manifest_from(&kandan, &token).await;
    assert_eq!(manifest.url, cdn_url);
    assert!(!runtime::archive_gets_token(
        &kandan_of(&kandan),
        &manifest.archive_url(&kandan_of(&kandan)).unwrap()
    ));
    let installed = install(&kandan, &cache, &token, &Reports::default())
        .await
        .unwrap();
    assert!(installed.code_server_bin.is_file());
    assert_eq!(kandan.editor_runtime_downloads(), 0);
    let log = cdn.editor_runtime_download_log();
    assert_eq!(log.len(), 1);
    assert!(
        !log[0].had_authorization,
        "the token leaked to another origin"
    );
}

#[tokio::test]
async fn progress_is_throttled_and_monotonic() {
    let server = server().await;
    // About 1 MiB that gzip cannot shrink.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let noise: Vec<u8> = (0..1024 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let mut builder = ArchiveBuilder::new();
    builder
        .directory("code-server-4.100.3-linux-amd64/")
        .file(
            "code-server-4.100.3-linux-amd64/bin/code-server",
            SCRIPT,
            0o755,
        )
        .file("code-server-4.100.3-linux-amd64/lib/blob", &noise, 0o644);
    let archive = builder.finish();
    assert!(archive.len() > 1024 * 1024);
    server.set_editor_runtime(EditorRuntimeFixture::new(
        VERSION,
        PLATFORM,
        archive.clone(),
    ));
    let token = server.issue_token("tester", None);
    let cache = TempCache::new("progress");
    let reports = Reports::default();

    let installed = install(&server, &cache, &token, &reports).await.unwrap();
    assert_eq!(
        std::fs::read(installed.root.join("lib/blob")).unwrap(),
        noise
    );
    let received: Vec<u64> = reports
        .all()
        .into_iter()
        .filter_map(|progress| match progress {
            Progress::Downloading { received, total } => {
                assert_eq!(total, archive.len() as u64);
                Some(received)
            }
            _ => None,
        })
        .collect();
    assert_eq!(received.first(), Some(&0));
    assert_eq!(received.last(), Some(&(archive.len() as u64)));
    assert!(
        received.windows(2).all(|pair| pair[0] < pair[1]),
        "{received:?}"
    );
    // At most one report per 64 KiB, plus the first and the last.
    assert!(
        received.len() <= archive.len() / (64 * 1024) + 2,
        "{} reports: {received:?}",
        received.len()
    );
    assert_eq!(reports.all().last(), Some(&Progress::Ready));
}

#[tokio::test]
async fn an_unwritable_cache_gets_an_error_naming_the_path() {
    let server = server().await;
    server.set_editor_runtime(EditorRuntimeFixture::new(VERSION, PLATFORM, good_archive()));
    let token = server.issue_token("tester", None);
    let cache = TempCache::new("unwritable");
    // The cache root is a file, so nothing can be created under it.
    std::fs::write(&cache.root, "not a directory").unwrap();
    let error = install(&server, &cache, &token, &Reports::default())
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, RuntimeError::Io { .. }), "{message}");
    assert!(
        message.starts_with(&format!(
            "could not create the directory {}: ",
            cache.root.join("downloads").display()
        )),
        "{message}"
    );
    assert_eq!(server.editor_runtime_downloads(), 0);
    std::fs::remove_file(&cache.root).unwrap();
}
