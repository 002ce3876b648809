//! Running a started runner until the person stops it (Ctrl-C, SIGTERM, or quitting the
//! Codex TUI), reporting what happens on the way, then ending everything it started.
use std::path::Path;
use std::process::ExitCode;

use crate::editor_progress::EditorProgress;
use linzumi_engine::process_tree::{self, Signal};
use linzumi_engine::runner::{CodexEndpoint, RevokeReason, Runner, RunnerEvent};
use linzumi_engine::secrets;
use tokio::process::{Child, Command};

/// SIGINT/SIGTERM/SIGHUP handlers, installed before anything is started so that a
/// signal that arrives while Codex and the chat session are still starting stops them
/// cleanly instead of killing the process with children left behind. SIGHUP is the
/// terminal window closing. Windows has console control events instead: Ctrl-C,
/// Ctrl-Break, and CTRL_CLOSE_EVENT for the console window closing (after which Windows
/// allows the process about five seconds).
pub struct Shutdown {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    hangup: Option<tokio::signal::unix::Signal>,
    #[cfg(windows)]
    ctrl_break: Option<tokio::signal::windows::CtrlBreak>,
    #[cfg(windows)]
    ctrl_close: Option<tokio::signal::windows::CtrlClose>,
}

impl Shutdown {
    pub fn install() -> Shutdown {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Shutdown {
                terminate: signal(SignalKind::terminate()).ok(),
                hangup: signal(SignalKind::hangup()).ok(),
            }
        }
        #[cfg(windows)]
        {
            use tokio::signal::windows::{ctrl_break, ctrl_close};
            Shutdown {
                ctrl_break: ctrl_break().ok(),
                ctrl_close: ctrl_close().ok(),
            }
        }
        #[cfg(not(any(unix, windows)))]
        Shutdown {}
    }

    /// Resolves with the signal's name.
    pub async fn wait(&mut self) -> String {
        #[cfg(unix)]
        if let (Some(terminate), Some(hangup)) = (self.terminate.as_mut(), self.hangup.as_mut()) {
            return tokio::select! {
                _ = tokio::signal::ctrl_c() => "Ctrl-C".into(),
                _ = terminate.recv() => "SIGTERM".into(),
                _ = hangup.recv() => "SIGHUP (the terminal closed)".into(),
            };
        }
        #[cfg(windows)]
        if let (Some(ctrl_break), Some(ctrl_close)) =
            (self.ctrl_break.as_mut(), self.ctrl_close.as_mut())
        {
            return tokio::select! {
                _ = tokio::signal::ctrl_c() => "Ctrl-C".into(),
                _ = ctrl_break.recv() => "Ctrl-Break".into(),
                _ = ctrl_close.recv() => "the console window closed".into(),
            };
        }
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C".into()
    }
}

/// How to open the Codex TUI next to the runner.
pub struct Tui<'a> {
    pub codex_bin: &'a str,
    pub cwd: &'a Path,
    /// The app-server's environment (its CODEX_HOME), so both read the same config.
    pub env: Vec<(String, String)>,
}

pub async fn run(mut runner: Runner, tui: Option<Tui<'_>>, mut shutdown: Shutdown) -> ExitCode {
    let chat_thread = runner.chat_codex_thread_id();
    let codex = runner.codex();
    eprintln!(
        "Linzumi runner {} is connected to Kandan (instance {}).",
        runner.runner_id(),
        runner.instance_id()
    );
    eprintln!("Codex app-server: {}", codex.url);
    if let Some(log) = runner.log_file() {
        eprintln!("Event log: {}", log.display());
    }
    let mut tui = match tui {
        Some(tui) => match open_tui(&tui, &codex, chat_thread.as_deref()) {
            Ok(child) => Some(child),
            Err(error) => {
                eprintln!("Could not open the Codex TUI: {error}");
                runner.stop().await;
                return ExitCode::FAILURE;
            }
        },
        None => {
            eprintln!("Press Ctrl-C to stop.");
            None
        }
    };

    let mut events = runner.events();
    let mut editor = EditorProgress::default();
    let mut code = ExitCode::SUCCESS;
    let reason = loop {
        tokio::select! {
            signal = shutdown.wait() => break signal,
            status = wait_tui(&mut tui) => break format!("the Codex TUI exited ({status})"),
            event = events.recv() => match event {
                Ok(RunnerEvent::EditorRuntime(update)) => editor.update(&update),
                // Kandan will not take this token again: running on without it helps nobody.
                Ok(RunnerEvent::KandanUnauthorized { reason }) => {
                    code = ExitCode::FAILURE;
                    break format!(
                        "Kandan no longer accepts your sign-in ({reason}); run `linzumi auth` and start again"
                    );
                }
                Ok(event) => report(&event),
                Err(_) => {}
            },
        }
    };
    eprintln!("Stopping: {reason}.");
    if let Some(child) = tui.as_mut()
        && let Some(pid) = child.id()
    {
        process_tree::signal(&process_tree::tree(pid), Signal::Terminate);
        let _ = child.wait().await;
    }
    runner.stop().await;
    eprintln!("Stopped; Codex and everything it started have ended.");
    code
}

fn report(event: &RunnerEvent) {
    match event {
        RunnerEvent::KandanOffline { reason } => {
            eprintln!("Lost the connection to Kandan ({reason}); reconnecting.");
        }
        RunnerEvent::KandanOnline => eprintln!("Reconnected to Kandan."),
        RunnerEvent::CodexLost { message } => eprintln!("{message}; restarting Codex."),
        RunnerEvent::CodexReady { url, .. } => eprintln!("Codex app-server ready: {url}"),
        RunnerEvent::ApprovalRequested {
            request_id,
            summary,
            ..
        } => eprintln!("Codex asks for approval ({request_id}): {summary} — answer in Kandan."),
        RunnerEvent::ApprovalResolved {
            request_id,
            approved,
            by,
        } => eprintln!(
            "Approval {request_id} {} by {by}.",
            if *approved { "granted" } else { "denied" }
        ),
        RunnerEvent::PortForwardRequested {
            request_id,
            port,
            command,
            ..
        } => eprintln!(
            "{command} is listening on port {port}; approve or deny the preview in Kandan ({request_id})."
        ),
        RunnerEvent::PortForwardResolved {
            request_id,
            approved,
            by,
        } => eprintln!(
            "Port-forward {request_id} {} by {by}.",
            if *approved { "approved" } else { "denied" }
        ),
        RunnerEvent::PortForwardRevoked { port, reason } => match reason {
            RevokeReason::ListenerChanged => {
                eprintln!("Port {port} is no longer forwarded: another process listens on it now.")
            }
            RevokeReason::StoppedByOwner => eprintln!("The preview of port {port} was stopped."),
        },
        RunnerEvent::FolderMissing { path } => eprintln!(
            "The shared folder {} is gone (moved or deleted); Codex starts no turn until it is back where it was.",
            path.display()
        ),
        RunnerEvent::EditorStarted { port, .. } => {
            eprintln!("The editor is running; Kandan opens it as port {port} of this runner.");
        }
        RunnerEvent::EditorExited { reason } => eprintln!("The editor stopped: {reason}"),
        RunnerEvent::ApprovalWithdrawn { .. }
        | RunnerEvent::KandanUnauthorized { .. }
        | RunnerEvent::TurnStarted { .. }
        | RunnerEvent::TurnFinished { .. }
        | RunnerEvent::EditorRuntime(_)
        | RunnerEvent::Stopped => {}
    }
}

/// The Codex TUI on the runner's own app-server, in this terminal: on the chat's Codex
/// thread when a chat session is bound (`codex resume <thread> --remote <url>`), so
/// what is typed there is mirrored into the Kandan thread. The app-server's capability
/// token reaches it through its environment, never its command line.
fn open_tui(tui: &Tui<'_>, codex: &CodexEndpoint, thread: Option<&str>) -> std::io::Result<Child> {
    let mut command = Command::new(tui.codex_bin);
    if let Some(thread) = thread {
        command.args(["resume", thread]);
    }
    command.args(["--remote", &codex.url]);
    if let Some(token) = &codex.token {
        command
            .args(["--remote-auth-token-env", TUI_TOKEN_ENV])
            .env(TUI_TOKEN_ENV, token.expose());
    }
    command
        .arg("-C")
        .arg(tui.cwd)
        .envs(tui.env.iter().map(|(key, value)| (key, value)));
    secrets::clear_from_environment(command.as_std_mut());
    command.kill_on_drop(true).spawn()
}

/// The variable that carries the app-server's token to the TUI.
const TUI_TOKEN_ENV: &str = "LINZUMI_CODEX_REMOTE_TOKEN";

async fn wait_tui(tui: &mut Option<Child>) -> String {
    match tui {
        Some(child) => child
            .wait()
            .await
            .map_or_else(|error| error.to_string(), |status| status.to_string()),
        None => std::future::pending().await,
    }
}
