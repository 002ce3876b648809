//! The `codex app-server` child process: started on a free loopback port (so the runner
//! and `codex --remote` TUIs can share it), watched, and ended together with everything
//! it started.
//!
//! The app-server prints `listening on: ws://127.0.0.1:PORT` on stderr once it accepts
//! connections; that line is the readiness signal. On unix it runs in its own process
//! group, and ending it ends its whole process tree (see [`crate::process_tree`]): the
//! npm `codex` is a Node wrapper around the native binary, and Codex starts commands in
//! sessions of their own.
use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tracing::debug;

use crate::process_tree::{self, Signal};

/// How long the app-server may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How many stderr lines are kept for error messages.
const STDERR_TAIL: usize = 20;

#[derive(Debug, Clone)]
pub struct AppServerSpec {
    pub codex_bin: PathBuf,
    /// Arguments after `app-server --listen ws://127.0.0.1:0` (e.g. `-c key=value`).
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
    child: Child,
    url: String,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    /// The root of the process tree to end; `None` once it has been ended. Kept apart
    /// from `Child::id`, which forgets the pid once the process is reaped.
    process_group: Option<u32>,
}

impl AppServerProcess {
    pub async fn spawn(spec: &AppServerSpec) -> Result<AppServerProcess, SpawnError> {
        let mut command = Command::new(&spec.codex_bin);
        command
            .args(["app-server", "--listen", "ws://127.0.0.1:0"])
            .args(&spec.extra_args)
            .envs(spec.env.iter().map(|(key, value)| (key, value)))
            .current_dir(&spec.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        command.process_group(0);
        let mut child = command.spawn().map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => {
                SpawnError::NotFound(spec.codex_bin.display().to_string())
            }
            _ => SpawnError::Io(error),
        })?;

        let process_group = child.id();
        let stderr_tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
        let (ready_tx, ready_rx) = oneshot::channel();
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(read_stderr(stderr, stderr_tail.clone(), ready_tx));
        }
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    debug!(target: "codex_app_server", "{line}");
                }
            });
        }

        let started = tokio::select! {
            // The sender is dropped when stderr ends without the line: it is exiting.
            url = ready_rx => url.ok(),
            _ = child.wait() => None,
            () = tokio::time::sleep(START_TIMEOUT) => {
                let mut process = AppServerProcess {
                    child,
                    url: String::new(),
                    stderr_tail,
                    process_group,
                };
                process.terminate(Duration::from_secs(1)).await;
                return Err(SpawnError::Timeout(START_TIMEOUT));
            }
        };
        let Some(url) = started else {
            let status = match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
                Ok(Ok(status)) => status.to_string(),
                Ok(Err(error)) => error.to_string(),
                Err(_) => "closed its output".to_owned(),
            };
            let mut process = AppServerProcess {
                child,
                url: String::new(),
                stderr_tail,
                process_group,
            };
            // Let the stderr reader store the last lines.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let tail = process.stderr_tail();
            process.terminate(Duration::from_secs(1)).await;
            return Err(SpawnError::Exited { status, tail });
        };
        Ok(AppServerProcess {
            child,
            url,
            stderr_tail,
            process_group,
        })
    }

    /// `ws://127.0.0.1:PORT`: for the runner's client and for `codex --remote`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Resolves when the process exits.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// The last lines it wrote to stderr, for "why did it die" messages.
    pub fn stderr_tail(&self) -> String {
        tail_text(&self.stderr_tail)
    }

    /// Ends the app-server and everything it started: SIGTERM to the whole process tree,
    /// then SIGKILL to whatever of it is left after `grace`.
    pub async fn terminate(&mut self, grace: Duration) {
        let Some(root) = self.process_group else {
            return;
        };
        let tree = process_tree::tree(root);
        process_tree::signal(&tree, Signal::Terminate);
        // If this is cancelled here, `Drop` still knows the root and kills the tree.
        let _ = tokio::time::timeout(grace, self.child.wait()).await;
        process_tree::signal(&tree, Signal::Kill);
        self.process_group = None;
        let _ = self.child.wait().await;
    }
}

impl Drop for AppServerProcess {
    /// A runner that is dropped without `terminate` (a panic, a cancelled task) must not
    /// leave Codex or its commands behind.
    fn drop(&mut self) {
        if let Some(root) = self.process_group.take() {
            process_tree::signal(&process_tree::tree(root), Signal::Kill);
        }
    }
}

async fn read_stderr(
    stderr: tokio::process::ChildStderr,
    tail: Arc<Mutex<VecDeque<String>>>,
    ready: oneshot::Sender<String>,
) {
    let mut ready = Some(ready);
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        debug!(target: "codex_app_server", "{line}");
        if let Some(url) = listening_url(&line)
            && let Some(ready) = ready.take()
        {
            let _ = ready.send(url);
        }
        if let Ok(mut tail) = tail.lock() {
            if tail.len() == STDERR_TAIL {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }
}

/// The URL in the app-server's `listening on: ws://…` line.
fn listening_url(line: &str) -> Option<String> {
    let rest = line.trim().strip_prefix("listening on:")?.trim();
    rest.starts_with("ws://").then(|| rest.to_owned())
}

fn tail_text(tail: &Mutex<VecDeque<String>>) -> String {
    tail.lock()
        .map(|lines| lines.iter().cloned().collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
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
