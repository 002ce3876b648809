//! What each shared folder is doing, and what the tray icon shows for all of them.
//!
//! A pure state machine: the shell feeds it [`FolderInput`]s (its own lifecycle steps and
//! the engine's [`RunnerEvent`]s) and renders [`FolderStatus`] and [`TrayState`]. No I/O
//! and no clock, so every transition is unit-tested here, and each step returns the
//! sentence for the activity log ([`Note`]) computed from the state *before* the step
//! (a port-forward answer names the port that was asked about).
//!
//! The state shown is derived, in this order of precedence:
//! stopped / waiting for sign-in / missing / error (start failed) / connecting, then for
//! a running folder: awaiting_approval (an approval or port prompt is pending) > error
//! (Codex was lost and has not come back) > offline (Kandan is unreachable) > working (a
//! turn runs) > ready.
//!
//! A folder leaves "waiting for sign-in" and "missing" only by being started again: a
//! runner's own `Stopped` arriving afterwards does not hide why it stopped.
use std::collections::{BTreeSet, HashMap};

use linzumi_engine::editor::runtime::{RuntimeState, RuntimeStatus};
use linzumi_engine::editor::runtime_source::RuntimeUpdate;
use linzumi_engine::runner::{ChatOrigin, RevokeReason, RunnerEvent};
use serde::Serialize;

use crate::problem::{NextStep, Problem, ShareFailure};
use crate::prompts::{self, Surface};

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
    /// Shared, but nobody is signed in (or Kandan ended the session): it starts by itself
    /// after signing in.
    WaitingForSignIn,
    /// The folder is no longer where it was shared.
    Missing,
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

/// Whether the folder needs the owner: a prompt waits, or only they can fix it.
pub fn needs_you(state: FolderState) -> bool {
    matches!(
        state,
        FolderState::AwaitingApproval | FolderState::Error | FolderState::Missing
    )
}

/// attention if any folder needs the owner, else offline if any is offline, else
/// working if any works, else idle.
pub fn tray_state<'a>(folders: impl IntoIterator<Item = &'a FolderStatus>) -> TrayState {
    let states: Vec<FolderState> = folders.into_iter().map(FolderStatus::state).collect();
    if states.iter().any(|state| needs_you(*state)) {
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
    StartFailed(ShareFailure),
    /// Nobody is signed in, or Kandan ended the session: the folder waits for a sign-in.
    NeedsSignIn,
    /// The shell found the folder gone from where it was shared.
    Missing {
        path: String,
    },
    /// The shell stopped the runner (the engine's own `Stopped` works the same).
    Stopped,
    /// The owner answered `request_id` on this computer; the engine's `…Resolved` follows
    /// and is worded with where they answered.
    AnsweredHere {
        request_id: String,
        via: Surface,
    },
    Runner(RunnerEvent),
}

impl From<RunnerEvent> for FolderInput {
    fn from(event: RunnerEvent) -> FolderInput {
        FolderInput::Runner(event)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingApprovalView {
    pub request_id: String,
    /// The Codex method, e.g. `item/commandExecution/requestApproval`.
    pub kind: String,
    pub summary: String,
    pub reason: Option<String>,
    pub asked_in: Option<ChatOrigin>,
}

impl PendingApprovalView {
    /// "Run `npm test`?".
    pub fn question(&self) -> String {
        prompts::approval_question(&self.kind, &self.summary)
    }

    /// "ada asked: “run the tests”".
    pub fn asked(&self) -> Option<String> {
        self.asked_in.as_ref().map(prompts::asked_line)
    }

    /// The question with who asked, for the activity list.
    fn sentence(&self) -> String {
        match self.asked() {
            Some(asked) => format!("{} — {asked}", self.question()),
            None => self.question(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortPromptView {
    pub request_id: String,
    pub port: u16,
    pub command: String,
    pub cwd: Option<String>,
}

impl PortPromptView {
    /// "Open a preview of port 5173?".
    pub fn question(&self) -> String {
        prompts::port_question(self.port)
    }

    /// "`vite` is listening on it".
    pub fn context(&self) -> String {
        prompts::port_context(&self.command)
    }

    fn sentence(&self) -> String {
        format!("{} {}", self.question(), self.context())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
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

/// A sentence for the activity log, with the raw detail behind it if there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub level: ActivityLevel,
    pub text: String,
    pub details: Option<String>,
}

impl Note {
    fn new(level: ActivityLevel, text: impl Into<String>) -> Option<Note> {
        Some(Note {
            level,
            text: text.into(),
            details: None,
        })
    }

    fn info(text: impl Into<String>) -> Option<Note> {
        Note::new(ActivityLevel::Info, text)
    }

    fn warning(text: impl Into<String>) -> Option<Note> {
        Note::new(ActivityLevel::Warning, text)
    }

    fn error(text: impl Into<String>) -> Option<Note> {
        Note::new(ActivityLevel::Error, text)
    }
}

trait WithDetails {
    fn with_details(self, details: impl Into<String>) -> Self;
}

impl WithDetails for Option<Note> {
    fn with_details(self, details: impl Into<String>) -> Option<Note> {
        self.map(|note| Note {
            details: Some(details.into()),
            ..note
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
enum Lifecycle {
    /// Never started, or stopped.
    #[default]
    Stopped,
    WaitingForSignIn,
    Missing(String),
    Connecting,
    Running,
    Failed(Problem),
}

/// One folder's state; see the module documentation for how [`Self::state`] is derived.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FolderStatus {
    lifecycle: Lifecycle,
    kandan_offline: Option<String>,
    codex_lost: Option<String>,
    /// The chat message whose turn runs.
    working: Option<ChatOrigin>,
    /// Prompts the owner answered here, until the engine says they are resolved.
    answered_here: HashMap<String, Surface>,
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
            Lifecycle::WaitingForSignIn => FolderState::WaitingForSignIn,
            Lifecycle::Missing(_) => FolderState::Missing,
            Lifecycle::Failed(_) => FolderState::Error,
            Lifecycle::Connecting => FolderState::Connecting,
            Lifecycle::Running => {
                if !self.approvals.is_empty() || !self.port_prompts.is_empty() {
                    FolderState::AwaitingApproval
                } else if self.codex_lost.is_some() {
                    FolderState::Error
                } else if self.kandan_offline.is_some() {
                    FolderState::Offline
                } else if self.working.is_some() {
                    FolderState::Working
                } else {
                    FolderState::Ready
                }
            }
        }
    }

    /// Whether the folder has a runner, or is getting one (so it is not to be started).
    pub fn is_live(&self) -> bool {
        matches!(self.lifecycle, Lifecycle::Connecting | Lifecycle::Running)
    }

    /// One line about what is going on, when there is more to say than the state's name.
    pub fn detail(&self) -> Option<String> {
        match self.state() {
            FolderState::AwaitingApproval => self
                .approvals
                .first()
                .map(PendingApprovalView::question)
                .or_else(|| self.port_prompts.first().map(PortPromptView::question)),
            FolderState::Working => self
                .working
                .as_ref()
                .map(|origin| format!("Working on {}", prompts::message_of(origin))),
            _ => None,
        }
    }

    /// What is wrong and what to do about it, when something is.
    pub fn problem(&self) -> Option<Problem> {
        let transient = |title: &str, message: &str, details: &String| Problem {
            title: title.to_owned(),
            message: message.to_owned(),
            next: None,
            field: None,
            details: Some(details.clone()),
        };
        match &self.lifecycle {
            Lifecycle::Failed(problem) => Some(problem.clone()),
            Lifecycle::Missing(path) => {
                Some(ShareFailure::FolderMissing { path: path.clone() }.problem())
            }
            Lifecycle::WaitingForSignIn => Some(Problem {
                title: "Waiting for sign-in".to_owned(),
                message: "This folder starts by itself once you sign in to Kandan.".to_owned(),
                next: Some(NextStep::SignIn),
                field: None,
                details: None,
            }),
            Lifecycle::Running => match (&self.codex_lost, &self.kandan_offline) {
                (Some(lost), _) => Some(transient(
                    "Codex stopped",
                    "Linzumi is restarting it; nothing to do unless this stays.",
                    lost,
                )),
                (None, Some(offline)) => Some(transient(
                    "Offline, retrying",
                    "Kandan cannot be reached; Linzumi reconnects by itself.",
                    offline,
                )),
                (None, None) => None,
            },
            Lifecycle::Stopped | Lifecycle::Connecting => None,
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
                if self.lifecycle != Lifecycle::Connecting {
                    // Stopped (signed out, gone) while it started: the shell drops it.
                    return None;
                }
                let note = Note::info("Shared with Kandan")
                    .with_details(format!("Runner {runner_id}, instance {instance_id}"));
                self.lifecycle = Lifecycle::Running;
                self.runner_id = Some(runner_id);
                self.instance_id = Some(instance_id);
                note
            }
            FolderInput::StartFailed(failure) => {
                self.clear_session();
                match failure {
                    ShareFailure::SessionEnded { details } => {
                        self.lifecycle = Lifecycle::WaitingForSignIn;
                        Note::warning("Kandan ended your session; waiting for you to sign in")
                            .with_details(details)
                    }
                    ShareFailure::FolderMissing { path } => self.go_missing(path),
                    failure => {
                        let problem = failure.problem();
                        let note =
                            Note::error(format!("Sharing did not start — {}", problem.title));
                        let note = match &problem.details {
                            Some(details) => note.with_details(details.clone()),
                            None => note,
                        };
                        self.lifecycle = Lifecycle::Failed(problem);
                        note
                    }
                }
            }
            FolderInput::NeedsSignIn => {
                if self.lifecycle == Lifecycle::WaitingForSignIn {
                    return None;
                }
                self.clear_session();
                self.lifecycle = Lifecycle::WaitingForSignIn;
                Note::info("Waiting for you to sign in to Kandan")
            }
            FolderInput::Missing { path } => {
                if matches!(self.lifecycle, Lifecycle::Missing(_)) {
                    return None;
                }
                self.clear_session();
                self.go_missing(path)
            }
            FolderInput::Stopped | FolderInput::Runner(RunnerEvent::Stopped) => {
                if !self.is_live() {
                    return None;
                }
                self.clear_session();
                self.lifecycle = Lifecycle::Stopped;
                Note::info("Stopped sharing")
            }
            FolderInput::AnsweredHere { request_id, via } => {
                self.answered_here.insert(request_id, via);
                None
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

    fn go_missing(&mut self, path: String) -> Option<Note> {
        self.lifecycle = Lifecycle::Missing(path.clone());
        Note::error("The folder was moved or deleted; Codex stopped working in it")
            .with_details(format!("Nothing is at {path} any more."))
    }

    fn clear_session(&mut self) {
        self.kandan_offline = None;
        self.codex_lost = None;
        self.working = None;
        self.answered_here.clear();
        self.approvals.clear();
        self.port_prompts.clear();
        self.forwarded_ports.clear();
        self.editor = None;
    }

    /// Who answered `request_id`, in words, forgetting where the owner answered it.
    fn answerer(&mut self, request_id: &str, by: &str) -> String {
        let here = self.answered_here.remove(request_id);
        prompts::answered_by(by, here)
    }

    fn apply_event(&mut self, event: RunnerEvent) -> Option<Note> {
        match event {
            RunnerEvent::KandanOffline { reason } => {
                // Each failed reconnect says the same, so the activity list folds them.
                let note = if self.kandan_offline.is_some() {
                    Note::warning("Still cannot reach Kandan; retrying")
                } else {
                    Note::warning("Lost the connection to Kandan; reconnecting")
                };
                self.kandan_offline = Some(reason.clone());
                note.with_details(reason)
            }
            RunnerEvent::KandanOnline => self
                .kandan_offline
                .take()
                .and_then(|_| Note::info("Reconnected to Kandan")),
            RunnerEvent::KandanUnauthorized { reason } => {
                self.clear_session();
                self.lifecycle = Lifecycle::WaitingForSignIn;
                Note::warning("Kandan ended your session; waiting for you to sign in")
                    .with_details(reason)
            }
            RunnerEvent::FolderMissing { path } => {
                self.clear_session();
                self.go_missing(path.display().to_string())
            }
            RunnerEvent::CodexLost { message } => {
                let note = Note::error("Codex stopped unexpectedly; restarting it")
                    .with_details(message.clone());
                self.codex_lost = Some(message);
                self.working = None;
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
                asked_in,
            } => {
                self.approvals
                    .retain(|pending| pending.request_id != request_id);
                let view = PendingApprovalView {
                    request_id,
                    kind,
                    summary,
                    reason,
                    asked_in,
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
                let answer = if approved { "approved" } else { "denied" };
                let who = self.answerer(&request_id, &by);
                Note::info(format!("{} — {answer} by {who}", view.question()))
            }
            RunnerEvent::ApprovalWithdrawn { request_id } => {
                let index = self
                    .approvals
                    .iter()
                    .position(|pending| pending.request_id == request_id)?;
                let view = self.approvals.remove(index);
                self.answered_here.remove(&request_id);
                Note::info(format!("{} — no longer needed", view.question()))
            }
            RunnerEvent::TurnStarted { origin, .. } => {
                let note = Note::info(format!(
                    "Codex is working on {}",
                    prompts::message_of(&origin)
                ));
                self.working = Some(origin);
                note
            }
            RunnerEvent::TurnFinished { seq, status } => {
                let message = self
                    .working
                    .take()
                    .filter(|origin| origin.seq == seq)
                    .map_or_else(
                        || "a message".to_owned(),
                        |origin| prompts::message_of(&origin),
                    );
                if status == "failed" {
                    Note::error(format!("Codex could not finish {message}"))
                } else {
                    Note::info(format!("Codex finished {message}"))
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
                let who = self.answerer(&request_id, &by);
                if approved {
                    let mut ports: BTreeSet<u16> = self.forwarded_ports.drain(..).collect();
                    ports.insert(view.port);
                    self.forwarded_ports = ports.into_iter().collect();
                    Note::info(format!(
                        "Preview of port {} opened — approved by {who}",
                        view.port
                    ))
                } else {
                    Note::info(format!(
                        "Preview of port {} not opened — denied by {who}",
                        view.port
                    ))
                }
            }
            RunnerEvent::PortForwardRevoked { port, reason } => {
                let before = self.forwarded_ports.len();
                self.forwarded_ports.retain(|forwarded| *forwarded != port);
                (self.forwarded_ports.len() != before).then_some(())?;
                match reason {
                    RevokeReason::ListenerChanged => Note::warning(format!(
                        "Preview of port {port} closed: another program listens on it now"
                    )),
                    RevokeReason::StoppedByOwner => {
                        Note::info(format!("Preview of port {port} stopped"))
                    }
                }
            }
            RunnerEvent::EditorRuntime(update) => self.apply_runtime(update),
            RunnerEvent::EditorStarted { port, path } => {
                self.editor = Some(EditorView {
                    running: true,
                    port: Some(port),
                    path: Some(path),
                });
                Note::info("The editor is running")
            }
            RunnerEvent::EditorExited { reason } => {
                self.editor = Some(EditorView {
                    running: false,
                    port: None,
                    path: None,
                });
                Note::warning("The editor stopped").with_details(reason)
            }
            RunnerEvent::Stopped => None, // handled with FolderInput::Stopped
        }
    }

    /// The chat message whose turn runs now.
    pub fn working_on(&self) -> Option<&ChatOrigin> {
        self.working.as_ref()
    }

    /// Whether Kandan is unreachable for this folder right now.
    pub fn is_offline(&self) -> bool {
        self.kandan_offline.is_some()
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
                        RuntimeState::Failed => {
                            let note = Note::warning("The editor could not be installed");
                            match &status.detail {
                                Some(detail) => note.with_details(detail.clone()),
                                None => note,
                            }
                        }
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
    use linzumi_engine::codex::protocol::server_requests;

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

    fn origin(seq: i64) -> ChatOrigin {
        ChatOrigin {
            seq,
            author: Some("ada".into()),
            excerpt: format!("task {seq}"),
        }
    }

    fn started(seq: i64) -> FolderInput {
        RunnerEvent::TurnStarted {
            seq,
            origin: origin(seq),
        }
        .into()
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
            asked_in: Some(origin(1)),
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

    fn details(note: Option<Note>) -> Option<String> {
        note.and_then(|note| note.details)
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
        assert!(status.is_live());
        let note = status.apply(FolderInput::Started {
            runner_id: "desktop-1".into(),
            instance_id: "i-1".into(),
        });
        assert_eq!(text(note.clone()), "Shared with Kandan");
        assert_eq!(
            details(note).as_deref(),
            Some("Runner desktop-1, instance i-1"),
            "identifiers only behind Details"
        );
        assert_eq!(status.state(), FolderState::Ready);
        assert_eq!(status.runner_id.as_deref(), Some("desktop-1"));
        assert_eq!(status.detail(), None);
        assert_eq!(status.problem(), None);
        assert_eq!(text(status.apply(FolderInput::Stopped)), "Stopped sharing");
        assert_eq!(status.state(), FolderState::Stopped);
        assert_eq!(status.apply(FolderInput::Stopped), None, "said once");
        // A start that finishes after the folder was stopped does not revive it.
        assert_eq!(
            status.apply(FolderInput::Started {
                runner_id: "desktop-1".into(),
                instance_id: "i-2".into(),
            }),
            None
        );
        assert_eq!(status.state(), FolderState::Stopped);
    }

    #[test]
    fn a_start_failure_is_an_error_in_plain_words_with_a_next_step() {
        let mut status = FolderStatus::new();
        status.apply(FolderInput::Connecting);
        let note = status.apply(FolderInput::StartFailed(ShareFailure::KandanUnreachable {
            details: "could not reach Kandan at ws://k/socket/websocket?token=REDACTED".into(),
        }));
        assert_eq!(level(note.clone()), Some(ActivityLevel::Error));
        assert_eq!(
            text(note.clone()),
            "Sharing did not start — Kandan could not be reached"
        );
        assert!(details(note).unwrap().contains("ws://k"));
        assert_eq!(status.state(), FolderState::Error);
        let problem = status.problem().unwrap();
        assert_eq!(problem.title, "Kandan could not be reached");
        assert_eq!(problem.next, Some(NextStep::Retry));
        assert!(!problem.message.contains("ws://"));
        // Retry starts over.
        status.apply(FolderInput::Connecting);
        assert_eq!(status.state(), FolderState::Connecting);
        assert_eq!(status.problem(), None);
    }

    #[test]
    fn waiting_for_sign_in_is_not_an_error_and_survives_the_runner_stopping() {
        let mut status = FolderStatus::new();
        assert_eq!(
            text(status.apply(FolderInput::NeedsSignIn)),
            "Waiting for you to sign in to Kandan"
        );
        assert_eq!(status.state(), FolderState::WaitingForSignIn);
        assert_eq!(status.apply(FolderInput::NeedsSignIn), None, "said once");
        assert_eq!(status.problem().unwrap().next, Some(NextStep::SignIn));
        assert_eq!(tray_state([&status]), TrayState::Idle, "not a red alert");

        // Kandan ends the session of a running folder.
        let mut status = running();
        status.apply(approval("a", "ls"));
        let note = status.apply(
            RunnerEvent::KandanUnauthorized {
                reason: "HTTP 403".into(),
            }
            .into(),
        );
        assert_eq!(
            text(note.clone()),
            "Kandan ended your session; waiting for you to sign in"
        );
        assert_eq!(details(note).as_deref(), Some("HTTP 403"));
        assert_eq!(status.state(), FolderState::WaitingForSignIn);
        assert!(status.approvals.is_empty());
        assert_eq!(status.apply(RunnerEvent::Stopped.into()), None);
        assert_eq!(status.apply(FolderInput::Stopped), None);
        assert_eq!(status.state(), FolderState::WaitingForSignIn);
        // A start refused for the same reason waits too, and is no error.
        let mut status = FolderStatus::new();
        status.apply(FolderInput::Connecting);
        status.apply(FolderInput::StartFailed(ShareFailure::SessionEnded {
            details: "HTTP 401".into(),
        }));
        assert_eq!(status.state(), FolderState::WaitingForSignIn);
        // Signing in starts it again.
        status.apply(FolderInput::Connecting);
        assert_eq!(status.state(), FolderState::Connecting);
    }

    #[test]
    fn a_missing_folder_offers_locate_and_is_said_once() {
        let mut status = running();
        status.apply(started(3));
        let note = status.apply(
            RunnerEvent::FolderMissing {
                path: "/home/ada/app".into(),
            }
            .into(),
        );
        assert_eq!(level(note.clone()), Some(ActivityLevel::Error));
        assert_eq!(
            text(note),
            "The folder was moved or deleted; Codex stopped working in it"
        );
        assert_eq!(status.state(), FolderState::Missing);
        let problem = status.problem().unwrap();
        assert_eq!(problem.next, Some(NextStep::Locate));
        assert!(problem.message.contains("/home/ada/app"));
        assert_eq!(
            status.apply(FolderInput::Missing {
                path: "/home/ada/app".into()
            }),
            None,
            "the shell's own check says nothing new"
        );
        assert_eq!(status.apply(RunnerEvent::Stopped.into()), None);
        assert_eq!(status.state(), FolderState::Missing);
        assert_eq!(tray_state([&status]), TrayState::Attention);
        let mut never_started = FolderStatus::new();
        never_started.apply(FolderInput::StartFailed(ShareFailure::FolderMissing {
            path: "/gone".into(),
        }));
        assert_eq!(never_started.state(), FolderState::Missing);
    }

    #[test]
    fn working_names_whose_message() {
        let mut status = running();
        assert_eq!(
            text(status.apply(started(7))),
            "Codex is working on ada's message “task 7”"
        );
        assert_eq!(status.state(), FolderState::Working);
        assert_eq!(
            status.detail().as_deref(),
            Some("Working on ada's message “task 7”")
        );
        let note = status.apply(
            RunnerEvent::TurnFinished {
                seq: 7,
                status: "processed".into(),
            }
            .into(),
        );
        assert_eq!(text(note), "Codex finished ada's message “task 7”");
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
        assert_eq!(text(note), "Codex could not finish ada's message “task 8”");
        let unknown = status.apply(
            RunnerEvent::TurnFinished {
                seq: 9,
                status: "processed".into(),
            }
            .into(),
        );
        assert_eq!(text(unknown), "Codex finished a message");
        assert!(!format!("{status:?}").is_empty());
    }

    #[test]
    fn working_is_ignored_when_not_running() {
        let mut status = FolderStatus::new();
        assert_eq!(status.apply(started(1)), None);
        assert_eq!(status.state(), FolderState::Stopped);
    }

    #[test]
    fn approvals_wait_for_an_answer_and_say_who_answered_where() {
        let mut status = running();
        status.apply(started(1));
        let note = status.apply(approval("a1", "npm test"));
        assert_eq!(level(note.clone()), Some(ActivityLevel::Warning));
        assert_eq!(text(note), "Run `npm test`? — ada asked: “task 1”");
        assert_eq!(status.state(), FolderState::AwaitingApproval);
        assert_eq!(status.detail().as_deref(), Some("Run `npm test`?"));
        assert_eq!(
            status.approvals[0].asked().as_deref(),
            Some("ada asked: “task 1”")
        );
        status.apply(approval("a2", "cargo build"));
        status.apply(approval("a2", "cargo build"));
        assert_eq!(status.approvals.len(), 2, "a repeated request is kept once");

        status.apply(FolderInput::AnsweredHere {
            request_id: "a1".into(),
            via: Surface::Notification,
        });
        let note = status.apply(
            RunnerEvent::ApprovalResolved {
                request_id: "a1".into(),
                approved: true,
                by: "local".into(),
            }
            .into(),
        );
        assert_eq!(
            text(note),
            "Run `npm test`? — approved by you (notification)"
        );
        assert_eq!(status.state(), FolderState::AwaitingApproval);
        let note = status.apply(
            RunnerEvent::ApprovalWithdrawn {
                request_id: "a2".into(),
            }
            .into(),
        );
        assert_eq!(text(note), "Run `cargo build`? — no longer needed");
        assert_eq!(
            status.state(),
            FolderState::Working,
            "back to the running turn"
        );
        status.apply(approval("a3", "ls"));
        let note = status.apply(
            RunnerEvent::ApprovalResolved {
                request_id: "a3".into(),
                approved: false,
                by: "kandan:grace".into(),
            }
            .into(),
        );
        assert_eq!(text(note), "Run `ls`? — denied by grace in Kandan");
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
    fn port_prompts_and_forwarded_ports() {
        let mut status = running();
        let note = status.apply(port_prompt("p1", 5173));
        assert_eq!(
            text(note),
            "Open a preview of port 5173? `npm run dev` is listening on it"
        );
        assert_eq!(status.state(), FolderState::AwaitingApproval);
        assert_eq!(
            status.detail().as_deref(),
            Some("Open a preview of port 5173?")
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
        assert_eq!(
            text(note),
            "Preview of port 5173 opened — approved by ada in Kandan"
        );
        status.apply(FolderInput::AnsweredHere {
            request_id: "p2".into(),
            via: Surface::Tray,
        });
        let note = status.apply(
            RunnerEvent::PortForwardResolved {
                request_id: "p2".into(),
                approved: true,
                by: "local".into(),
            }
            .into(),
        );
        assert_eq!(
            text(note),
            "Preview of port 3000 opened — approved by you (tray menu)"
        );
        let note = status.apply(
            RunnerEvent::PortForwardResolved {
                request_id: "p3".into(),
                approved: false,
                by: "local".into(),
            }
            .into(),
        );
        assert_eq!(
            text(note),
            "Preview of port 8080 not opened — denied by you"
        );
        assert_eq!(status.forwarded_ports, [3000, 5173]);
        assert!(status.port_prompts.is_empty());
        assert_eq!(status.state(), FolderState::Ready);

        let note = status.apply(
            RunnerEvent::PortForwardRevoked {
                port: 3000,
                reason: RevokeReason::ListenerChanged,
            }
            .into(),
        );
        assert_eq!(level(note.clone()), Some(ActivityLevel::Warning));
        assert_eq!(
            text(note),
            "Preview of port 3000 closed: another program listens on it now"
        );
        let note = status.apply(
            RunnerEvent::PortForwardRevoked {
                port: 5173,
                reason: RevokeReason::StoppedByOwner,
            }
            .into(),
        );
        assert_eq!(text(note), "Preview of port 5173 stopped");
        assert!(status.forwarded_ports.is_empty());
        assert_eq!(
            status.apply(
                RunnerEvent::PortForwardRevoked {
                    port: 5173,
                    reason: RevokeReason::StoppedByOwner,
                }
                .into()
            ),
            None,
            "already gone"
        );
    }

    #[test]
    fn kandan_offline_and_back_with_repeats_worded_alike() {
        let mut status = running();
        assert_eq!(
            status.apply(RunnerEvent::KandanOnline.into()),
            None,
            "already online"
        );
        let offline = |reason: &str| {
            FolderInput::from(RunnerEvent::KandanOffline {
                reason: reason.into(),
            })
        };
        let note = status.apply(offline("connection refused"));
        assert_eq!(level(note.clone()), Some(ActivityLevel::Warning));
        assert_eq!(
            text(note.clone()),
            "Lost the connection to Kandan; reconnecting"
        );
        assert_eq!(details(note).as_deref(), Some("connection refused"));
        let again = status.apply(offline("could not reach Kandan at ws://k: refused"));
        assert_eq!(text(again.clone()), "Still cannot reach Kandan; retrying");
        assert_eq!(
            text(status.apply(offline("other"))),
            text(again),
            "repeats read the same, so the activity list folds them"
        );
        assert_eq!(status.state(), FolderState::Offline);
        assert!(status.is_offline());
        let problem = status.problem().unwrap();
        assert_eq!(problem.title, "Offline, retrying");
        assert_eq!(problem.next, None);
        assert_eq!(problem.details.as_deref(), Some("other"));
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
        assert_eq!(status.problem(), None, "a resolved problem disappears");
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
        assert_eq!(
            text(note.clone()),
            "Codex stopped unexpectedly; restarting it"
        );
        assert_eq!(details(note).as_deref(), Some("exited with 9"));
        assert_eq!(status.state(), FolderState::Error);
        assert_eq!(status.problem().unwrap().title, "Codex stopped");
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
        assert_eq!(text(note), "The editor is running");
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
        assert_eq!(text(note.clone()), "The editor stopped");
        assert!(details(note).unwrap().contains("signal: 9"));
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
        assert_eq!(text(note.clone()), "The editor could not be installed");
        assert_eq!(details(note).as_deref(), Some("checksum mismatch"));
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
        failed.apply(FolderInput::StartFailed(ShareFailure::Other {
            details: "x".into(),
        }));
        let mut connecting = FolderStatus::new();
        connecting.apply(FolderInput::Connecting);

        assert_eq!(tray_state([]), TrayState::Idle);
        assert_eq!(tray_state([&stopped, &ready, &connecting]), TrayState::Idle);
        assert_eq!(tray_state([&ready, &working]), TrayState::Working);
        assert_eq!(tray_state([&working, &offline]), TrayState::Offline);
        assert_eq!(tray_state([&offline, &asking]), TrayState::Attention);
        assert_eq!(tray_state([&ready, &failed]), TrayState::Attention);
        assert_eq!(
            serde_json::to_value([FolderState::AwaitingApproval, FolderState::WaitingForSignIn])
                .unwrap(),
            serde_json::json!(["awaiting_approval", "waiting_for_sign_in"])
        );
        assert_eq!(
            serde_json::to_value(TrayState::Attention).unwrap(),
            serde_json::json!("attention")
        );
    }
}
