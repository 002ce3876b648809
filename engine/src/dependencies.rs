//! Are the tools the runner drives installed, and which versions (seed
//! `dependencyStatus.ts`)? Checked before start so a missing codex is a clear message,
//! not a crash mid-session, and reported to Kandan as `toolStatus`.
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::process::Command;

const VERSION_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ToolState {
    Ready,
    Missing,
    Broken,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolStatus {
    pub state: ToolState,
    /// The executable as resolved on PATH.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// What to do about it, when it is not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The status of the Codex CLI at `bin` (a name on PATH or a path).
pub async fn codex_status(bin: &Path) -> ToolStatus {
    tool_status(
        bin,
        "codex",
        "install it with `npm install -g @openai/codex`, or pass --codex-bin",
    )
    .await
}

/// The status of a custom code-server (`--code-server-bin`).
pub async fn code_server_status(bin: &Path) -> ToolStatus {
    tool_status(
        bin,
        "code-server",
        "pass --code-server-bin with a code-server executable, or leave it out to use the runtime Kandan provides",
    )
    .await
}

/// Whether `bin` runs and which version it reports (the first line of `--version`).
async fn tool_status(bin: &Path, name: &str, install_hint: &str) -> ToolStatus {
    let Some(path) = resolve(bin) else {
        return ToolStatus {
            state: ToolState::Missing,
            path: None,
            version: None,
            detail: Some(format!(
                "{name} was not found ({}): {install_hint}",
                bin.display()
            )),
        };
    };
    let output = tokio::time::timeout(
        VERSION_TIMEOUT,
        Command::new(&path)
            .arg("--version")
            .kill_on_drop(true)
            .output(),
    )
    .await;
    match output {
        Ok(Ok(output)) if output.status.success() => ToolStatus {
            state: ToolState::Ready,
            version: String::from_utf8_lossy(&output.stdout)
                .lines()
                .next()
                .map(|line| line.trim().to_owned()),
            path: Some(path),
            detail: None,
        },
        Ok(Ok(output)) => broken(
            path,
            format!(
                "`{name} --version` failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        ),
        Ok(Err(error)) => broken(path, format!("{name} could not be run: {error}")),
        Err(_) => broken(
            path,
            format!("`{name} --version` did not answer within {VERSION_TIMEOUT:?}"),
        ),
    }
}

fn broken(path: PathBuf, detail: String) -> ToolStatus {
    ToolStatus {
        state: ToolState::Broken,
        path: Some(path),
        version: None,
        detail: Some(detail),
    }
}

/// An executable name looked up on PATH, or a path checked for existence.
fn resolve(bin: &Path) -> Option<PathBuf> {
    which::which(bin).ok()
}

/// The `toolStatus` capability payload.
pub fn tool_status_payload(codex: &ToolStatus) -> Value {
    serde_json::json!({ "codex": codex })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_codex_says_how_to_install_it() {
        let status = codex_status(Path::new("/nonexistent/codex")).await;
        assert_eq!(status.state, ToolState::Missing);
        assert!(
            status
                .detail
                .unwrap()
                .contains("npm install -g @openai/codex")
        );
    }

    #[tokio::test]
    #[cfg(unix)]
    async fn a_failing_version_check_is_broken_with_its_output() {
        use std::os::unix::fs::PermissionsExt;
        let path =
            std::env::temp_dir().join(format!("linzumi-broken-codex-{}", std::process::id()));
        std::fs::write(&path, "#!/bin/sh\necho 'missing libssl' >&2\nexit 127\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let status = codex_status(&path).await;
        std::fs::remove_file(&path).unwrap();
        assert_eq!(status.state, ToolState::Broken);
        assert!(status.detail.unwrap().contains("missing libssl"));
    }

    #[tokio::test]
    async fn the_pinned_codex_is_ready_with_its_version() {
        let status = codex_status(&mock_model_api::codex_bin().unwrap()).await;
        assert_eq!(status.state, ToolState::Ready, "{status:?}");
        assert_eq!(status.version.as_deref(), Some("codex-cli 0.169.0"));
        let payload = tool_status_payload(&status);
        assert_eq!(payload["codex"]["state"], "ready");
    }
}
