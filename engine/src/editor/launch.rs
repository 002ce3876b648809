//! Starting code-server for a folder where only the runner reaches it (see [`listen`]),
//! with the runner's own user-data, extensions and config (nothing of the person's own
//! code-server setup is read or written), and ready only once it answers HTTP the way
//! Kandan's requests reach it.
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use tokio::process::Command;
use tracing::debug;

use super::listen::{Isolation, ListenError, Listener};
use crate::child_process::{ChildTree, OutputTail, Readiness};
use crate::forwarding::guard::{self, LocalTarget};
use crate::forwarding::local_http::LocalHttp;
use crate::forwarding::routes::{Endpoint, Routes};
use crate::process_tree::Signal;

/// How long code-server may take to answer its health check.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the health check is tried while it starts.
const READY_POLL: Duration = Duration::from_millis(100);
/// How many output lines are kept for error messages.
const OUTPUT_TAIL: usize = 15;
/// How many listeners are tried when another process takes the port picked.
const PORT_ATTEMPTS: usize = 3;
/// How long code-server gets to clean up after SIGINT.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Variables code-server reads that would change where it binds or how it authenticates:
/// a `PORT` set for the person's own dev server must not move the editor.
const CLEARED_ENV: &[&str] = &[
    "PORT",
    "PASSWORD",
    "HASHED_PASSWORD",
    "GITHUB_TOKEN",
    "CODE_SERVER_CONFIG",
    "VSCODE_PROXY_URI",
];

#[derive(Debug, Clone)]
pub struct LaunchSpec {
    pub code_server_bin: PathBuf,
    /// The folder to open.
    pub cwd: PathBuf,
    /// The runner's editor folder: `user-data/`, `extensions/` and `config.yaml`.
    pub data_dir: PathBuf,
    pub isolation: Isolation,
}

impl LaunchSpec {
    pub fn user_data_dir(&self) -> PathBuf {
        self.data_dir.join("user-data")
    }

    pub fn extensions_dir(&self) -> PathBuf {
        self.data_dir.join("extensions")
    }

    fn config_file(&self) -> PathBuf {
        self.data_dir.join("config.yaml")
    }

    /// The arguments every code-server command of the runner shares.
    pub fn common_args(&self) -> Vec<std::ffi::OsString> {
        vec![
            "--config".into(),
            self.config_file().into(),
            "--user-data-dir".into(),
            self.user_data_dir().into(),
            "--extensions-dir".into(),
            self.extensions_dir().into(),
        ]
    }

    /// A code-server command with the runner's folders and a clean environment.
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.code_server_bin);
        command.args(self.common_args());
        for name in CLEARED_ENV {
            command.env_remove(name);
        }
        crate::secrets::clear_from_environment(command.as_std_mut());
        command
    }

    /// Creates the folders and an empty config, so that code-server never writes a
    /// password config of its own to `~/.config/code-server`.
    pub fn prepare(&self) -> Result<(), LaunchError> {
        for dir in [self.user_data_dir(), self.extensions_dir()] {
            std::fs::create_dir_all(&dir).map_err(|error| LaunchError::Folder {
                path: dir.clone(),
                reason: error.to_string(),
            })?;
        }
        let config = self.config_file();
        // code-server refuses a config without a mapping in it.
        std::fs::write(
            &config,
            "# Written by Linzumi; the flags it passes win.\nauth: none\ncert: false\n",
        )
        .map_err(|error| LaunchError::Folder {
            path: config.clone(),
            reason: error.to_string(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(
        "code-server was not found at \"{0}\": let Linzumi download the editor runtime, or pass --code-server-bin with a code-server executable"
    )]
    NotFound(String),
    #[error("could not start code-server: {0}")]
    Io(std::io::Error),
    #[error("could not prepare the editor folder {path}: {reason}")]
    Folder { path: PathBuf, reason: String },
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error("code-server could not listen on 127.0.0.1:{port}: the port is in use")]
    PortInUse { port: u16 },
    #[error("code-server exited before it was ready ({status}); its last output:\n{tail}")]
    Exited { status: String, tail: String },
    #[error(
        "code-server did not answer on 127.0.0.1:{port} within {timeout:?}; its last output:\n{tail}"
    )]
    Timeout {
        port: u16,
        timeout: Duration,
        tail: String,
    },
}

/// A code-server that answers HTTP.
pub struct CodeServer {
    process: ChildTree,
    listener: Listener,
    output: OutputTail,
}

impl CodeServer {
    /// The number Kandan addresses it by.
    pub fn port(&self) -> u16 {
        self.listener.port()
    }

    /// Where the forwarder dials that number.
    pub fn endpoint(&self) -> Endpoint {
        self.listener.endpoint()
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The last lines it printed.
    pub fn output(&self) -> String {
        self.output.text()
    }

    /// Resolves when it exits.
    pub async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.process.wait().await
    }

    /// SIGINT (code-server cleans up its sockets on it), then SIGKILL after the grace.
    pub async fn stop(&mut self) {
        self.process.terminate(Signal::Interrupt, STOP_GRACE).await;
    }
}

/// Starts code-server where only the runner reaches it and waits until it answers
/// `/healthz`.
pub async fn launch(spec: &LaunchSpec) -> Result<CodeServer, LaunchError> {
    spec.prepare()?;
    let mut last_error = None;
    for _ in 0..PORT_ATTEMPTS {
        match launch_on(spec, Listener::open(spec.isolation)?).await {
            // Another process took the port between our probe and code-server's bind.
            Err(LaunchError::PortInUse { port }) => {
                last_error = Some(LaunchError::PortInUse { port });
            }
            other => return other,
        }
    }
    Err(last_error
        .unwrap_or_else(|| ListenError::NoPort(std::io::ErrorKind::AddrInUse.into()).into()))
}

async fn launch_on(spec: &LaunchSpec, listener: Listener) -> Result<CodeServer, LaunchError> {
    let port = listener.port();
    let health = health_check(&listener)?;
    let mut command = spec.command();
    listener.configure(&mut command);
    command
        .args([
            // Its /proxy/<port> routes would reach any local port, past the approvals.
            "--disable-proxy",
            "--disable-telemetry",
            "--disable-update-check",
            "--disable-workspace-trust",
            "--disable-getting-started-override",
            "--ignore-last-opened",
        ])
        .arg(&spec.cwd)
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut process = ChildTree::spawn(command).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => {
            LaunchError::NotFound(spec.code_server_bin.display().to_string())
        }
        _ => LaunchError::Io(error),
    })?;
    let output =
        process.capture_output(OUTPUT_TAIL, |line| debug!(target: "code_server", "{line}"));
    let local = LocalHttp::default();
    match process
        .wait_ready(READY_TIMEOUT, READY_POLL, || healthy(&local, &health))
        .await
    {
        Readiness::Ready => Ok(CodeServer {
            process,
            listener,
            output,
        }),
        Readiness::Exited(_) if output.text().contains("EADDRINUSE") => {
            Err(LaunchError::PortInUse { port })
        }
        Readiness::Exited(status) => Err(LaunchError::Exited {
            status,
            tail: output.text(),
        }),
        Readiness::TimedOut => Err(LaunchError::Timeout {
            port,
            timeout: READY_TIMEOUT,
            tail: output.text(),
        }),
    }
}

/// `GET /healthz` as the forwarder sends it to the listener: through the same guard
/// and to the same endpoint as Kandan's requests.
fn health_check(listener: &Listener) -> Result<LocalTarget, LaunchError> {
    let mut routes = Routes::default();
    routes.allow(listener.port(), listener.endpoint());
    guard::admit(&routes, listener.port(), "/healthz", None, Vec::new())
        .map_err(|refused| LaunchError::Io(std::io::Error::other(refused.to_string())))
}

/// Whether code-server answers its health check with a success.
async fn healthy(local: &LocalHttp, health: &LocalTarget) -> bool {
    let answer = local
        .once(
            health,
            "GET",
            Bytes::new(),
            64 * 1024,
            Duration::from_secs(2),
        )
        .await;
    matches!(answer, Ok(response) if (200..300).contains(&response.status))
}

/// A port nothing listens on right now, from the OS.
pub fn free_loopback_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// The browser path that opens `cwd` in code-server.
pub fn browser_path(cwd: &Path) -> String {
    let folder: String =
        url::form_urlencoded::byte_serialize(cwd.to_string_lossy().as_bytes()).collect();
    format!("/?folder={folder}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_opens_the_folder() {
        assert_eq!(
            browser_path(Path::new("/home/ada/my app")),
            "/?folder=%2Fhome%2Fada%2Fmy+app"
        );
    }

    #[tokio::test]
    async fn a_missing_code_server_says_what_to_do() {
        let dir =
            std::env::temp_dir().join(format!("linzumi-editor-missing-{}", std::process::id()));
        let spec = LaunchSpec {
            code_server_bin: "/nonexistent/code-server".into(),
            cwd: std::env::temp_dir(),
            data_dir: dir.clone(),
            isolation: Isolation::of_this_platform(),
        };
        let error = launch(&spec).await.err().unwrap();
        assert!(error.to_string().contains("--code-server-bin"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn an_editor_that_dies_at_start_reports_its_output_and_a_taken_port_is_named() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("linzumi-editor-dies-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("code-server");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho \"error: $5 is not a folder\" >&2\nexit 2\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let spec = LaunchSpec {
            code_server_bin: fake.clone(),
            cwd: std::env::temp_dir(),
            data_dir: dir.join("data"),
            isolation: Isolation::of_this_platform(),
        };
        let error = launch(&spec).await.err().unwrap();
        let text = error.to_string();
        assert!(text.contains("exited before it was ready"), "{text}");
        assert!(text.contains("is not a folder"), "{text}");
        assert!(dir.join("data/config.yaml").exists());

        std::fs::write(
            &fake,
            "#!/bin/sh\necho 'Error: listen EADDRINUSE: address already in use' >&2\nexit 1\n",
        )
        .unwrap();
        let error = launch(&spec).await.err().unwrap();
        assert!(matches!(error, LaunchError::PortInUse { .. }), "{error}");
        assert!(error.to_string().contains("the port is in use"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
