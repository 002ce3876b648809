//! What each shared folder is doing, and what the tray icon shows for all of them.
//!
//! A pure state machine: the shell feeds it [`FolderInput`]s (its own lifecycle steps and
//! the engine's [`RunnerEvent`]s) and renders [`FolderStatus`] and [`TrayState`]. No I/O
//! and no clock, so every transition is unit-tested here, and each step returns the
//! sentence for the activity log ([`Note`]) computed from the state *before* the step
//! (a port-forward answer names the port that was asked about).
//!
//! The state shown is derived, in this order of precedence:
//! stopped / error (start failed) / connecting, then for a running folder:
//! awaiting_approval (an approval or port prompt is pending) > error (Codex was lost and
//! has not come back) > offline (Kandan is unreachable) > working (a turn runs) > ready.
use std::collections::BTreeSet;

use linzumi_engine::codex::protocol::server_requests;
use linzumi_engine::editor::runtime::{RuntimeState, RuntimeStatus};
use linzumi_engine::editor::runtime_source::RuntimeUpdate;
use linzumi_engine::runner::RunnerEvent;
use serde::Serialize;

/// What one folder shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FolderState {
    Connecting,
    Ready,
    Working,
    AwaitingApproval,
    Offline,
    Error,
    Stopped,
}

/// What the tray icon shows for all folders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrayState {
    Idle,
    Working,
    Attention,
    Offline,
}

/// attention if any folder awaits an answer or failed, else offline if any is offline,
/// else working if any works, else idle.
pub fn tray_state<'a>(folders: impl IntoIterator<Item = &'a FolderStatus>) -> TrayState {
    let states: Vec<FolderState> = folders.into_iter().map(FolderStatus::state).collect();
    if states
        .iter()
        .any(|state| matches!(state, FolderState::AwaitingApproval | FolderState::Error))
    {
        TrayState::Attention
    } else if states.contains(&FolderState::Offline) {
        TrayState::Offline
    } else if states.contains(&FolderState::Working) {
        TrayState::Working
    } else {
        TrayState::Idle
    }
}

/// One step for a folder's state machine.
#[derive(Debug, Clone, PartialEq)]
pub enum FolderInput {
    /// The shell is starting the folder's runner (also on a restart).
    Connecting,
    /// `Runner::start` returned: joined Kandan, Codex ready.
    Started {
        runner_id: String,
        instance_id: String,
    },
    StartFailed {
        message: String,
    },
    /// The shell stopped the runner (the engine's own `Stopped` works the same).
    Stopped,
    Runner(RunnerEvent),
}

impl From<RunnerEvent> for FolderInput {
    fn from(event: RunnerEvent) -> FolderInput {
        FolderInput::Runner(event)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingApprovalView {
    pub request_id: String,
    /// The Codex method, e.g. `item/commandExecution/requestApproval`.
    pub kind: String,
    pub summary: String,
    pub reason: Option<String>,
}

impl PendingApprovalView {
    /// "Codex asks to run `npm test`".
    pub fn sentence(&self) -> String {
        match self.kind.as_str() {
            server_requests::COMMAND_APPROVAL => format!("Codex asks to run `{}`", self.summary),
            server_requests::FILE_CHANGE_APPROVAL => {
                format!("Codex asks to change files: {}", self.summary)
            }
            server_requests::PERMISSIONS_APPROVAL => {
                format!("Codex asks for permissions: {}", self.summary)
            }
            _ => format!("Codex asks for approval: {}", self.summary),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortPromptView {
    pub request_id: String,
    pub port: u16,
    pub command: String,
    pub cwd: Option<String>,
}

impl PortPromptView {
    /// "`npm run dev` listens on port 5173: share it with Kandan?".
    pub fn sentence(&self) -> String {
        format!(
            "`{}` listens on port {}: share it with Kandan?",
            self.command, self.port
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EditorView {
    pub running: bool,
    pub port: Option<u16>,
    /// Opens the shared folder (`/?folder=…`), for the local browser.
    pub path: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivityLevel {
    Info,
    Warning,
    Error,
}

/// A sentence for the activity log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub level: ActivityLevel,
    pub text: String,
}

impl Note {
    fn info(text: impl Into<String>) -> Option<Note> {
        Some(Note {
            level: ActivityLevel::Info,
            text: text.into(),
        })
    }

    fn warning(text: impl Into<String>) -> Option<Note> {
        Some(Note {
            level: ActivityLevel::Warning,
            text: text.into(),
        })
    }

    fn error(text: impl Into<String>) -> Option<Note> {
        Some(Note {
            level: ActivityLevel::Error,
            text: text.into(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
enum Lifecycle {
    /// Never started, or stopped.
    #[default]
    Stopped,
    Connecting,
    Running,
    Failed(String),
}

/// One folder's state; see the module documentation for how [`Self::state`] is derived.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FolderStatus {
    lifecycle: Lifecycle,
    kandan_offline: Option<String>,
    codex_lost: Option<String>,
    working: bool,
    pub runner_id: Option<String>,
    pub instance_id: Option<String>,
    pub approvals: Vec<PendingApprovalView>,
    pub port_prompts: Vec<PortPromptView>,
    /// Ports forwarded after an approval, ascending.
    pub forwarded_ports: Vec<u16>,
    pub editor_runtime: Option<RuntimeStatus>,
    pub editor: Option<EditorView>,
}

impl FolderStatus {
    pub fn new() -> FolderStatus {
        FolderStatus::default()
    }

    pub fn state(&self) -> FolderState {
        match self.lifecycle {
            Lifecycle::Stopped => FolderState::Stopped,
            Lifecycle::Failed(_) => FolderState::Error,
            Lifecycle::Connecting => FolderState::Connecting,
            Lifecycle::Running => {
                if !self.approvals.is_empty() || !self.port_prompts.is_empty() {
                    FolderState::AwaitingApproval
                } else if self.codex_lost.is_some() {
                    FolderState::Error
                } else if self.kandan_offline.is_some() {
                    FolderState::Offline
                } else if self.working {
                    FolderState::Working
                } else {
                    FolderState::Ready
                }
            }
        }
    }

    /// A sentence about the state, when there is more to say than its name.
    pub fn detail(&self) -> Option<String> {
        match (&self.lifecycle, self.state()) {
            (Lifecycle::Failed(message), _) => Some(message.clone()),
            (_, FolderState::AwaitingApproval) => self
                .approvals
                .first()
                .map(PendingApprovalView::sentence)
                .or_else(|| self.port_prompts.first().map(PortPromptView::sentence)),
            (_, FolderState::Error) => self
                .codex_lost
                .as_ref()
                .map(|message| format!("Codex stopped ({message}); restarting it")),
            (_, FolderState::Offline) => self
                .kandan_offline
                .as_ref()
                .map(|reason| format!("Kandan is unreachable ({reason}); reconnecting")),
            _ => None,
        }
    }

    /// Applies one step; returns the activity-log sentence for it, if any.
    pub fn apply(&mut self, input: FolderInput) -> Option<Note> {
        match input {
            FolderInput::Connecting => {
                *self = FolderStatus {
                    lifecycle: Lifecycle::Connecting,
                    editor_runtime: self.editor_runtime.take(),
                    ..FolderStatus::default()
                };
                Note::info("Connecting to Kandan…")
            }
            FolderInput::Started {
                runner_id,
                instance_id,
            } => {
                let note = Note::info(format!("Shared with Kandan as runner {runner_id}"));
                self.lifecycle = Lifecycle::Running;
                self.runner_id = Some(runner_id);
                self.instance_id = Some(instance_id);
                note
            }
            FolderInput::StartFailed { message } => {
                let note = Note::error(format!("Could not start sharing: {message}"));
                self.clear_session();
                self.lifecycle = Lifecycle::Failed(message);
                note
            }
            FolderInput::Stopped | FolderInput::Runner(RunnerEvent::Stopped) => {
                if self.lifecycle == Lifecycle::Stopped {
                    return None;
                }
                self.clear_session();
                self.lifecycle = Lifecycle::Stopped;
                Note::info("Stopped sharing")
            }
            FolderInput::Runner(event) => {
                if self.lifecycle != Lifecycle::Running {
                    // Late events from a runner that is gone must not revive the folder.
                    return None;
                }
                self.apply_event(event)
            }
        }
    }

    fn clear_session(&mut self) {
        self.kandan_offline = None;
        self.codex_lost = None;
        self.working = false;
        self.approvals.clear();
        self.port_prompts.clear();
        self.forwarded_ports.clear();
        self.editor = None;
    }

    fn apply_event(&mut self, event: RunnerEvent) -> Option<Note> {
        match event {
            RunnerEvent::KandanOffline { reason } => {
                let note = Note::warning(format!(
                    "Lost the connection to Kandan ({reason}); reconnecting"
                ));
                self.kandan_offline = Some(reason);
                note
            }
            RunnerEvent::KandanOnline => self
                .kandan_offline
                .take()
                .and_then(|_| Note::info("Reconnected to Kandan")),
            RunnerEvent::CodexLost { message } => {
                let note = Note::error(format!("Codex stopped ({message}); restarting it"));
                self.codex_lost = Some(message);
                self.working = false;
                note
            }
            RunnerEvent::CodexReady { .. } => self
                .codex_lost
                .take()
                .and_then(|_| Note::info("Codex is running again")),
            RunnerEvent::ApprovalRequested {
                request_id,
                kind,
                summary,
                reason,
            } => {
                self.approvals
                    .retain(|pending| pending.request_id != request_id);
                let view = PendingApprovalView {
                    request_id,
                    kind,
                    summary,
                    reason,
                };
                let note = Note::warning(view.sentence());
                self.approvals.push(view);
                note
            }
            RunnerEvent::ApprovalResolved {
                request_id,
                approved,
                by,
            } => {
                let index = self
                    .approvals
                    .iter()
                    .position(|pending| pending.request_id == request_id)?;
                let view = self.approvals.remove(index);
                let answer = if approved { "approved" } else { "declined" };
                Note::info(format!("{} — {answer} by {by}", view.sentence()))
            }
            RunnerEvent::ApprovalWithdrawn { request_id } => {
                let index = self
                    .approvals
                    .iter()
                    .position(|pending| pending.request_id == request_id)?;
                let view = self.approvals.remove(index);
                Note::info(format!("{} — no longer needed", view.sentence()))
            }
            RunnerEvent::TurnStarted { seq } => {
                self.working = true;
                Note::info(format!("Codex is working on message #{seq}"))
            }
            RunnerEvent::TurnFinished { seq, status } => {
                self.working = false;
                if status == "failed" {
                    Note::error(format!("Message #{seq} failed"))
                } else {
                    Note::info(format!("Codex finished message #{seq}"))
                }
            }
            RunnerEvent::PortForwardRequested {
                request_id,
                port,
                command,
                cwd,
            } => {
                self.port_prompts
                    .retain(|pending| pending.request_id != request_id);
                let view = PortPromptView {
                    request_id,
                    port,
                    command,
                    cwd,
                };
                let note = Note::warning(view.sentence());
                self.port_prompts.push(view);
                note
            }
            RunnerEvent::PortForwardResolved {
                request_id,
                approved,
                by,
            } => {
                let index = self
                    .port_prompts
                    .iter()
                    .position(|pending| pending.request_id == request_id)?;
                let view = self.port_prompts.remove(index);
                if approved {
                    let mut ports: BTreeSet<u16> = self.forwarded_ports.drain(..).collect();
                    ports.insert(view.port);
                    self.forwarded_ports = ports.into_iter().collect();
                    Note::info(format!("Port {} approved by {by}", view.port))
                } else {
                    Note::info(format!("Port {} declined by {by}", view.port))
                }
            }
            RunnerEvent::PortForwardRevoked { port } => {
                let before = self.forwarded_ports.len();
                self.forwarded_ports.retain(|forwarded| *forwarded != port);
                (self.forwarded_ports.len() != before).then_some(())?;
                Note::warning(format!(
                    "Port {port} is no longer shared: another program listens on it now"
                ))
            }
            RunnerEvent::EditorRuntime(update) => self.apply_runtime(update),
            RunnerEvent::EditorStarted { port, path } => {
                self.editor = Some(EditorView {
                    running: true,
                    port: Some(port),
                    path: Some(path),
                });
                Note::info(format!("The editor is open on port {port}"))
            }
            RunnerEvent::EditorExited { reason } => {
                self.editor = Some(EditorView {
                    running: false,
                    port: None,
                    path: None,
                });
                // The reason carries code-server's last output; its first line says enough.
                let first = reason.lines().next().unwrap_or("it exited");
                Note::warning(format!("The editor stopped: {first}"))
            }
            RunnerEvent::Stopped => None, // handled with FolderInput::Stopped
        }
    }

    fn apply_runtime(&mut self, update: RuntimeUpdate) -> Option<Note> {
        match update {
            RuntimeUpdate::Status(status) => {
                let before = self.editor_runtime.as_ref().map(|status| status.state);
                let note = if before == Some(status.state) {
                    None
                } else {
                    match status.state {
                        RuntimeState::Downloading => Note::info("Downloading the editor…"),
                        RuntimeState::Ready => Note::info(match &status.version {
                            Some(version) => format!("The editor (code-server {version}) is ready"),
                            None => "The editor is ready".to_owned(),
                        }),
                        RuntimeState::Failed => Note::warning(match &status.detail {
                            Some(detail) => format!("The editor could not be installed: {detail}"),
                            None => "The editor could not be installed".to_owned(),
                        }),
                        RuntimeState::Missing
                        | RuntimeState::Unsupported
                        | RuntimeState::Custom => None,
                    }
                };
                self.editor_runtime = Some(status);
                note
            }
            RuntimeUpdate::Progress { received, total } => {
                let status = self
                    .editor_runtime
                    .get_or_insert_with(RuntimeStatus::default);
                status.state = RuntimeState::Downloading;
                if total > 0 {
                    status.progress = Some((received as f64 / total as f64).clamp(0.0, 1.0));
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMAND: &str = server_requests::COMMAND_APPROVAL;

    fn running() -> FolderStatus {
        let mut status = FolderStatus::new();
        status.apply(FolderInput::Connecting);
        status.apply(FolderInput::Started {
            runner_id: "desktop-1".into(),
            instance_id: "i-1".into(),
        });
        status
    }

    fn started(seq: i64) -> FolderInput {
        RunnerEvent::TurnStarted { seq }.into()
    }

    fn editor_started(port: u16) -> FolderInput {
        RunnerEvent::EditorStarted {
            port,
            path: "/?folder=/w".into(),
        }
        .into()
    }

    fn approval(id: &str, summary: &str) -> FolderInput {
        FolderInput::Runner(RunnerEvent::ApprovalRequested {
            request_id: id.into(),
            kind: COMMAND.into(),
            summary: summary.into(),
            reason: Some("tests".into()),
        })
    }

    fn port_prompt(id: &str, port: u16) -> FolderInput {
        FolderInput::Runner(RunnerEvent::PortForwardRequested {
            request_id: id.into(),
            port,
            command: "npm run dev".into(),
            cwd: Some("/src/app".into()),
        })
    }

    fn text(note: Option<Note>) -> String {
        note.map(|note| note.text).unwrap_or_default()
    }

    fn level(note: Option<Note>) -> Option<ActivityLevel> {
        note.map(|note| note.level)
    }

    #[test]
    fn lifecycle() {
        let mut status = FolderStatus::new();
        assert_eq!(status.state(), FolderState::Stopped);
        assert_eq!(
            text(status.apply(FolderInput::Connecting)),
            "Connecting to Kandan…"
        );
        assert_eq!(status.state(), FolderState::Connecting);
        let note = status.apply(FolderInput::Started {
            runner_id: "desktop-1".into(),
            instance_id: "i-1".into(),
        });
        assert_eq!(text(note), "Shared with Kandan as runner desktop-1");
        assert_eq!(status.state(), FolderState::Ready);
        assert_eq!(status.runner_id.as_deref(), Some("desktop-1"));
        assert_eq!(status.instance_id.as_deref(), Some("i-1"));
        assert_eq!(status.detail(), None);
        assert_eq!(text(status.apply(FolderInput::Stopped)), "Stopped sharing");
        assert_eq!(status.state(), FolderState::Stopped);
        assert_eq!(status.apply(FolderInput::Stopped), None, "said once");
    }

    #[test]
    fn start_failure_is_an_error_with_the_message() {
        let mut status = FolderStatus::new();
        status.apply(FolderInput::Connecting);
        let note = status.apply(FolderInput::StartFailed {
            message: "codex not found".into(),
        });
        assert_eq!(level(note.clone()), Some(ActivityLevel::Error));
        assert_eq!(text(note), "Could not start sharing: codex not found");
        assert_eq!(status.state(), FolderState::Error);
        assert_eq!(status.detail().as_deref(), Some("codex not found"));
        // A retry starts over.
        status.apply(FolderInput::Connecting);
        assert_eq!(status.state(), FolderState::Connecting);
        assert_eq!(status.detail(), None);
    }

    #[test]
    fn working_until_the_turn_finishes() {
        let mut status = running();
        assert_eq!(
            text(status.apply(started(7))),
            "Codex is working on message #7"
        );
        assert_eq!(status.state(), FolderState::Working);
        let note = status.apply(
            RunnerEvent::TurnFinished {
                seq: 7,
                status: "processed".into(),
            }
            .into(),
        );
        assert_eq!(text(note), "Codex finished message #7");
        assert_eq!(status.state(), FolderState::Ready);
        status.apply(started(8));
        let note = status.apply(
            RunnerEvent::TurnFinished {
                seq: 8,
                status: "failed".into(),
            }
            .into(),
        );
        assert_eq!(level(note.clone()), Some(ActivityLevel::Error));
        assert_eq!(text(note), "Message #8 failed");
        assert_eq!(status.state(), FolderState::Ready);
    }

    #[test]
    fn working_is_ignored_when_not_running() {
        let mut status = FolderStatus::new();
        assert_eq!(status.apply(started(1)), None);
        assert_eq!(status.state(), FolderState::Stopped);
    }

    #[test]
    fn approvals_wait_for_an_answer() {
        let mut status = running();
        status.apply(started(1));
        let note = status.apply(approval("a1", "npm test"));
        assert_eq!(level(note.clone()), Some(ActivityLevel::Warning));
        assert_eq!(text(note), "Codex asks to run `npm test`");
        assert_eq!(status.state(), FolderState::AwaitingApproval);
        assert_eq!(
            status.detail().as_deref(),
            Some("Codex asks to run `npm test`")
        );
        assert_eq!(
            status.approvals,
            [PendingApprovalView {
                request_id: "a1".into(),
                kind: COMMAND.into(),
                summary: "npm test".into(),
                reason: Some("tests".into()),
            }]
        );
        status.apply(approval("a2", "cargo build"));
        status.apply(approval("a2", "cargo build"));
        assert_eq!(status.approvals.len(), 2, "a repeated request is kept once");

        let note = status.apply(
            RunnerEvent::ApprovalResolved {
                request_id: "a1".into(),
                approved: true,
                by: "kandan:ada".into(),
            }
            .into(),
        );
        assert_eq!(
            text(note),
            "Codex asks to run `npm test` — approved by kandan:ada"
        );
        assert_eq!(status.state(), FolderState::AwaitingApproval);
        let note = status.apply(
            RunnerEvent::ApprovalWithdrawn {
                request_id: "a2".into(),
            }
            .into(),
        );
        assert_eq!(
            text(note),
            "Codex asks to run `cargo build` — no longer needed"
        );
        assert_eq!(
            status.state(),
            FolderState::Working,
            "back to the running turn"
        );
        let unknown = status.apply(
            RunnerEvent::ApprovalResolved {
                request_id: "zz".into(),
                approved: false,
                by: "local".into(),
            }
            .into(),
        );
        assert_eq!(unknown, None);
    }

    #[test]
    fn approval_sentences_by_kind() {
        let view = |kind: &str| PendingApprovalView {
            request_id: "r".into(),
            kind: kind.into(),
            summary: "S".into(),
            reason: None,
        };
        assert_eq!(view(COMMAND).sentence(), "Codex asks to run `S`");
        assert_eq!(
            view(server_requests::FILE_CHANGE_APPROVAL).sentence(),
            "Codex asks to change files: S"
        );
        assert_eq!(
            view(server_requests::PERMISSIONS_APPROVAL).sentence(),
            "Codex asks for permissions: S"
        );
        assert_eq!(view("other").sentence(), "Codex asks for approval: S");
        let mut status = running();
        status.apply(FolderInput::Runner(RunnerEvent::ApprovalRequested {
            request_id: "d".into(),
            kind: "item/x".into(),
            summary: "S".into(),
            reason: None,
        }));
        let note = status.apply(
            RunnerEvent::ApprovalResolved {
                request_id: "d".into(),
                approved: false,
                by: "local".into(),
            }
            .into(),
        );
        assert_eq!(text(note), "Codex asks for approval: S — declined by local");
    }

    #[test]
    fn port_prompts_and_forwarded_ports() {
        let mut status = running();
        let note = status.apply(port_prompt("p1", 5173));
        assert_eq!(
            text(note),
            "`npm run dev` listens on port 5173: share it with Kandan?"
        );
        assert_eq!(status.state(), FolderState::AwaitingApproval);
        assert_eq!(
            status.detail().as_deref(),
            Some("`npm run dev` listens on port 5173: share it with Kandan?")
        );
        status.apply(port_prompt("p2", 3000));
        status.apply(port_prompt("p3", 8080));
        let note = status.apply(
            RunnerEvent::PortForwardResolved {
                request_id: "p1".into(),
                approved: true,
                by: "kandan:ada".into(),
            }
            .into(),
        );
        assert_eq!(text(note), "Port 5173 approved by kandan:ada");
        status.apply(
            RunnerEvent::PortForwardResolved {
                request_id: "p2".into(),
                approved: true,
                by: "local".into(),
            }
            .into(),
        );
        let note = status.apply(
            RunnerEvent::PortForwardResolved {
                request_id: "p3".into(),
                approved: false,
                by: "local".into(),
            }
            .into(),
        );
        assert_eq!(text(note), "Port 8080 declined by local");
        assert_eq!(status.forwarded_ports, [3000, 5173]);
        assert!(status.port_prompts.is_empty());
        assert_eq!(status.state(), FolderState::Ready);
        let unknown = RunnerEvent::PortForwardResolved {
            request_id: "p1".into(),
            approved: true,
            by: "local".into(),
        };
        assert_eq!(status.apply(unknown.into()), None);

        let note = status.apply(RunnerEvent::PortForwardRevoked { port: 3000 }.into());
        assert_eq!(level(note.clone()), Some(ActivityLevel::Warning));
        assert_eq!(
            text(note),
            "Port 3000 is no longer shared: another program listens on it now"
        );
        assert_eq!(status.forwarded_ports, [5173]);
        assert_eq!(
            status.apply(RunnerEvent::PortForwardRevoked { port: 3000 }.into()),
            None,
            "already gone"
        );
    }

    #[test]
    fn kandan_offline_and_back() {
        let mut status = running();
        assert_eq!(
            status.apply(RunnerEvent::KandanOnline.into()),
            None,
            "already online"
        );
        let note = status.apply(
            RunnerEvent::KandanOffline {
                reason: "connection refused".into(),
            }
            .into(),
        );
        assert_eq!(level(note.clone()), Some(ActivityLevel::Warning));
        assert_eq!(
            text(note),
            "Lost the connection to Kandan (connection refused); reconnecting"
        );
        assert_eq!(status.state(), FolderState::Offline);
        assert_eq!(
            status.detail().as_deref(),
            Some("Kandan is unreachable (connection refused); reconnecting")
        );
        // A pending prompt still wins: it needs the user.
        status.apply(approval("a", "ls"));
        assert_eq!(status.state(), FolderState::AwaitingApproval);
        status.apply(
            RunnerEvent::ApprovalWithdrawn {
                request_id: "a".into(),
            }
            .into(),
        );
        status.apply(started(1));
        assert_eq!(
            status.state(),
            FolderState::Offline,
            "offline beats working"
        );
        assert_eq!(
            text(status.apply(RunnerEvent::KandanOnline.into())),
            "Reconnected to Kandan"
        );
        assert_eq!(status.state(), FolderState::Working);
    }

    #[test]
    fn codex_lost_and_ready_again() {
        let mut status = running();
        status.apply(started(1));
        let note = status.apply(
            RunnerEvent::CodexLost {
                message: "exited with 9".into(),
            }
            .into(),
        );
        assert_eq!(level(note.clone()), Some(ActivityLevel::Error));
        assert_eq!(text(note), "Codex stopped (exited with 9); restarting it");
        assert_eq!(status.state(), FolderState::Error);
        assert_eq!(
            status.detail().as_deref(),
            Some("Codex stopped (exited with 9); restarting it")
        );
        status.apply(RunnerEvent::KandanOffline { reason: "x".into() }.into());
        assert_eq!(status.state(), FolderState::Error, "error beats offline");
        status.apply(RunnerEvent::KandanOnline.into());
        let ready = RunnerEvent::CodexReady {
            url: "ws://127.0.0.1:1".into(),
            pid: Some(1),
        };
        assert_eq!(
            text(status.apply(ready.clone().into())),
            "Codex is running again"
        );
        assert_eq!(status.state(), FolderState::Ready, "the lost turn is over");
        assert_eq!(status.apply(ready.into()), None);
    }

    #[test]
    fn stopping_clears_the_session_and_ignores_late_events() {
        let mut status = running();
        status.apply(approval("a", "ls"));
        status.apply(port_prompt("p", 5173));
        status.apply(editor_started(8443));
        let note = status.apply(RunnerEvent::Stopped.into());
        assert_eq!(text(note), "Stopped sharing");
        assert_eq!(status.state(), FolderState::Stopped);
        assert!(status.approvals.is_empty() && status.port_prompts.is_empty());
        assert!(status.forwarded_ports.is_empty());
        assert_eq!(status.editor, None);
        assert_eq!(status.apply(approval("late", "ls")), None);
        assert_eq!(
            status.apply(RunnerEvent::KandanOffline { reason: "x".into() }.into()),
            None
        );
        assert_eq!(status.state(), FolderState::Stopped);
        // Events before Started are ignored too.
        status.apply(FolderInput::Connecting);
        assert_eq!(status.apply(approval("early", "ls")), None);
        assert_eq!(status.state(), FolderState::Connecting);
    }

    #[test]
    fn editor_and_its_runtime() {
        let mut status = running();
        let note = status.apply(editor_started(8443));
        assert_eq!(text(note), "The editor is open on port 8443");
        assert_eq!(
            status.editor,
            Some(EditorView {
                running: true,
                port: Some(8443),
                path: Some("/?folder=/w".into()),
            })
        );
        let note = status.apply(
            RunnerEvent::EditorExited {
                reason: "code-server exited (signal: 9); its last output:\nboom".into(),
            }
            .into(),
        );
        assert_eq!(level(note.clone()), Some(ActivityLevel::Warning));
        assert_eq!(
            text(note),
            "The editor stopped: code-server exited (signal: 9); its last output:"
        );
        assert_eq!(
            status.editor.as_ref().map(|editor| editor.running),
            Some(false)
        );

        let downloading = RuntimeStatus {
            state: RuntimeState::Downloading,
            ..RuntimeStatus::default()
        };
        let note =
            status.apply(RunnerEvent::EditorRuntime(RuntimeUpdate::Status(downloading)).into());
        assert_eq!(text(note), "Downloading the editor…");
        let note = status.apply(
            RunnerEvent::EditorRuntime(RuntimeUpdate::Progress {
                received: 25,
                total: 100,
            })
            .into(),
        );
        assert_eq!(note, None);
        assert_eq!(status.editor_runtime.as_ref().unwrap().progress, Some(0.25));
        let ready = RuntimeStatus {
            state: RuntimeState::Ready,
            version: Some("4.100.3".into()),
            ..RuntimeStatus::default()
        };
        let note =
            status.apply(RunnerEvent::EditorRuntime(RuntimeUpdate::Status(ready.clone())).into());
        assert_eq!(text(note), "The editor (code-server 4.100.3) is ready");
        assert_eq!(status.editor_runtime, Some(ready.clone()));
        assert_eq!(
            status.apply(RunnerEvent::EditorRuntime(RuntimeUpdate::Status(ready)).into()),
            None,
            "no news"
        );
        let failed = RuntimeStatus {
            state: RuntimeState::Failed,
            detail: Some("checksum mismatch".into()),
            ..RuntimeStatus::default()
        };
        let note = status.apply(RunnerEvent::EditorRuntime(RuntimeUpdate::Status(failed)).into());
        assert_eq!(level(note.clone()), Some(ActivityLevel::Warning));
        assert_eq!(
            text(note),
            "The editor could not be installed: checksum mismatch"
        );
        assert_eq!(
            status.state(),
            FolderState::Ready,
            "the editor does not change the state"
        );
        // The runtime outlives a restart (it is per machine); the running editor does not.
        status.apply(FolderInput::Connecting);
        assert!(status.editor_runtime.is_some());
    }

    #[test]
    fn tray_state_aggregates() {
        let stopped = FolderStatus::new();
        let ready = running();
        let mut working = running();
        working.apply(started(1));
        let mut offline = running();
        offline.apply(RunnerEvent::KandanOffline { reason: "x".into() }.into());
        let mut asking = running();
        asking.apply(approval("a", "ls"));
        let mut failed = FolderStatus::new();
        failed.apply(FolderInput::StartFailed {
            message: "x".into(),
        });
        let mut connecting = FolderStatus::new();
        connecting.apply(FolderInput::Connecting);

        assert_eq!(tray_state([]), TrayState::Idle);
        assert_eq!(tray_state([&stopped, &ready, &connecting]), TrayState::Idle);
        assert_eq!(tray_state([&ready, &working]), TrayState::Working);
        assert_eq!(tray_state([&working, &offline]), TrayState::Offline);
        assert_eq!(tray_state([&offline, &asking]), TrayState::Attention);
        assert_eq!(tray_state([&ready, &failed]), TrayState::Attention);
        assert_eq!(
            serde_json::to_value([FolderState::AwaitingApproval]).unwrap(),
            serde_json::json!(["awaiting_approval"])
        );
        assert_eq!(
            serde_json::to_value(TrayState::Attention).unwrap(),
            serde_json::json!("attention")
        );
    }
}
