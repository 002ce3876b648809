//! The approved code-server editor runtime: the manifest endpoint
//! `GET /api/v2/local-codex-runner/editor-runtime?platform=<platform>` and the archive bytes
//! at `/downloads/editor-runtime/<file name>`, both configured by tests through
//! [`crate::KandanTestServer::set_editor_runtime`]. Downloads can be made to misbehave (flipped
//! bytes, a short body) a given number of times, and every download is counted and logged.
//!
//! [`archive_with_entrypoint`] builds a gzip'd tar in code-server's release layout for tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use crate::bearer::Bearer;
use crate::server::ServerCore;
use crate::sync::lock;

pub(crate) const MANIFEST_PATH: &str = "/api/v2/local-codex-runner/editor-runtime";
const DOWNLOAD_PREFIX: &str = "/downloads/editor-runtime";
/// code-server's launcher inside the archive's top-level directory.
pub const ENTRYPOINT: &str = "bin/code-server";

/// One platform's editor runtime, as a test wants the server to offer it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EditorRuntimeFixture {
    /// e.g. `4.100.3`.
    pub version: String,
    /// `linux-x64`, `linux-arm64`, `darwin-x64` or `darwin-arm64`.
    pub platform: String,
    /// The gzip'd tar served as the download (see [`archive_with_entrypoint`]).
    pub archive: Vec<u8>,
    /// Advertise this checksum instead of the archive's real one (to simulate a wrong one).
    pub advertised_sha256: Option<String>,
    /// The first this-many downloads serve the archive with one byte flipped.
    pub corrupt_downloads: u32,
    /// The first this-many downloads (after the corrupted ones) end halfway.
    pub truncate_downloads: u32,
    /// Advertise this `url` instead of the relative path of this server's download (e.g. an
    /// absolute URL on another server, to play a CDN).
    pub archive_url: Option<String>,
    /// Serve the download without a bearer token (as a CDN does); otherwise the download needs
    /// a valid one, like the manifest.
    pub public_download: bool,
}

impl EditorRuntimeFixture {
    /// A well-behaved runtime: the real checksum, every download good, downloads need a token.
    pub fn new(version: &str, platform: &str, archive: Vec<u8>) -> EditorRuntimeFixture {
        EditorRuntimeFixture {
            version: version.to_owned(),
            platform: platform.to_owned(),
            archive,
            ..EditorRuntimeFixture::default()
        }
    }

    /// `code-server-<version>-<platform>.tar.gz`: the download's file name.
    pub fn file_name(&self) -> String {
        format!("code-server-{}-{}.tar.gz", self.version, self.platform)
    }

    /// The archive's real SHA-256, lowercase hex.
    pub fn sha256(&self) -> String {
        sha256_hex(&self.archive)
    }
}

/// One download request the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditorRuntimeDownload {
    pub file_name: String,
    /// Whether the request carried an `Authorization` header (valid or not).
    pub had_authorization: bool,
    /// The HTTP status answered.
    pub status: u16,
}

/// The configured runtimes (by platform), the served-downloads log and the misbehaviour
/// still to come.
#[derive(Default)]
pub(crate) struct EditorRuntimes {
    state: Mutex<Offered>,
}

#[derive(Default)]
struct Offered {
    by_platform: HashMap<String, EditorRuntimeFixture>,
    /// Served downloads (archive bytes sent, good or spoiled).
    served: u32,
    log: Vec<EditorRuntimeDownload>,
}

impl EditorRuntimes {
    /// Offers `fixture` for its platform, replacing what was offered for it before.
    pub(crate) fn set(&self, fixture: EditorRuntimeFixture) {
        lock(&self.state)
            .by_platform
            .insert(fixture.platform.clone(), fixture);
    }

    pub(crate) fn clear(&self) {
        lock(&self.state).by_platform.clear();
    }

    pub(crate) fn downloads_served(&self) -> u32 {
        lock(&self.state).served
    }

    pub(crate) fn download_log(&self) -> Vec<EditorRuntimeDownload> {
        lock(&self.state).log.clone()
    }
}

pub(crate) fn routes() -> Router<Arc<ServerCore>> {
    Router::new()
        .route(MANIFEST_PATH, get(manifest))
        .route(&format!("{DOWNLOAD_PREFIX}/{{file}}"), get(download))
}

#[derive(Deserialize)]
struct ManifestQuery {
    platform: Option<String>,
}

async fn manifest(
    State(core): State<Arc<ServerCore>>,
    _bearer: Bearer,
    Query(query): Query<ManifestQuery>,
) -> Response {
    let Some(platform) = query.platform.filter(|platform| !platform.is_empty()) else {
        let body = json!({ "error": "missing_platform" });
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    };
    let state = lock(&core.editor_runtimes.state);
    let Some(fixture) = state.by_platform.get(&platform) else {
        let body = json!({ "error": "no_editor_runtime_for_platform" });
        return (StatusCode::NOT_FOUND, Json(body)).into_response();
    };
    let url = fixture
        .archive_url
        .clone()
        .unwrap_or_else(|| format!("{DOWNLOAD_PREFIX}/{}", fixture.file_name()));
    let sha256 = fixture
        .advertised_sha256
        .clone()
        .unwrap_or_else(|| fixture.sha256());
    Json(json!({
        "runtime": "code-server",
        "version": fixture.version,
        "platform": fixture.platform,
        "url": url,
        "sha256": sha256,
        "size": fixture.archive.len(),
        "entrypoint": ENTRYPOINT,
    }))
    .into_response()
}

async fn download(
    State(core): State<Arc<ServerCore>>,
    Path(file_name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let mut state = lock(&core.editor_runtimes.state);
    let fixture = state
        .by_platform
        .values()
        .find(|fixture| fixture.file_name() == file_name)
        .cloned();
    let answer = match fixture {
        None => Err((StatusCode::NOT_FOUND, "no such editor runtime download")),
        Some(fixture) if fixture.public_download || token_ok(&core, authorization.as_deref()) => {
            Ok(fixture)
        }
        Some(_) => Err((StatusCode::UNAUTHORIZED, "missing or invalid bearer token")),
    };
    let status = match &answer {
        Ok(_) => StatusCode::OK,
        Err((status, _)) => *status,
    };
    state.log.push(EditorRuntimeDownload {
        file_name,
        had_authorization: authorization.is_some(),
        status: status.as_u16(),
    });
    let fixture = match answer {
        Ok(fixture) => fixture,
        Err((status, problem)) => {
            return (status, Json(json!({ "error": problem }))).into_response();
        }
    };
    let mut body = fixture.archive.clone();
    // Spoil the body if this download is one of the first N corrupted (then truncated) ones.
    let served = state.served;
    state.served += 1;
    if served < fixture.corrupt_downloads {
        if let Some(byte) = body.get_mut(fixture.archive.len() / 2) {
            *byte ^= 0xff;
        }
    } else if served - fixture.corrupt_downloads < fixture.truncate_downloads {
        body.truncate(fixture.archive.len() / 2);
    }
    drop(state);
    ([(header::CONTENT_TYPE, "application/gzip")], body).into_response()
}

fn token_ok(core: &ServerCore, authorization: Option<&str>) -> bool {
    authorization
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .is_some_and(|(_, token)| core.tokens.verify(token.trim()).is_ok())
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A gzip'd tar in code-server's release layout: everything under `top_dir/` (e.g.
/// `code-server-4.100.3-linux-amd64`), with `top_dir/bin/code-server` = `script` (mode 0755),
/// a `top_dir/package.json`, and a relative symlink `top_dir/lib/code-server` pointing at
/// the launcher.
pub fn archive_with_entrypoint(top_dir: &str, script: &[u8]) -> Vec<u8> {
    let package = br#"{"name":"code-server","private":true}"#;
    let mut tar = ArchiveBuilder::new();
    tar.directory(&format!("{top_dir}/"));
    tar.directory(&format!("{top_dir}/bin/"));
    tar.file(&format!("{top_dir}/bin/code-server"), script, 0o755);
    tar.file(&format!("{top_dir}/package.json"), package, 0o644);
    tar.directory(&format!("{top_dir}/lib/"));
    tar.symlink(&format!("{top_dir}/lib/code-server"), "../bin/code-server");
    tar.finish()
}

/// Builds a gzip'd tar in memory, writing entry names and link targets verbatim (`..` and
/// absolute paths included), so tests can also build archives a careful unpacker refuses.
pub struct ArchiveBuilder {
    tar: tar::Builder<flate2::write::GzEncoder<Vec<u8>>>,
}

impl Default for ArchiveBuilder {
    fn default() -> Self {
        ArchiveBuilder::new()
    }
}

impl ArchiveBuilder {
    pub fn new() -> ArchiveBuilder {
        let gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        ArchiveBuilder {
            tar: tar::Builder::new(gzip),
        }
    }

    pub fn directory(&mut self, path: &str) -> &mut Self {
        self.append(path, tar::EntryType::Directory, 0o755, None, &[])
    }

    pub fn file(&mut self, path: &str, contents: &[u8], mode: u32) -> &mut Self {
        self.append(path, tar::EntryType::Regular, mode, None, contents)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.append(path, tar::EntryType::Symlink, 0o777, Some(target), &[])
    }

    pub fn hard_link(&mut self, path: &str, target: &str) -> &mut Self {
        self.append(path, tar::EntryType::Link, 0o644, Some(target), &[])
    }

    /// The gzip'd tar.
    pub fn finish(self) -> Vec<u8> {
        // Writing to a Vec cannot fail.
        let gzip = match self.tar.into_inner() {
            Ok(gzip) => gzip,
            Err(error) => unreachable!("writing a tar to memory failed: {error}"),
        };
        match gzip.finish() {
            Ok(bytes) => bytes,
            Err(error) => unreachable!("gzip to memory failed: {error}"),
        }
    }

    fn append(
        &mut self,
        path: &str,
        kind: tar::EntryType,
        mode: u32,
        link: Option<&str>,
        contents: &[u8],
    ) -> &mut Self {
        let mut header = tar::Header::new_old();
        let old = header.as_old_mut();
        write_field(&mut old.name, path);
        if let Some(link) = link {
            write_field(&mut old.linkname, link);
        }
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(contents.len() as u64);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        if let Err(error) = self.tar.append(&header, contents) {
            unreachable!("writing a tar to memory failed: {error}");
        }
        self
    }
}

/// Copies `text` into a NUL-padded header field; test paths are short.
fn write_field(field: &mut [u8], text: &str) {
    assert!(
        text.len() < field.len(),
        "tar path {text:?} is too long for a plain header"
    );
    field.fill(0);
    field[..text.len()].copy_from_slice(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    #[test]
    fn archive_has_the_code_server_layout() {
        let bytes = archive_with_entrypoint("code-server-1.0.0-linux-amd64", b"#!/bin/sh\n");
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut contents = Vec::new();
            entry.read_to_end(&mut contents).unwrap();
            if path.ends_with("bin/code-server") {
                assert_eq!(contents, b"#!/bin/sh\n");
                assert_eq!(entry.header().mode().unwrap(), 0o755);
            }
            seen.push(path);
        }
        assert_eq!(
            seen,
            [
                "code-server-1.0.0-linux-amd64/",
                "code-server-1.0.0-linux-amd64/bin/",
                "code-server-1.0.0-linux-amd64/bin/code-server",
                "code-server-1.0.0-linux-amd64/package.json",
                "code-server-1.0.0-linux-amd64/lib/",
                "code-server-1.0.0-linux-amd64/lib/code-server",
            ]
        );
    }

    #[test]
    fn sha256_is_lowercase_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
