//! The `codex app-server` child process: started on a free loopback port (so the runner
//! and `codex --remote` TUIs can share it), watched, and ended together with everything
//! it started. It asks every client for a capability token of this start's own
//! ([`super::address`]): the port is reachable by every local user.
//!
//! The app-server prints `listening on: ws://127.0.0.1:PORT` on stderr once it accepts
//! connections; that line is the readiness signal. On unix it runs in its own process
//! group, and ending it ends its whole process tree (see [`crate::process_tree`]): the
//! npm `codex` is a Node wrapper around the native binary, and Codex starts commands in
//! sessions of their own.
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::oneshot;
use tracing::debug;

use super::address::{AppServerAddress, CapabilityToken};
use crate::child_process::{ChildTree, OutputTail};
use crate::process_tree::Signal;

/// How long the app-server may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How many stderr lines are kept for error messages.
const STDERR_TAIL: usize = 20;

#[derive(Debug, Clone)]
pub struct AppServerSpec {
    pub codex_bin: PathBuf,
    /// Arguments after `app-server --listen ws://127.0.0.1:0 --ws-auth …` (e.g.
    /// `-c key=value`).
    pub extra_args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error(
        "codex was not found at \"{0}\": install it with `npm install -g @openai/codex` or pass --codex-bin"
    )]
    NotFound(String),
    #[error("could not start codex app-server: {0}")]
    Io(std::io::Error),
    #[error("codex app-server exited before it was ready ({status}); its last output:\n{tail}")]
    Exited { status: String, tail: String },
    #[error("codex app-server did not start listening within {0:?}")]
    Timeout(Duration),
}

pub struct AppServerProcess {
    process: ChildTree,
    address: AppServerAddress,
    stderr_tail: OutputTail,
}

impl AppServerProcess {
    pub async fn spawn(spec: &AppServerSpec) -> Result<AppServerProcess, SpawnError> {
        let token = CapabilityToken::generate();
        let mut command = Command::new(&spec.codex_bin);
        command
            .args(["app-server", "--listen", "ws://127.0.0.1:0"])
            .args(["--ws-auth", "capability-token", "--ws-token-sha256"])
            .arg(token.sha256_hex())
            .args(&spec.extra_args)
            .envs(spec.env.iter().map(|(key, value)| (key, value)))
            .current_dir(&spec.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut process = ChildTree::spawn(command).map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => {
                SpawnError::NotFound(spec.codex_bin.display().to_string())
            }
            _ => SpawnError::Io(error),
        })?;

        let stderr_tail = OutputTail::new(STDERR_TAIL);
        let (ready_tx, ready_rx) = oneshot::channel();
        if let Some(stderr) = process.child_mut().stderr.take() {
            let mut ready = Some(ready_tx);
            stderr_tail.follow(stderr, move |line| {
                debug!(target: "codex_app_server", "{line}");
                if let Some(url) = listening_url(line)
                    && let Some(ready) = ready.take()
                {
                    let _ = ready.send(url);
                }
            });
        }
        if let Some(stdout) = process.child_mut().stdout.take() {
            OutputTail::new(1).follow(stdout, |line| {
                debug!(target: "codex_app_server", "{line}");
            });
        }

        let started = tokio::select! {
            // The sender is dropped when stderr ends without the line: it is exiting.
            url = ready_rx => url.ok(),
            _ = process.wait() => None,
            () = tokio::time::sleep(START_TIMEOUT) => {
                process.terminate(Signal::Terminate, Duration::from_secs(1)).await;
                return Err(SpawnError::Timeout(START_TIMEOUT));
            }
        };
        let Some(url) = started else {
            let status = match tokio::time::timeout(Duration::from_secs(5), process.wait()).await {
                Ok(Ok(status)) => status.to_string(),
                Ok(Err(error)) => error.to_string(),
                Err(_) => "closed its output".to_owned(),
            };
            // Let the stderr reader store the last lines.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let tail = stderr_tail.text();
            process
                .terminate(Signal::Terminate, Duration::from_secs(1))
                .await;
            return Err(SpawnError::Exited { status, tail });
        };
        Ok(AppServerProcess {
            process,
            address: AppServerAddress {
                url,
                token: Some(token),
            },
            stderr_tail,
        })
    }

    /// `ws://127.0.0.1:PORT` and its token: for the runner's client and `codex --remote`.
    pub fn address(&self) -> &AppServerAddress {
        &self.address
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Resolves when the process exits.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.process.wait().await
    }

    /// The last lines it wrote to stderr, for "why did it die" messages.
    pub fn stderr_tail(&self) -> String {
        self.stderr_tail.text()
    }

    /// Ends the app-server and everything it started: SIGTERM to the whole process tree,
    /// then SIGKILL to whatever of it is left after `grace`.
    pub async fn terminate(&mut self, grace: Duration) {
        self.process.terminate(Signal::Terminate, grace).await;
    }
}

/// The URL in the app-server's `listening on: ws://…` line.
fn listening_url(line: &str) -> Option<String> {
    let rest = line.trim().strip_prefix("listening on:")?.trim();
    rest.starts_with("ws://").then(|| rest.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_listening_line() {
        assert_eq!(
            listening_url("  listening on: ws://127.0.0.1:41693").as_deref(),
            Some("ws://127.0.0.1:41693")
        );
        assert_eq!(
            listening_url("  readyz: http://127.0.0.1:41693/readyz"),
            None
        );
        assert_eq!(listening_url("listening on: http://x"), None);
    }

    #[tokio::test]
    async fn a_missing_binary_is_named() {
        let spec = AppServerSpec {
            codex_bin: "/nonexistent/codex".into(),
            extra_args: vec![],
            env: vec![],
            cwd: std::env::temp_dir(),
        };
        let error = AppServerProcess::spawn(&spec).await.err().unwrap();
        assert!(
            error.to_string().starts_with(
                "codex was not found at \"/nonexistent/codex\": install it with `npm install -g @openai/codex`"
            ),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_process_that_dies_at_start_reports_its_output() {
        let dir = std::env::temp_dir().join(format!("linzumi-fake-codex-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("codex");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho 'error: unknown flag --listen' >&2\nexit 3\n",
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let spec = AppServerSpec {
            codex_bin: fake,
            extra_args: vec![],
            env: vec![],
            cwd: dir.clone(),
        };
        let error = AppServerProcess::spawn(&spec).await.err().unwrap();
        let text = error.to_string();
        assert!(text.contains("exited before it was ready"), "{text}");
        assert!(text.contains("unknown flag --listen"), "{text}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
