//! In-memory chat model: channels (created on first use) hold threads of messages, each
//! numbered by a per-channel, strictly increasing `seq` (as Kandan numbers them), together with
//! each message's latest runner-reported state, how often it was edited, and which runner is
//! typing in which thread.
//!
//! It knows nothing about Phoenix or runner bindings: `chat_sessions` drives it.

use std::collections::{BTreeSet, HashMap};
use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;

use crate::timestamp::rfc3339_millis;

/// A message as stored, with its current body, payload and state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatMessage {
    /// Per channel, strictly increasing from 1.
    pub seq: i64,
    pub thread_id: String,
    /// The message this one answers: a thread reply answers the root unless the poster says
    /// otherwise; a root answers nothing.
    pub reply_to_seq: Option<i64>,
    pub actor_slug: String,
    pub actor_user_id: i64,
    /// `Some(runner_id)` for rows a runner posted (the actor is then its token's user).
    pub posted_by_runner: Option<String>,
    pub body: String,
    /// The runner row's payload (`source`, `runner_id`, `structured`, ...; protocol §5.3);
    /// `Null` for a person's message.
    pub payload: Value,
    /// The latest `message_state` payload the runner sent for this message, as sent.
    pub state: Option<Value>,
    /// How many times `session:update_thread_message` replaced the body and payload.
    pub updated_count: usize,
    /// RFC 3339 UTC with milliseconds, the `inserted_at` of `session:message`.
    pub inserted_at: String,
}

/// A Kandan channel: `(workspace slug, channel slug)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ChannelKey {
    pub workspace: String,
    pub channel: String,
}

impl ChannelKey {
    pub(crate) fn new(workspace: &str, channel: &str) -> ChannelKey {
        ChannelKey {
            workspace: workspace.to_owned(),
            channel: channel.to_owned(),
        }
    }
}

/// Who posts a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Actor {
    pub slug: String,
    pub user_id: i64,
    /// Set when a runner posts on behalf of its token's user.
    pub runner_id: Option<String>,
}

/// A message to post; `thread_id: None` starts a new thread whose root is this message.
#[derive(Debug, Clone)]
pub(crate) struct NewMessage {
    pub thread_id: Option<String>,
    pub actor: Actor,
    pub body: String,
    /// `Null` for a person's message.
    pub payload: Value,
    pub reply_to_seq: Option<i64>,
    /// A runner's idempotency key: posting again with the same one (a retry after a dropped
    /// connection) answers with the message already stored instead of storing another.
    pub client_id: Option<String>,
}

/// What a post did.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Posted {
    pub message: ChatMessage,
    /// The post repeated an earlier one's `client_id`: nothing new was stored (the stored
    /// message took the retry's body and payload if they differed).
    pub retried: bool,
}

/// Who is typing where.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub(crate) struct Typing {
    pub thread_id: String,
    pub runner_id: String,
}

/// Why a chat operation was refused; `Display` is the protocol's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ChatError {
    #[error("thread_not_found")]
    ThreadNotFound,
    #[error("message_not_found")]
    MessageNotFound,
    #[error("not_your_message")]
    NotYourMessage,
}

#[derive(Default)]
struct Channel {
    /// In seq order; messages are never removed, so `seq == index + 1`.
    messages: Vec<ChatMessage>,
    /// Thread ids with their root seq, in the order the threads were started.
    threads: Vec<(String, i64)>,
    typing: BTreeSet<Typing>,
    /// `(runner id, client id)` of runner posts → their seq.
    client_ids: HashMap<(String, String), i64>,
    /// Bumped by every change, so watchers can tell whether anything happened.
    version: u64,
}

impl Channel {
    fn last_seq(&self) -> i64 {
        self.messages.last().map_or(0, |message| message.seq)
    }

    fn root_seq(&self, thread_id: &str) -> Option<i64> {
        self.threads
            .iter()
            .find(|(id, _)| id == thread_id)
            .map(|(_, root)| *root)
    }

    fn message_mut(&mut self, seq: i64) -> Option<&mut ChatMessage> {
        let index = usize::try_from(seq.checked_sub(1)?).ok()?;
        self.messages.get_mut(index)
    }
}

#[derive(Default)]
pub(crate) struct ChatStore {
    channels: HashMap<ChannelKey, Channel>,
}

impl ChatStore {
    /// Creates the channel if it does not exist yet.
    pub(crate) fn ensure_channel(&mut self, key: &ChannelKey) {
        self.channels.entry(key.clone()).or_default();
    }

    /// Stores the message and returns it with its seq, thread id and timestamp filled in, or
    /// recognizes a runner's retried post by its `client_id`.
    pub(crate) fn post(
        &mut self,
        key: &ChannelKey,
        new: NewMessage,
        now: SystemTime,
    ) -> Result<Posted, ChatError> {
        let channel = self.channels.entry(key.clone()).or_default();
        let retry_key = new.actor.runner_id.clone().zip(new.client_id.clone());
        if let Some(seq) = retry_key
            .as_ref()
            .and_then(|retry_key| channel.client_ids.get(retry_key))
            .copied()
            && let Some(message) = channel.message_mut(seq)
        {
            let changed = message.body != new.body || message.payload != new.payload;
            if changed {
                message.body = new.body;
                message.payload = new.payload;
                message.updated_count += 1;
            }
            let message = message.clone();
            if changed {
                channel.version += 1;
            }
            return Ok(Posted {
                message,
                retried: true,
            });
        }
        let (thread_id, root_seq) = match new.thread_id {
            Some(id) => {
                let root = channel.root_seq(&id).ok_or(ChatError::ThreadNotFound)?;
                (id, Some(root))
            }
            None => (uuid::Uuid::new_v4().to_string(), None),
        };
        let seq = channel.last_seq() + 1;
        let message = ChatMessage {
            seq,
            reply_to_seq: new.reply_to_seq.or(root_seq),
            actor_slug: new.actor.slug,
            actor_user_id: new.actor.user_id,
            posted_by_runner: new.actor.runner_id,
            body: new.body,
            payload: new.payload,
            state: None,
            updated_count: 0,
            inserted_at: rfc3339_millis(now),
            thread_id,
        };
        if root_seq.is_none() {
            channel.threads.push((message.thread_id.clone(), seq));
        }
        if let Some(retry_key) = retry_key {
            channel.client_ids.insert(retry_key, seq);
        }
        channel.messages.push(message.clone());
        channel.version += 1;
        Ok(Posted {
            message,
            retried: false,
        })
    }

    /// Replaces the body and payload of a message that `runner_id` posted in `thread_id`.
    pub(crate) fn update(
        &mut self,
        key: &ChannelKey,
        thread_id: &str,
        seq: i64,
        runner_id: &str,
        body: String,
        payload: Value,
    ) -> Result<ChatMessage, ChatError> {
        let channel = self
            .channels
            .get_mut(key)
            .ok_or(ChatError::MessageNotFound)?;
        let message = channel
            .message_mut(seq)
            .filter(|message| message.thread_id == thread_id)
            .ok_or(ChatError::MessageNotFound)?;
        if message.posted_by_runner.as_deref() != Some(runner_id) {
            return Err(ChatError::NotYourMessage);
        }
        message.body = body;
        message.payload = payload;
        message.updated_count += 1;
        let updated = message.clone();
        channel.version += 1;
        Ok(updated)
    }

    /// Records the latest `message_state` of a message (of `thread_id`, when given).
    pub(crate) fn set_state(
        &mut self,
        key: &ChannelKey,
        thread_id: Option<&str>,
        seq: i64,
        state: Value,
    ) -> Result<(), ChatError> {
        let channel = self
            .channels
            .get_mut(key)
            .ok_or(ChatError::MessageNotFound)?;
        let message = channel
            .message_mut(seq)
            .filter(|message| thread_id.is_none_or(|id| message.thread_id == id))
            .ok_or(ChatError::MessageNotFound)?;
        message.state = Some(state);
        channel.version += 1;
        Ok(())
    }

    /// Sets or clears `runner_id`'s typing flag in a thread.
    pub(crate) fn set_typing(
        &mut self,
        key: &ChannelKey,
        thread_id: &str,
        runner_id: &str,
        typing: bool,
    ) -> Result<(), ChatError> {
        let channel = self
            .channels
            .get_mut(key)
            .filter(|channel| channel.root_seq(thread_id).is_some())
            .ok_or(ChatError::ThreadNotFound)?;
        let entry = Typing {
            thread_id: thread_id.to_owned(),
            runner_id: runner_id.to_owned(),
        };
        let changed = if typing {
            channel.typing.insert(entry)
        } else {
            channel.typing.remove(&entry)
        };
        if changed {
            channel.version += 1;
        }
        Ok(())
    }

    /// Every message of the channel, in seq order.
    pub(crate) fn messages(&self, key: &ChannelKey) -> Vec<ChatMessage> {
        self.channels
            .get(key)
            .map(|channel| channel.messages.clone())
            .unwrap_or_default()
    }

    /// Messages of the channel with a seq above `after`, in seq order.
    pub(crate) fn messages_after(&self, key: &ChannelKey, after: i64) -> Vec<ChatMessage> {
        let Some(channel) = self.channels.get(key) else {
            return Vec::new();
        };
        let start = usize::try_from(after).unwrap_or(0);
        channel.messages.iter().skip(start).cloned().collect()
    }

    pub(crate) fn message(&self, key: &ChannelKey, seq: i64) -> Option<ChatMessage> {
        let index = usize::try_from(seq.checked_sub(1)?).ok()?;
        self.channels.get(key)?.messages.get(index).cloned()
    }

    /// One thread's messages, in seq order.
    pub(crate) fn thread(&self, key: &ChannelKey, thread_id: &str) -> Vec<ChatMessage> {
        let mut messages = self.messages(key);
        messages.retain(|message| message.thread_id == thread_id);
        messages
    }

    /// Thread ids, oldest thread first.
    pub(crate) fn threads(&self, key: &ChannelKey) -> Vec<String> {
        self.channels
            .get(key)
            .map(|channel| channel.threads.iter().map(|(id, _)| id.clone()).collect())
            .unwrap_or_default()
    }

    pub(crate) fn root_seq(&self, key: &ChannelKey, thread_id: &str) -> Option<i64> {
        self.channels.get(key)?.root_seq(thread_id)
    }

    /// The channel's newest seq (0 when it has no messages).
    pub(crate) fn last_seq(&self, key: &ChannelKey) -> i64 {
        self.channels.get(key).map_or(0, Channel::last_seq)
    }

    pub(crate) fn typing(&self, key: &ChannelKey) -> Vec<Typing> {
        self.channels
            .get(key)
            .map(|channel| channel.typing.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Changes so far to the channel (0 for a channel never used).
    pub(crate) fn version(&self, key: &ChannelKey) -> u64 {
        self.channels.get(key).map_or(0, |channel| channel.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(channel: &str) -> ChannelKey {
        ChannelKey::new("acme", channel)
    }

    fn by(slug: &str, runner_id: Option<&str>) -> Actor {
        Actor {
            slug: slug.into(),
            user_id: 1,
            runner_id: runner_id.map(str::to_owned),
        }
    }

    fn new(thread_id: Option<&str>, actor: Actor) -> NewMessage {
        NewMessage {
            thread_id: thread_id.map(str::to_owned),
            actor,
            body: "hello".into(),
            payload: json!({}),
            reply_to_seq: None,
            client_id: None,
        }
    }

    fn post(store: &mut ChatStore, channel: &str, thread_id: Option<&str>) -> ChatMessage {
        store
            .post(
                &key(channel),
                new(thread_id, by("sean", None)),
                SystemTime::now(),
            )
            .expect("posted")
            .message
    }

    #[test]
    fn seq_increases_per_channel() {
        let mut store = ChatStore::default();
        assert_eq!(post(&mut store, "codex", None).seq, 1);
        assert_eq!(post(&mut store, "codex", None).seq, 2);
        assert_eq!(post(&mut store, "general", None).seq, 1);
        assert_eq!(post(&mut store, "codex", None).seq, 3);
        assert_eq!(store.messages(&key("codex")).len(), 3);
        assert_eq!(store.last_seq(&key("codex")), 3);
        assert_eq!(store.last_seq(&key("nowhere")), 0);
        let after: Vec<i64> = store
            .messages_after(&key("codex"), 1)
            .iter()
            .map(|m| m.seq)
            .collect();
        assert_eq!(after, vec![2, 3]);
    }

    #[test]
    fn threads_are_started_or_continued() {
        let mut store = ChatStore::default();
        let first = post(&mut store, "codex", None);
        let second = post(&mut store, "codex", None);
        assert_ne!(first.thread_id, second.thread_id, "a new thread each time");
        assert_eq!(first.reply_to_seq, None);
        let reply = post(&mut store, "codex", Some(&first.thread_id));
        assert_eq!(reply.thread_id, first.thread_id);
        assert_eq!(
            reply.reply_to_seq,
            Some(first.seq),
            "replies answer the root"
        );
        assert_eq!(
            store.threads(&key("codex")),
            vec![first.thread_id.clone(), second.thread_id]
        );
        let seqs: Vec<i64> = store
            .thread(&key("codex"), &first.thread_id)
            .iter()
            .map(|m| m.seq)
            .collect();
        assert_eq!(seqs, vec![1, 3]);
        assert_eq!(store.root_seq(&key("codex"), &first.thread_id), Some(1));
    }

    #[test]
    fn posting_into_an_unknown_thread_fails() {
        let mut store = ChatStore::default();
        let other = post(&mut store, "general", None);
        let result = store.post(
            &key("codex"),
            new(Some(&other.thread_id), by("sean", None)),
            SystemTime::now(),
        );
        assert_eq!(result, Err(ChatError::ThreadNotFound));
    }

    #[test]
    fn a_retried_runner_post_is_recognized_by_its_client_id() {
        let mut store = ChatStore::default();
        let with_client_id = |runner: &str, client_id: &str, body: &str| NewMessage {
            client_id: Some(client_id.into()),
            body: body.into(),
            ..new(None, by("sean", Some(runner)))
        };
        let first = store
            .post(
                &key("codex"),
                with_client_id("r1", "c:root", "ready"),
                SystemTime::now(),
            )
            .expect("posted");
        assert!(!first.retried);
        let retry = store
            .post(
                &key("codex"),
                with_client_id("r1", "c:root", "ready!"),
                SystemTime::now(),
            )
            .expect("retried");
        assert!(retry.retried);
        assert_eq!(retry.message.seq, first.message.seq);
        assert_eq!(
            (retry.message.body.as_str(), retry.message.updated_count),
            ("ready!", 1)
        );
        let other_runner = store
            .post(
                &key("codex"),
                with_client_id("r2", "c:root", "ready"),
                SystemTime::now(),
            )
            .expect("posted");
        assert!(!other_runner.retried, "client ids are per runner");
        assert_eq!(store.messages(&key("codex")).len(), 2);
    }

    #[test]
    fn only_the_posting_runner_may_update() {
        let mut store = ChatStore::default();
        let root = post(&mut store, "codex", None);
        let row = store
            .post(
                &key("codex"),
                new(Some(&root.thread_id), by("sean", Some("r1"))),
                SystemTime::now(),
            )
            .expect("posted")
            .message;
        let update = |store: &mut ChatStore, thread: &str, seq: i64, runner: &str| {
            store.update(
                &key("codex"),
                thread,
                seq,
                runner,
                "new".into(),
                json!({"n": 1}),
            )
        };
        let updated = update(&mut store, &root.thread_id, row.seq, "r1").expect("own row");
        assert_eq!((updated.body.as_str(), updated.updated_count), ("new", 1));
        assert_eq!(
            update(&mut store, &root.thread_id, row.seq, "r2"),
            Err(ChatError::NotYourMessage)
        );
        assert_eq!(
            update(&mut store, &root.thread_id, root.seq, "r1"),
            Err(ChatError::NotYourMessage),
            "a human's message"
        );
        assert_eq!(
            update(&mut store, &root.thread_id, 99, "r1"),
            Err(ChatError::MessageNotFound)
        );
        assert_eq!(
            update(&mut store, "other-thread", row.seq, "r1"),
            Err(ChatError::MessageNotFound)
        );
        assert_eq!(
            store.message(&key("codex"), row.seq).map(|m| m.payload),
            Some(json!({"n": 1}))
        );
    }

    #[test]
    fn states_and_typing_are_recorded_and_bump_the_version() {
        let mut store = ChatStore::default();
        let root = post(&mut store, "codex", None);
        let version = store.version(&key("codex"));
        store
            .set_state(&key("codex"), None, 1, json!({"status": "queued"}))
            .expect("state");
        assert_eq!(
            store.message(&key("codex"), 1).and_then(|m| m.state),
            Some(json!({"status": "queued"}))
        );
        assert_eq!(
            store.set_state(&key("codex"), Some("nope"), 1, json!({})),
            Err(ChatError::MessageNotFound)
        );
        store
            .set_typing(&key("codex"), &root.thread_id, "r1", true)
            .expect("typing");
        assert_eq!(store.typing(&key("codex")).len(), 1);
        assert_eq!(store.version(&key("codex")), version + 2);
        store
            .set_typing(&key("codex"), &root.thread_id, "r1", true)
            .expect("typing again");
        assert_eq!(store.version(&key("codex")), version + 2, "no change");
        store
            .set_typing(&key("codex"), &root.thread_id, "r1", false)
            .expect("stopped");
        assert!(store.typing(&key("codex")).is_empty());
        assert_eq!(
            store.set_typing(&key("codex"), "nope", "r1", true),
            Err(ChatError::ThreadNotFound)
        );
    }
}
