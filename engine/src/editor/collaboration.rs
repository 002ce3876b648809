//! The optional collaboration block of `start_local_editor` (provider `oct`, Open
//! Collaboration Tools): the extension and the collaboration server come from Kandan,
//! the extension is installed into the runner's own extensions folder, and the server
//! runs on a free loopback port that is forwarded like the editor (a managed port).
//!
//! Asset paths are paths on Kandan and are fetched with the runner's token; a full URL
//! is refused, so the token never goes anywhere but Kandan.
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::process::Command;
use tracing::debug;

use super::launch::{LaunchSpec, free_loopback_port};
use crate::child_process::{ChildTree, OutputTail, Readiness};
use crate::kandan_url::KandanUrl;
use crate::process_tree::Signal;
use crate::protocol::controls::EditorCollaboration;

/// The largest asset accepted from Kandan.
const ASSET_LIMIT: u64 = 64 * 1024 * 1024;
/// How long installing the extension may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the collaboration server may take to listen.
const SERVER_READY_TIMEOUT: Duration = Duration::from_secs(30);
const OUTPUT_TAIL: usize = 15;

#[derive(Debug, thiserror::Error)]
pub enum CollaborationError {
    #[error("the collaboration {what} path {path:?} must be a path on Kandan starting with \"/\"")]
    NotAKandanPath { what: &'static str, path: String },
    #[error("could not download the collaboration {what} from Kandan: {reason}")]
    Download { what: &'static str, reason: String },
    #[error("could not store the collaboration {what} at {path}: {reason}")]
    Store {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("installing the collaboration extension failed: {0}")]
    Install(String),
    #[error("the collaboration server did not start: {0}")]
    Server(String),
}

/// What Kandan and the runner need to reach.
#[derive(Debug, Clone)]
pub struct CollaborationAccess {
    pub http: reqwest::Client,
    pub kandan: KandanUrl,
    pub token: String,
}

/// A collaboration server that accepts connections.
pub struct CollaborationServer {
    pub process: ChildTree,
    pub port: u16,
    pub output: OutputTail,
}

impl CollaborationServer {
    /// SIGINT to its tree, SIGKILL after the editor's grace.
    pub async fn stop(&mut self) {
        self.process
            .terminate(Signal::Interrupt, super::launch::STOP_GRACE)
            .await;
    }
}

/// Prepares collaboration before code-server starts: the extension installed, its server
/// listening, and the extension pointed at that server in the runner's user settings.
pub async fn prepare(
    block: &EditorCollaboration,
    access: &CollaborationAccess,
    spec: &LaunchSpec,
    node: &Path,
) -> Result<CollaborationServer, CollaborationError> {
    let folder = spec
        .data_dir
        .join("collaboration")
        .join(block.editor_session_id.to_string());
    let extension = folder.join("oct-extension.vsix");
    let server = folder.join("oct-server.js");
    download(access, "extension", &block.extension_asset_path, &extension).await?;
    download(access, "server", &block.server_asset_path, &server).await?;
    install_extension(spec, &extension).await?;
    let started = start_server(block, node, &server, &folder).await?;
    point_extension_at(spec, started.port)?;
    Ok(started)
}

async fn download(
    access: &CollaborationAccess,
    what: &'static str,
    asset_path: &str,
    target: &Path,
) -> Result<(), CollaborationError> {
    if !asset_path.starts_with('/') || asset_path.starts_with("//") {
        return Err(CollaborationError::NotAKandanPath {
            what,
            path: asset_path.to_owned(),
        });
    }
    let url = access.kandan.http_endpoint(asset_path);
    let failed = |reason: String| CollaborationError::Download { what, reason };
    let response = access
        .http
        .get(url.clone())
        .bearer_auth(&access.token)
        .send()
        .await
        .map_err(|error| failed(error.without_url().to_string()))?;
    if !response.status().is_success() {
        return Err(failed(format!(
            "{} answered {}",
            url.path(),
            response.status()
        )));
    }
    if response
        .content_length()
        .is_some_and(|length| length > ASSET_LIMIT)
    {
        return Err(failed(format!("it is over the {ASSET_LIMIT}-byte limit")));
    }
    let body = response
        .bytes()
        .await
        .map_err(|error| failed(error.without_url().to_string()))?;
    if body.len() as u64 > ASSET_LIMIT {
        return Err(failed(format!("it is over the {ASSET_LIMIT}-byte limit")));
    }
    let store = |error: std::io::Error| CollaborationError::Store {
        what,
        path: target.to_owned(),
        reason: error.to_string(),
    };
    if let Some(parent) = target.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(store)?;
    }
    tokio::fs::write(target, &body).await.map_err(store)
}

async fn install_extension(spec: &LaunchSpec, vsix: &Path) -> Result<(), CollaborationError> {
    let mut command = spec.command();
    command
        .arg("--force")
        .arg("--install-extension")
        .arg(vsix)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(INSTALL_TIMEOUT, command.output())
        .await
        .map_err(|_| {
            CollaborationError::Install(format!(
                "code-server did not finish within {INSTALL_TIMEOUT:?}"
            ))
        })?
        .map_err(|error| CollaborationError::Install(error.to_string()))?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    if text.is_empty() {
        text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    }
    Err(CollaborationError::Install(format!(
        "code-server {}: {text}",
        output.status
    )))
}

async fn start_server(
    block: &EditorCollaboration,
    node: &Path,
    script: &Path,
    folder: &Path,
) -> Result<CollaborationServer, CollaborationError> {
    let failed = |reason: String| CollaborationError::Server(reason);
    let port = free_loopback_port().map_err(|error| failed(error.to_string()))?;
    let mut command = Command::new(node);
    command
        .arg(script)
        .current_dir(folder)
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("OCT_ROOM_ID", &block.room_id)
        .env("OCT_EDITOR_SESSION_ID", block.editor_session_id.to_string())
        .env("OCT_RUNTIME_SESSION_ID", &block.runtime_session_id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match &block.bootstrap_token {
        Some(token) => command.env("OCT_BOOTSTRAP_TOKEN", token),
        None => command.env_remove("OCT_BOOTSTRAP_TOKEN"),
    };
    let mut process = ChildTree::spawn(command)
        .map_err(|error| failed(format!("{} could not be run: {error}", node.display())))?;
    let output = process.capture_output(OUTPUT_TAIL, |line| {
        debug!(target: "collaboration_server", "{line}");
    });
    let listening = || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    };
    match process
        .wait_ready(SERVER_READY_TIMEOUT, Duration::from_millis(100), listening)
        .await
    {
        Readiness::Ready => Ok(CollaborationServer {
            process,
            port,
            output,
        }),
        Readiness::Exited(status) => Err(failed(format!(
            "it exited ({status}); its last output:\n{}",
            output.text()
        ))),
        Readiness::TimedOut => Err(failed(format!(
            "nothing listened on 127.0.0.1:{port} within {SERVER_READY_TIMEOUT:?}; its last output:\n{}",
            output.text()
        ))),
    }
}

/// Sets `oct.serverUrl` in the runner's code-server user settings, keeping the rest.
/// The extension runs in code-server's extension host on this computer, so the
/// loopback address is the right one.
fn point_extension_at(spec: &LaunchSpec, port: u16) -> Result<(), CollaborationError> {
    let path = spec.user_data_dir().join("User").join("settings.json");
    let store = |error: std::io::Error| CollaborationError::Store {
        what: "settings",
        path: path.clone(),
        reason: error.to_string(),
    };
    let mut settings = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Map<String, Value>>(&bytes).ok())
        .unwrap_or_default();
    settings.insert(
        "oct.serverUrl".into(),
        json!(format!("http://127.0.0.1:{port}")),
    );
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(store)?;
    }
    let text = serde_json::to_vec_pretty(&settings).unwrap_or_default();
    std::fs::write(&path, text).map_err(store)
}

/// The Node.js that runs the collaboration server: the one bundled with the code-server
/// runtime (its release layout has `lib/node`), else `node` on PATH.
pub fn node_for(code_server_bin: &Path) -> PathBuf {
    let bundled = std::fs::canonicalize(code_server_bin)
        .ok()
        .and_then(|bin| Some(bin.parent()?.parent()?.join("lib").join("node")));
    match bundled {
        Some(node) if node.is_file() => node,
        _ => which::which("node").unwrap_or_else(|_| PathBuf::from("node")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_node_is_preferred() {
        let root = std::env::temp_dir().join(format!("linzumi-oct-node-{}", std::process::id()));
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::create_dir_all(root.join("lib")).unwrap();
        std::fs::write(root.join("bin/code-server"), "").unwrap();
        assert_ne!(
            node_for(&root.join("bin/code-server")),
            root.join("lib/node")
        );
        std::fs::write(root.join("lib/node"), "").unwrap();
        assert_eq!(
            node_for(&root.join("bin/code-server")),
            std::fs::canonicalize(&root).unwrap().join("lib/node")
        );
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn settings_keep_what_was_there() {
        let dir = std::env::temp_dir().join(format!("linzumi-oct-settings-{}", std::process::id()));
        let spec = LaunchSpec {
            code_server_bin: "code-server".into(),
            cwd: dir.clone(),
            data_dir: dir.clone(),
            isolation: crate::editor::listen::Isolation::of_this_platform(),
        };
        let user = spec.user_data_dir().join("User");
        std::fs::create_dir_all(&user).unwrap();
        std::fs::write(user.join("settings.json"), r#"{"editor.fontSize": 15}"#).unwrap();
        point_extension_at(&spec, 4321).unwrap();
        let settings: Value =
            serde_json::from_slice(&std::fs::read(user.join("settings.json")).unwrap()).unwrap();
        assert_eq!(
            settings,
            json!({"editor.fontSize": 15, "oct.serverUrl": "http://127.0.0.1:4321"})
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
