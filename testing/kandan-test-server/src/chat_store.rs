//! In-memory chat model: channels hold threads of messages, each message numbered by a
//! per-channel, strictly increasing `seq` (as Kandan numbers them).
//!
//! This is the part of the fake Kandan that later work grows (reactions, edits, message states),
//! so it knows nothing about Phoenix: the runner topic translates pushes into calls here.

use std::collections::HashMap;
use std::time::SystemTime;

use serde_json::Value;

/// A message as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    pub workspace: String,
    pub channel: String,
    pub thread_id: String,
    pub seq: u64,
    pub author_user_id: i64,
    pub body: String,
    /// Structured data attached to the message (runner metadata, approval prompts, ...).
    pub payload: Value,
    pub reply_to_seq: Option<u64>,
    pub posted_at: SystemTime,
}

/// A message to post; `thread_id: None` starts a new thread.
#[derive(Debug, Clone)]
pub(crate) struct NewMessage {
    pub workspace: String,
    pub channel: String,
    pub thread_id: Option<String>,
    pub author_user_id: i64,
    pub body: String,
    pub payload: Value,
    pub reply_to_seq: Option<u64>,
}

#[derive(Default)]
pub(crate) struct ChatStore {
    messages: Vec<ChatMessage>,
    /// Last seq handed out, per (workspace, channel).
    last_seq: HashMap<(String, String), u64>,
}

impl ChatStore {
    /// Stores the message and returns it with its seq and thread id filled in.
    pub(crate) fn post(&mut self, new: NewMessage) -> ChatMessage {
        let last = self
            .last_seq
            .entry((new.workspace.clone(), new.channel.clone()))
            .or_insert(0);
        *last += 1;
        let message = ChatMessage {
            seq: *last,
            thread_id: new
                .thread_id
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            workspace: new.workspace,
            channel: new.channel,
            author_user_id: new.author_user_id,
            body: new.body,
            payload: new.payload,
            reply_to_seq: new.reply_to_seq,
            posted_at: SystemTime::now(),
        };
        self.messages.push(message.clone());
        message
    }

    /// Messages of one channel, in seq order.
    pub(crate) fn channel_messages(&self, workspace: &str, channel: &str) -> Vec<ChatMessage> {
        self.messages
            .iter()
            .filter(|message| message.workspace == workspace && message.channel == channel)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn new(channel: &str, thread_id: Option<&str>) -> NewMessage {
        NewMessage {
            workspace: "acme".into(),
            channel: channel.into(),
            thread_id: thread_id.map(str::to_owned),
            author_user_id: 1,
            body: "hello".into(),
            payload: json!({}),
            reply_to_seq: None,
        }
    }

    #[test]
    fn seq_increases_per_channel() {
        let mut store = ChatStore::default();
        assert_eq!(store.post(new("codex", None)).seq, 1);
        assert_eq!(store.post(new("codex", None)).seq, 2);
        assert_eq!(store.post(new("general", None)).seq, 1);
        assert_eq!(store.post(new("codex", None)).seq, 3);
        assert_eq!(store.channel_messages("acme", "codex").len(), 3);
    }

    #[test]
    fn threads_are_created_or_continued() {
        let mut store = ChatStore::default();
        let first = store.post(new("codex", None));
        let second = store.post(new("codex", None));
        assert_ne!(first.thread_id, second.thread_id, "a new thread each time");
        let reply = store.post(new("codex", Some(&first.thread_id)));
        assert_eq!(reply.thread_id, first.thread_id);
    }
}
