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

use linzumi_engine::runner::RunnerEvent;

pub mod rate_limit;
#[cfg(all(unix, not(target_os = "macos")))]
mod xdg;

pub use rate_limit::{InfoThrottle, RateLimit, RateLimiter, Summary, Verdict};

/// The action keys of an approval prompt's buttons.
pub const APPROVE_ACTION: &str = "approve";
pub const DENY_ACTION: &str = "deny";

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

/// Called with `(folder_id, request_id, approve)` when the user presses a button.
pub type AnswerCallback = Arc<dyn Fn(&str, &str, bool) + Send + Sync>;

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

/// The update `event` deserves in the folder called `folder`, if any. Prompts have
/// their own notifications; everything else stays in the window's activity list.
pub fn update_for(folder: &str, event: &RunnerEvent) -> Option<Update> {
    let (title, body) = match event {
        RunnerEvent::TurnFinished { seq, status } if status == "failed" => (
            format!("{folder}: a message failed"),
            format!("Codex could not finish message #{seq}."),
        ),
        RunnerEvent::TurnFinished { seq, .. } => (
            format!("{folder}: Codex is done"),
            format!("Codex finished message #{seq}."),
        ),
        RunnerEvent::CodexLost { message } => (
            format!("{folder}: Codex stopped"),
            format!("{message}. Linzumi is restarting it."),
        ),
        RunnerEvent::KandanOffline { reason } => (
            format!("{folder}: Kandan is unreachable"),
            format!("{reason}. Linzumi keeps trying."),
        ),
        RunnerEvent::EditorExited { reason } => (
            format!("{folder}: the editor stopped"),
            reason.lines().next().unwrap_or_default().to_owned(),
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
        let body = format!("{}\nAnswer in Linzumi.", prompt.body);
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

    fn update(event: RunnerEvent) -> Option<(String, String)> {
        update_for("app", &event).map(|update| (update.title, update.body))
    }

    #[test]
    fn finished_and_failed_turns_notify() {
        assert_eq!(
            update(RunnerEvent::TurnFinished {
                seq: 4,
                status: "processed".into()
            }),
            Some((
                "app: Codex is done".into(),
                "Codex finished message #4.".into()
            ))
        );
        assert_eq!(
            update(RunnerEvent::TurnFinished {
                seq: 5,
                status: "failed".into()
            }),
            Some((
                "app: a message failed".into(),
                "Codex could not finish message #5.".into()
            ))
        );
    }

    #[test]
    fn errors_notify_and_routine_events_do_not() {
        assert_eq!(
            update(RunnerEvent::CodexLost {
                message: "exited with 9".into()
            })
            .map(|(title, _)| title),
            Some("app: Codex stopped".into())
        );
        assert_eq!(
            update(RunnerEvent::EditorExited {
                reason: "code-server exited (signal: 9); its last output:\nnoise".into()
            })
            .map(|(_, body)| body),
            Some("code-server exited (signal: 9); its last output:".into())
        );
        assert_eq!(update(RunnerEvent::TurnStarted { seq: 1 }), None);
        assert_eq!(update(RunnerEvent::KandanOnline), None);
        assert_eq!(update(RunnerEvent::Stopped), None);
    }
}
