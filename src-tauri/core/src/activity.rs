//! The activity list the window shows: the last [`ACTIVITY_CAPACITY`] sentences about
//! all folders, so the user can see what happened while the window was closed without
//! the list (or the snapshot sent to the UI) growing without bound.
//!
//! The sentences come from [`crate::folder_state::FolderStatus::apply`]; this module only
//! stamps and keeps them. A sentence that repeats the folder's previous one (each failed
//! reconnect says the same) is folded into it: one line with a count and the time range.
//! Times are passed in, so it stays pure.
use std::collections::VecDeque;

use serde::Serialize;

use crate::folder_state::{ActivityLevel, Note};

pub const ACTIVITY_CAPACITY: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActivityEntry {
    /// When it last happened.
    pub at_unix_ms: u64,
    /// When it first happened (the same as `at_unix_ms` unless it repeated).
    pub first_at_unix_ms: u64,
    /// How many times it happened in a row.
    pub count: u32,
    pub folder_id: String,
    pub level: ActivityLevel,
    pub text: String,
    /// The latest raw detail behind the sentence.
    pub details: Option<String>,
}

/// A bounded log, oldest entries dropped first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityLog {
    entries: VecDeque<ActivityEntry>,
    capacity: usize,
}

impl Default for ActivityLog {
    fn default() -> ActivityLog {
        ActivityLog::with_capacity(ACTIVITY_CAPACITY)
    }
}

impl ActivityLog {
    pub fn new() -> ActivityLog {
        ActivityLog::default()
    }

    /// A log keeping at most `capacity` entries (at least one).
    pub fn with_capacity(capacity: usize) -> ActivityLog {
        let capacity = capacity.max(1);
        ActivityLog {
            entries: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    pub fn push(&mut self, entry: ActivityEntry) {
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
    }

    /// Keeps `note` (if any) for `folder_id`: the usual follow-up of `FolderStatus::apply`.
    /// A note that says what the folder's previous entry said is folded into that entry,
    /// which becomes the newest.
    pub fn record(&mut self, at_unix_ms: u64, folder_id: &str, note: Option<Note>) {
        let Some(Note {
            level,
            text,
            details,
        }) = note
        else {
            return;
        };
        let previous = self
            .entries
            .iter()
            .rposition(|entry| entry.folder_id == folder_id);
        if let Some(index) = previous
            && self.entries[index].level == level
            && self.entries[index].text == text
            && let Some(mut entry) = self.entries.remove(index)
        {
            entry.count = entry.count.saturating_add(1);
            entry.at_unix_ms = at_unix_ms;
            entry.details = details;
            self.entries.push_back(entry);
            return;
        }
        self.push(ActivityEntry {
            at_unix_ms,
            first_at_unix_ms: at_unix_ms,
            count: 1,
            folder_id: folder_id.to_owned(),
            level,
            text,
            details,
        });
    }

    /// Oldest first.
    pub fn entries(&self) -> impl DoubleEndedIterator<Item = &ActivityEntry> + ExactSizeIterator {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets a removed folder's entries.
    pub fn forget_folder(&mut self, folder_id: &str) {
        self.entries.retain(|entry| entry.folder_id != folder_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(text: &str) -> Option<Note> {
        Some(Note {
            level: ActivityLevel::Info,
            text: text.into(),
            details: None,
        })
    }

    #[test]
    fn keeps_the_last_hundred() {
        let mut log = ActivityLog::new();
        for i in 0..150u64 {
            log.record(i, "f", note(&format!("n{i}")));
        }
        assert_eq!(log.len(), 100);
        assert_eq!(log.entries().next().unwrap().text, "n50");
        assert_eq!(log.entries().next_back().unwrap().text, "n149");
        assert_eq!(log.entries().next_back().unwrap().at_unix_ms, 149);
    }

    #[test]
    fn records_only_notes_and_forgets_folders() {
        let mut log = ActivityLog::with_capacity(0);
        log.record(1, "a", None);
        assert!(log.is_empty());
        log.record(1, "a", note("one"));
        log.record(2, "b", note("two"));
        assert_eq!(log.len(), 1, "capacity is at least one");
        let mut log = ActivityLog::new();
        log.record(1, "a", note("one"));
        log.record(2, "b", note("two"));
        log.forget_folder("a");
        let left: Vec<_> = log
            .entries()
            .map(|entry| entry.folder_id.as_str())
            .collect();
        assert_eq!(left, ["b"]);
    }

    #[test]
    fn repeats_fold_into_one_line_with_a_count_and_a_time_range() {
        let mut log = ActivityLog::new();
        let retry = |details: &str| {
            Some(Note {
                level: ActivityLevel::Warning,
                text: "Still cannot reach Kandan; retrying".into(),
                details: Some(details.into()),
            })
        };
        log.record(10, "a", note("Lost the connection"));
        log.record(20, "a", retry("one"));
        // Another folder's entries in between do not stop the folding.
        log.record(25, "b", retry("b's"));
        log.record(30, "a", retry("two"));
        log.record(40, "a", retry("three"));
        let entries: Vec<_> = log.entries().collect();
        assert_eq!(entries.len(), 3);
        let folded = entries[2];
        assert_eq!(folded.folder_id, "a");
        assert_eq!(
            (folded.count, folded.first_at_unix_ms, folded.at_unix_ms),
            (3, 20, 40)
        );
        assert_eq!(
            folded.details.as_deref(),
            Some("three"),
            "the latest detail"
        );
        assert_eq!(entries[1].count, 1, "b's own line");
        // Something else in between starts a new line.
        log.record(50, "a", note("Reconnected"));
        log.record(60, "a", retry("four"));
        assert_eq!(log.len(), 5);
        assert_eq!(log.entries().next_back().unwrap().count, 1);
    }
}
