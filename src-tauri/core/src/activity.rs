//! The activity list the window shows: the last [`ACTIVITY_CAPACITY`] sentences about
//! all folders, so the user can see what happened while the window was closed without
//! the list (or the snapshot sent to the UI) growing without bound.
//!
//! The sentences come from [`crate::folder_state::FolderStatus::apply`]; this module only
//! stamps and keeps them. Times are passed in, so it stays pure.
use std::collections::VecDeque;

use serde::Serialize;

use crate::folder_state::{ActivityLevel, Note};

pub const ACTIVITY_CAPACITY: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActivityEntry {
    pub at_unix_ms: u64,
    pub folder_id: String,
    pub level: ActivityLevel,
    pub text: String,
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
    pub fn record(&mut self, at_unix_ms: u64, folder_id: &str, note: Option<Note>) {
        if let Some(Note { level, text }) = note {
            self.push(ActivityEntry {
                at_unix_ms,
                folder_id: folder_id.to_owned(),
                level,
                text,
            });
        }
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
}
