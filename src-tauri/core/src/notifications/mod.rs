//! Native notifications: approval prompts the user can answer from the notification,
//! and short updates (a turn finished, something failed) that must not flood the desktop.
//!
//! - [`Notifier`] is what the shell calls, so its logic can be tested with a fake.
//! - [`DesktopNotifier`] is the real one. On Linux and the BSDs, approval prompts speak the
//!   freedesktop notification protocol over D-Bus themselves (see `xdg.rs` for why), with
//!   "Approve" and "Deny" buttons; updates go through notify-rust. On macOS and Windows,
//!   notify-rust offers no buttons, so a prompt is a plain notification asking the user
//!   to answer in the window, and `withdraw` does nothing (untested there: this project's
//!   CI is Linux only).
//! - [`rate_limit`] keeps updates to a few per folder per minute, then one summary.
//!
//! Every call makes one or two D-Bus round trips: call them off the UI thread.
use std::sync::Arc;

use linzumi_engine::runner::{ChatOrigin, RunnerEvent};

use crate::prompts;

pub mod rate_limit;
#[cfg(all(unix, not(target_os = "macos")))]
mod xdg;

pub use rate_limit::{InfoThrottle, RateLimit, RateLimiter, Summary, Verdict};

/// The action keys of an approval prompt's buttons, and of a click on its body.
pub const APPROVE_ACTION: &str = "approve";
pub const DENY_ACTION: &str = "deny";
pub const OPEN_ACTION: &str = "default";

/// What the owner did with a prompt's notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptAnswer {
    Approve,
    Deny,
    /// Clicked its body: show the prompt in the window.
    Open,
}

/// An approval to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalPrompt {
    pub folder_id: String,
    pub request_id: String,
    pub title: String,
    pub body: String,
}

/// A shown approval prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalHandle {
    pub request_id: String,
    /// The notification server's id, where there is one (freedesktop).
    pub notification_id: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not show a notification: {0}")]
pub struct NotifyError(pub String);

/// Called with `(folder_id, request_id, answer)` when the user presses a button or
/// clicks the notification.
pub type AnswerCallback = Arc<dyn Fn(&str, &str, PromptAnswer) + Send + Sync>;

pub trait Notifier: Send + Sync {
    /// Shows an approval prompt; the answer comes through the notifier's callback. A
    /// prompt already shown for the same request is replaced.
    fn approval(&self, prompt: &ApprovalPrompt) -> Result<ApprovalHandle, NotifyError>;
    /// Takes a prompt down (it was answered elsewhere); unknown ids are ignored.
    fn withdraw(&self, request_id: &str);
    /// Shows a short update (not rate-limited here: see [`InfoThrottle`]).
    fn info(&self, title: &str, body: &str) -> Result<(), NotifyError>;
}

/// A short update worth a notification: a turn ended, or something broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub title: String,
    pub body: String,
}

/// The prompt notification for `event` in the folder called `folder`, if it asks
/// something: the folder and the question in the title, who asked (or what listens) in
/// the body; the same words as the window's card and the tray's entry.
pub fn prompt_for(folder_id: &str, folder: &str, event: &RunnerEvent) -> Option<ApprovalPrompt> {
    let (request_id, title, body) = match event {
        RunnerEvent::ApprovalRequested {
            request_id,
            kind,
            summary,
            reason,
            asked_in,
        } => {
            let mut lines: Vec<String> = asked_in.iter().map(prompts::asked_line).collect();
            lines.extend(reason.iter().map(|reason| prompts::shorten(reason, 120)));
            (
                request_id,
                format!("{folder}: {}", prompts::approval_question(kind, summary)),
                lines.join("\n"),
            )
        }
        RunnerEvent::PortForwardRequested {
            request_id,
            port,
            command,
            ..
        } => (
            request_id,
            format!("{folder}: {}", prompts::port_question(*port)),
            prompts::port_context(command),
        ),
        _ => return None,
    };
    Some(ApprovalPrompt {
        folder_id: folder_id.to_owned(),
        request_id: request_id.clone(),
        title,
        body,
    })
}

/// What an update notification knows about the folder before the event.
#[derive(Debug, Clone, Copy)]
pub struct UpdateContext<'a> {
    /// The folder's name.
    pub folder: &'a str,
    /// The chat message whose turn was running.
    pub working_on: Option<&'a ChatOrigin>,
    /// Whether Kandan was already unreachable (each failed retry is not news).
    pub offline: bool,
}

/// The update `event` deserves, if any. Prompts have their own notifications; everything
/// else stays in the window's activity list.
pub fn update_for(context: &UpdateContext<'_>, event: &RunnerEvent) -> Option<Update> {
    let folder = context.folder;
    let message = |seq: i64| {
        context
            .working_on
            .filter(|origin| origin.seq == seq)
            .map_or_else(|| "a message".to_owned(), prompts::message_of)
    };
    let (title, body) = match event {
        RunnerEvent::TurnFinished { seq, status } if status == "failed" => (
            format!("{folder}: Codex could not finish"),
            format!("Codex could not finish {}.", message(*seq)),
        ),
        RunnerEvent::TurnFinished { seq, .. } => (
            format!("{folder}: Codex is done"),
            format!("Codex finished {}.", message(*seq)),
        ),
        RunnerEvent::CodexLost { .. } => (
            format!("{folder}: Codex stopped"),
            "Codex stopped unexpectedly. Linzumi is restarting it.".to_owned(),
        ),
        RunnerEvent::KandanOffline { .. } if !context.offline => (
            format!("{folder}: Kandan is unreachable"),
            "Linzumi keeps trying to reconnect.".to_owned(),
        ),
        RunnerEvent::EditorExited { .. } => (
            format!("{folder}: the editor stopped"),
            "Open it again from Linzumi when you need it.".to_owned(),
        ),
        RunnerEvent::FolderMissing { .. } => (
            format!("{folder} was moved or deleted"),
            "Codex stopped working in it. Locate it in Linzumi, or stop sharing it.".to_owned(),
        ),
        _ => return None,
    };
    Some(Update { title, body })
}

/// Notifications through the desktop's notification server.
pub struct DesktopNotifier {
    app_name: String,
    icon: String,
    #[cfg_attr(not(all(unix, not(target_os = "macos"))), allow(dead_code))]
    on_answer: AnswerCallback,
    #[cfg(all(unix, not(target_os = "macos")))]
    shown: xdg::ShownPrompts,
}

impl DesktopNotifier {
    /// Notifications from `app_name`; `on_answer` gets the buttons' answers (it runs on
    /// a background thread).
    pub fn new(app_name: impl Into<String>, on_answer: AnswerCallback) -> DesktopNotifier {
        DesktopNotifier {
            app_name: app_name.into(),
            icon: String::new(),
            on_answer,
            #[cfg(all(unix, not(target_os = "macos")))]
            shown: xdg::ShownPrompts::default(),
        }
    }

    /// An icon name or path for every notification.
    pub fn with_icon(mut self, icon: impl Into<String>) -> DesktopNotifier {
        self.icon = icon.into();
        self
    }

    pub fn app_name(&self) -> &str {
        &self.app_name
    }

    fn show_plain(&self, title: &str, body: &str) -> Result<(), NotifyError> {
        let mut notification = notify_rust::Notification::new();
        notification
            .appname(&self.app_name)
            .summary(title)
            .body(body);
        if !self.icon.is_empty() {
            notification.icon(&self.icon);
        }
        notification
            .show()
            .map_err(|error| NotifyError(error.to_string()))?;
        Ok(())
    }
}

impl Notifier for DesktopNotifier {
    #[cfg(all(unix, not(target_os = "macos")))]
    fn approval(&self, prompt: &ApprovalPrompt) -> Result<ApprovalHandle, NotifyError> {
        xdg::show_approval(
            &self.shown,
            &xdg::Sender {
                app_name: &self.app_name,
                icon: &self.icon,
            },
            prompt,
            self.on_answer.clone(),
        )
    }

    #[cfg(not(all(unix, not(target_os = "macos"))))]
    fn approval(&self, prompt: &ApprovalPrompt) -> Result<ApprovalHandle, NotifyError> {
        let body = format!("{}\nAnswer it in the Linzumi menu.", prompt.body);
        self.show_plain(&prompt.title, &body)?;
        Ok(ApprovalHandle {
            request_id: prompt.request_id.clone(),
            notification_id: None,
        })
    }

    #[cfg(all(unix, not(target_os = "macos")))]
    fn withdraw(&self, request_id: &str) {
        xdg::withdraw(&self.shown, request_id);
    }

    #[cfg(not(all(unix, not(target_os = "macos"))))]
    fn withdraw(&self, _request_id: &str) {}

    fn info(&self, title: &str, body: &str) -> Result<(), NotifyError> {
        self.show_plain(title, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use linzumi_engine::codex::protocol::server_requests;

    fn origin(seq: i64) -> ChatOrigin {
        ChatOrigin {
            seq,
            author: Some("ada".into()),
            excerpt: "fix the login page".into(),
        }
    }

    fn update(event: RunnerEvent) -> Option<(String, String)> {
        let working = origin(4);
        let context = UpdateContext {
            folder: "app",
            working_on: Some(&working),
            offline: false,
        };
        update_for(&context, &event).map(|update| (update.title, update.body))
    }

    #[test]
    fn prompts_name_the_folder_who_asked_and_what() {
        let prompt = prompt_for(
            "f1",
            "my-app",
            &RunnerEvent::ApprovalRequested {
                request_id: "7".into(),
                kind: server_requests::COMMAND_APPROVAL.into(),
                summary: "npm test".into(),
                reason: Some("runs the tests".into()),
                asked_in: Some(origin(4)),
            },
        )
        .unwrap();
        assert_eq!(
            prompt,
            ApprovalPrompt {
                folder_id: "f1".into(),
                request_id: "7".into(),
                title: "my-app: Run `npm test`?".into(),
                body: "ada asked: “fix the login page”\nruns the tests".into(),
            }
        );
        let port = prompt_for(
            "f1",
            "my-app",
            &RunnerEvent::PortForwardRequested {
                request_id: "p".into(),
                port: 5173,
                command: "vite".into(),
                cwd: None,
            },
        )
        .unwrap();
        assert_eq!(port.title, "my-app: Open a preview of port 5173?");
        assert_eq!(port.body, "`vite` is listening on it");
        assert_eq!(prompt_for("f1", "my-app", &RunnerEvent::KandanOnline), None);
    }

    #[test]
    fn finished_and_failed_turns_notify_with_whose_message() {
        assert_eq!(
            update(RunnerEvent::TurnFinished {
                seq: 4,
                status: "processed".into()
            }),
            Some((
                "app: Codex is done".into(),
                "Codex finished ada's message “fix the login page”.".into()
            ))
        );
        assert_eq!(
            update(RunnerEvent::TurnFinished {
                seq: 5,
                status: "failed".into()
            }),
            Some((
                "app: Codex could not finish".into(),
                "Codex could not finish a message.".into()
            ))
        );
    }

    #[test]
    fn errors_notify_plainly_and_routine_events_do_not() {
        let (title, body) = update(RunnerEvent::CodexLost {
            message: "exited with 9".into(),
        })
        .unwrap();
        assert_eq!(title, "app: Codex stopped");
        assert!(
            !body.contains("exited with 9"),
            "raw errors stay in Details"
        );
        assert_eq!(
            update(RunnerEvent::EditorExited {
                reason: "code-server exited (signal: 9); its last output:\nnoise".into()
            })
            .map(|(title, _)| title),
            Some("app: the editor stopped".into())
        );
        assert!(
            update(RunnerEvent::KandanOffline {
                reason: "ws://k refused".into()
            })
            .is_some()
        );
        let context = UpdateContext {
            folder: "app",
            working_on: None,
            offline: true,
        };
        assert_eq!(
            update_for(
                &context,
                &RunnerEvent::KandanOffline {
                    reason: "again".into()
                }
            ),
            None,
            "a failed retry is not news"
        );
        assert!(
            update(RunnerEvent::FolderMissing {
                path: "/a/app".into()
            })
            .is_some()
        );
        assert_eq!(
            update(RunnerEvent::TurnStarted {
                seq: 1,
                origin: origin(1)
            }),
            None
        );
        assert_eq!(update(RunnerEvent::KandanOnline), None);
        assert_eq!(update(RunnerEvent::Stopped), None);
    }
}
