//! Keeps short updates to a few per folder per window, then sends one summary.
//!
//! A busy folder can finish many turns a minute; a notification for each would bury the
//! desktop. Each folder gets a fixed window (60 s by default) starting at its first update:
//! the first 3 updates are shown, the rest only counted, and when the window has ended
//! one "N more updates in <folder>" summary is shown. Pure: times are passed in as Unix
//! milliseconds, so the tests use a fake clock. The shell calls [`InfoThrottle::flush`]
//! at [`InfoThrottle::next_due_ms`], so that summaries come out when a window ends.
use std::collections::HashMap;

use super::{Notifier, NotifyError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub max_per_window: usize,
    pub window_ms: u64,
}

impl Default for RateLimit {
    fn default() -> RateLimit {
        RateLimit {
            max_per_window: 3,
            window_ms: 60_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Show,
    Suppress,
}

/// The updates a folder did not show in an ended window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub folder_id: String,
    pub folder_name: String,
    pub suppressed: usize,
}

impl Summary {
    /// "4 more updates in my-app".
    pub fn text(&self) -> String {
        let updates = if self.suppressed == 1 {
            "update"
        } else {
            "updates"
        };
        format!("{} more {updates} in {}", self.suppressed, self.folder_name)
    }
}

#[derive(Debug, Clone)]
struct Window {
    started_ms: u64,
    shown: usize,
    suppressed: usize,
    folder_name: String,
}

#[derive(Debug, Clone, Default)]
pub struct RateLimiter {
    limit: RateLimit,
    windows: HashMap<String, Window>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter {
            limit,
            windows: HashMap::new(),
        }
    }

    fn ended(&self, window: &Window, now_ms: u64) -> bool {
        now_ms.saturating_sub(window.started_ms) >= self.limit.window_ms
    }

    /// Whether an update for `folder_id` may be shown now. Also returns the summary of
    /// the folder's previous window if it ended with updates left unshown (show it first).
    pub fn check(
        &mut self,
        folder_id: &str,
        folder_name: &str,
        now_ms: u64,
    ) -> (Option<Summary>, Verdict) {
        let mut summary = None;
        if let Some(window) = self.windows.get(folder_id)
            && self.ended(window, now_ms)
        {
            summary = self.take_summary(folder_id);
        }
        let window = self
            .windows
            .entry(folder_id.to_owned())
            .or_insert_with(|| Window {
                started_ms: now_ms,
                shown: 0,
                suppressed: 0,
                folder_name: String::new(),
            });
        folder_name.clone_into(&mut window.folder_name);
        let verdict = if window.shown < self.limit.max_per_window {
            window.shown += 1;
            Verdict::Show
        } else {
            window.suppressed += 1;
            Verdict::Suppress
        };
        (summary, verdict)
    }

    /// Summaries of every window that has ended with updates left unshown; ended windows
    /// are forgotten.
    pub fn due(&mut self, now_ms: u64) -> Vec<Summary> {
        let mut ended: Vec<String> = self
            .windows
            .iter()
            .filter(|(_, window)| self.ended(window, now_ms))
            .map(|(id, _)| id.clone())
            .collect();
        ended.sort();
        ended
            .iter()
            .filter_map(|id| self.take_summary(id))
            .collect()
    }

    /// When the next summary will be due, if one is pending.
    pub fn next_due_ms(&self) -> Option<u64> {
        self.windows
            .values()
            .filter(|window| window.suppressed > 0)
            .map(|window| window.started_ms.saturating_add(self.limit.window_ms))
            .min()
    }

    /// Forgets `folder_id`'s window, returning its summary if it has one.
    fn take_summary(&mut self, folder_id: &str) -> Option<Summary> {
        let window = self.windows.remove(folder_id)?;
        (window.suppressed > 0).then(|| Summary {
            folder_id: folder_id.to_owned(),
            folder_name: window.folder_name,
            suppressed: window.suppressed,
        })
    }
}

/// A [`RateLimiter`] in front of [`Notifier::info`].
#[derive(Debug, Clone, Default)]
pub struct InfoThrottle {
    limiter: RateLimiter,
    /// The title of summary notifications.
    summary_title: String,
}

impl InfoThrottle {
    pub fn new(limit: RateLimit, summary_title: impl Into<String>) -> InfoThrottle {
        InfoThrottle {
            limiter: RateLimiter::new(limit),
            summary_title: summary_title.into(),
        }
    }

    /// Shows the update unless the folder is over its limit; `Ok(true)` if shown.
    pub fn info(
        &mut self,
        notifier: &dyn Notifier,
        folder_id: &str,
        folder_name: &str,
        title: &str,
        body: &str,
        now_ms: u64,
    ) -> Result<bool, NotifyError> {
        let (summary, verdict) = self.limiter.check(folder_id, folder_name, now_ms);
        if let Some(summary) = summary {
            notifier.info(&self.summary_title, &summary.text())?;
        }
        match verdict {
            Verdict::Show => notifier.info(title, body).map(|()| true),
            Verdict::Suppress => Ok(false),
        }
    }

    /// Shows the summaries that are due; returns how many.
    pub fn flush(&mut self, notifier: &dyn Notifier, now_ms: u64) -> Result<usize, NotifyError> {
        let due = self.limiter.due(now_ms);
        for summary in &due {
            notifier.info(&self.summary_title, &summary.text())?;
        }
        Ok(due.len())
    }

    pub fn next_due_ms(&self) -> Option<u64> {
        self.limiter.next_due_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notifications::{ApprovalHandle, ApprovalPrompt};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(String, String)>>);

    impl Notifier for Recorder {
        fn approval(&self, prompt: &ApprovalPrompt) -> Result<ApprovalHandle, NotifyError> {
            Ok(ApprovalHandle {
                request_id: prompt.request_id.clone(),
                notification_id: None,
            })
        }
        fn withdraw(&self, _request_id: &str) {}
        fn info(&self, title: &str, body: &str) -> Result<(), NotifyError> {
            self.0.lock().unwrap().push((title.into(), body.into()));
            Ok(())
        }
    }

    impl Recorder {
        fn take(&self) -> Vec<(String, String)> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    #[test]
    fn three_per_window_then_a_summary() {
        let mut limiter = RateLimiter::new(RateLimit::default());
        let verdicts: Vec<_> = (0..5)
            .map(|i| limiter.check("a", "app", 1_000 + i * 1_000))
            .collect();
        assert!(verdicts.iter().all(|(summary, _)| summary.is_none()));
        let verdicts: Vec<_> = verdicts.into_iter().map(|(_, verdict)| verdict).collect();
        use Verdict::{Show, Suppress};
        assert_eq!(verdicts, [Show, Show, Show, Suppress, Suppress]);
        assert_eq!(limiter.next_due_ms(), Some(61_000));
        // Other folders have their own windows.
        assert_eq!(limiter.check("b", "site", 5_000).1, Show);
        assert!(limiter.due(60_999).is_empty(), "the window is not over yet");
        let due = limiter.due(61_000);
        assert_eq!(
            due,
            [Summary {
                folder_id: "a".into(),
                folder_name: "app".into(),
                suppressed: 2
            }]
        );
        assert_eq!(due[0].text(), "2 more updates in app");
        assert!(limiter.due(61_000).is_empty(), "said once");
        // "b" ended too, without anything suppressed: no summary, and it starts afresh.
        assert!(limiter.due(70_000).is_empty());
        assert_eq!(limiter.next_due_ms(), None);
        assert_eq!(limiter.check("a", "app", 62_000), (None, Show));
    }

    #[test]
    fn an_update_after_the_window_brings_the_summary_first() {
        let mut limiter = RateLimiter::new(RateLimit {
            max_per_window: 1,
            window_ms: 10,
        });
        assert_eq!(limiter.check("a", "app", 0), (None, Verdict::Show));
        assert_eq!(limiter.check("a", "app", 5), (None, Verdict::Suppress));
        let (summary, verdict) = limiter.check("a", "app", 10);
        assert_eq!(summary.unwrap().text(), "1 more update in app");
        assert_eq!(verdict, Verdict::Show, "a new window");
        assert_eq!(limiter.check("a", "app", 12), (None, Verdict::Suppress));
    }

    #[test]
    fn the_throttle_shows_updates_and_summaries() {
        let notifier = Recorder::default();
        let mut throttle = InfoThrottle::new(RateLimit::default(), "Linzumi");
        for i in 0..6u64 {
            let shown = throttle
                .info(&notifier, "a", "app", "Turn finished", &format!("#{i}"), i)
                .unwrap();
            assert_eq!(shown, i < 3);
        }
        assert_eq!(
            notifier.take(),
            [
                ("Turn finished".to_owned(), "#0".to_owned()),
                ("Turn finished".to_owned(), "#1".to_owned()),
                ("Turn finished".to_owned(), "#2".to_owned()),
            ]
        );
        assert_eq!(throttle.next_due_ms(), Some(60_000));
        assert_eq!(throttle.flush(&notifier, 59_999).unwrap(), 0);
        assert_eq!(throttle.flush(&notifier, 60_000).unwrap(), 1);
        assert_eq!(
            notifier.take(),
            [("Linzumi".to_owned(), "3 more updates in app".to_owned())]
        );
        assert!(
            throttle
                .info(&notifier, "a", "app", "t", "b", 60_001)
                .unwrap()
        );
    }
}
