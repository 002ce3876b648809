//! Running a started runner until the person stops it (Ctrl-C, SIGTERM, or quitting the
//! Codex TUI), reporting what happens on the way, then ending everything it started.
use std::path::Path;
use std::process::ExitCode;

use linzumi_engine::process_tree::{self, Signal};
use linzumi_engine::runner::{Runner, RunnerEvent};
use tokio::process::{Child, Command};

/// SIGINT/SIGTERM handlers, installed before anything is started so that a signal that
/// arrives while Codex and the chat session are still starting stops them cleanly
/// instead of killing the process with children left behind.
pub struct Shutdown {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Shutdown {
    pub fn install() -> Shutdown {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Shutdown {
                terminate: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        Shutdown {}
    }

    /// Resolves with the signal's name.
    pub async fn wait(&mut self) -> String {
        #[cfg(unix)]
        if let Some(terminate) = self.terminate.as_mut() {
            return tokio::select! {
                _ = tokio::signal::ctrl_c() => "Ctrl-C".into(),
                _ = terminate.recv() => "SIGTERM".into(),
            };
        }
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C".into()
    }
}

pub async fn run(
    mut runner: Runner,
    launch_tui: Option<(&str, &Path)>,
    mut shutdown: Shutdown,
) -> ExitCode {
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
    let mut tui = match launch_tui {
        Some((codex_bin, cwd)) => match open_tui(codex_bin, &codex.url, cwd) {
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
    let reason = loop {
        tokio::select! {
            signal = shutdown.wait() => break signal,
            status = wait_tui(&mut tui) => break format!("the Codex TUI exited ({status})"),
            event = events.recv() => if let Ok(event) = event { report(&event) },
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
    ExitCode::SUCCESS
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
        RunnerEvent::ApprovalWithdrawn { .. }
        | RunnerEvent::TurnFinished { .. }
        | RunnerEvent::Stopped => {}
    }
}

/// `codex --remote <url> -C <cwd>`: the TUI on the runner's own app-server, in this
/// terminal.
fn open_tui(codex_bin: &str, url: &str, cwd: &Path) -> std::io::Result<Child> {
    Command::new(codex_bin)
        .args(["--remote", url, "-C"])
        .arg(cwd)
        .kill_on_drop(true)
        .spawn()
}

async fn wait_tui(tui: &mut Option<Child>) -> String {
    match tui {
        Some(child) => child
            .wait()
            .await
            .map_or_else(|error| error.to_string(), |status| status.to_string()),
        None => std::future::pending().await,
    }
}
