//! Short messages at the top of the window ("Signed in to Kandan.", "Could not open a
//! browser"). Each dismisses itself after [`NOTICE_MS`] unless it needs something done
//! (it has an action) or is an error; an error about a folder disappears by itself once
//! the folder is fine again. The same text twice is one notice, renewed. Times are
//! passed in, so it stays pure.
use serde::Serialize;

use crate::folder_state::ActivityLevel;
use crate::problem::NextStep;

/// How long a notice that needs nothing stays.
pub const NOTICE_MS: u64 = 6_000;
/// The most notices kept; the oldest go first.
const CAPACITY: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    pub id: u64,
    pub level: ActivityLevel,
    pub text: String,
    pub details: Option<String>,
    /// What the notice's button does, if it has one.
    pub action: Option<NextStep>,
    /// When it goes away by itself (Unix ms); `None` stays until dismissed or resolved.
    pub expires_at: Option<u64>,
    #[serde(skip)]
    folder_id: Option<String>,
}

/// A notice to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotice {
    pub level: ActivityLevel,
    pub text: String,
    pub details: Option<String>,
    pub action: Option<NextStep>,
    /// The folder it is about: it goes once that folder is fine.
    pub folder_id: Option<String>,
}

impl NewNotice {
    pub fn info(text: impl Into<String>) -> NewNotice {
        NewNotice {
            level: ActivityLevel::Info,
            text: text.into(),
            details: None,
            action: None,
            folder_id: None,
        }
    }

    pub fn error(text: impl Into<String>) -> NewNotice {
        NewNotice {
            level: ActivityLevel::Error,
            ..NewNotice::info(text)
        }
    }

    pub fn with_action(mut self, action: NextStep) -> NewNotice {
        self.action = Some(action);
        self
    }

    pub fn about_folder(mut self, folder_id: impl Into<String>) -> NewNotice {
        self.folder_id = Some(folder_id.into());
        self
    }
}

#[derive(Debug, Clone, Default)]
pub struct Notices {
    shown: Vec<Notice>,
    next_id: u64,
}

impl Notices {
    /// Shows `notice` at `now_ms`; returns its id.
    pub fn push(&mut self, notice: NewNotice, now_ms: u64) -> u64 {
        self.shown.retain(|shown| shown.text != notice.text);
        self.next_id += 1;
        let sticky = notice.action.is_some() || notice.level == ActivityLevel::Error;
        self.shown.push(Notice {
            id: self.next_id,
            level: notice.level,
            text: notice.text,
            details: notice.details,
            action: notice.action,
            expires_at: (!sticky).then_some(now_ms + NOTICE_MS),
            folder_id: notice.folder_id,
        });
        if self.shown.len() > CAPACITY {
            self.shown.remove(0);
        }
        self.next_id
    }

    pub fn dismiss(&mut self, id: u64) {
        self.shown.retain(|shown| shown.id != id);
    }

    /// The folder is fine again (or gone): its notices go.
    pub fn resolve_folder(&mut self, folder_id: &str) {
        self.shown
            .retain(|shown| shown.folder_id.as_deref() != Some(folder_id));
    }

    /// Drops the notices that would go by themselves (news that something newer, like a
    /// finished sign-in, supersedes).
    pub fn clear_passing(&mut self) {
        self.shown.retain(|shown| shown.expires_at.is_none());
    }

    /// Drops every notice with this action (e.g. "Sign in" once signed in).
    pub fn resolve_action(&mut self, action: NextStep) {
        self.shown.retain(|shown| shown.action != Some(action));
    }

    /// What is still to be shown at `now_ms`, oldest first.
    pub fn visible(&self, now_ms: u64) -> Vec<Notice> {
        self.shown
            .iter()
            .filter(|shown| shown.expires_at.is_none_or(|at| at > now_ms))
            .cloned()
            .collect()
    }

    /// Forgets expired notices.
    pub fn prune(&mut self, now_ms: u64) {
        self.shown
            .retain(|shown| shown.expires_at.is_none_or(|at| at > now_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_notices_go_by_themselves_and_those_that_need_you_stay() {
        let mut notices = Notices::default();
        notices.push(NewNotice::info("Signed in to Kandan."), 1_000);
        notices.push(
            NewNotice::info("Sign-in timed out.").with_action(NextStep::SignIn),
            1_000,
        );
        notices.push(NewNotice::error("Could not open a browser."), 1_000);
        assert_eq!(notices.visible(1_000).len(), 3);
        let later: Vec<String> = notices
            .visible(1_000 + NOTICE_MS)
            .into_iter()
            .map(|notice| notice.text)
            .collect();
        assert_eq!(later, ["Sign-in timed out.", "Could not open a browser."]);
        notices.resolve_action(NextStep::SignIn);
        assert_eq!(notices.visible(1_000 + NOTICE_MS).len(), 1);
        notices.push(NewNotice::info("Sign-in canceled."), 2_000);
        notices.clear_passing();
        assert_eq!(notices.visible(2_000).len(), 1, "the error stays");
        let id = notices.visible(1_000 + NOTICE_MS)[0].id;
        notices.dismiss(id);
        assert!(notices.visible(1_000 + NOTICE_MS).is_empty());
    }

    #[test]
    fn a_resolved_folder_error_disappears_and_repeats_are_one_notice() {
        let mut notices = Notices::default();
        notices.push(
            NewNotice::error("my-app: the editor did not start").about_folder("f1"),
            0,
        );
        notices.push(NewNotice::error("other").about_folder("f2"), 0);
        notices.push(NewNotice::info("Saved."), 0);
        let renewed = notices.push(NewNotice::info("Saved."), 5_000);
        let visible = notices.visible(NOTICE_MS + 1);
        assert_eq!(visible.len(), 3, "the renewed one is still up");
        assert_eq!(visible[2].id, renewed);
        notices.resolve_folder("f1");
        let texts: Vec<String> = notices.visible(0).into_iter().map(|n| n.text).collect();
        assert_eq!(texts, ["other", "Saved."]);
        notices.prune(5_000 + NOTICE_MS);
        assert_eq!(notices.visible(0).len(), 1);
        let json = serde_json::to_value(&notices.visible(0)[0]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"id": 1 + 1, "level": "error", "text": "other",
                "details": null, "action": null, "expiresAt": null})
        );
    }

    #[test]
    fn only_the_last_few_are_kept() {
        let mut notices = Notices::default();
        for i in 0..10 {
            notices.push(NewNotice::error(format!("n{i}")), 0);
        }
        let texts: Vec<String> = notices.visible(0).into_iter().map(|n| n.text).collect();
        assert_eq!(texts, ["n5", "n6", "n7", "n8", "n9"]);
    }
}
