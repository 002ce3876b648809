//! Chat sessions (protocol §5) on top of the chat model: which runner is bound to which channel
//! and thread, the `session:message` pushes to bound runners, and a change signal for waiters
//! (tests, the SSE stream of the demo page).
//!
//! Bindings are keyed by runner id and, like the chat itself, belong to the server rather than
//! to a socket: they survive reconnects and restarts. While a runner is away its pushes are lost
//! (nobody has joined its topic); it catches up by re-binding with `after_seq`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::chat_store::{ChannelKey, ChatError, ChatMessage, ChatStore, NewMessage, Typing};
use crate::registry::Registry;
use crate::runner_topic::RunnerTopic;
use crate::sync::lock;

/// The push that hands a chat message to a bound runner.
pub(crate) const SESSION_MESSAGE: &str = "session:message";

/// What a runner asked for with `session:bind`.
#[derive(Debug, Clone)]
pub(crate) struct BindRequest {
    pub runner_id: String,
    pub key: ChannelKey,
    pub thread_id: Option<String>,
    pub after_seq: Option<i64>,
}

/// The bind reply's facts, and the messages the runner missed (`seq > after_seq`).
#[derive(Debug, Clone)]
pub(crate) struct Bound {
    pub root_seq: Option<i64>,
    pub cursor_seq: i64,
    /// `session:message` payloads, in seq order, for the binding socket only.
    pub catch_up: Vec<Value>,
}

/// A runner's binding.
#[derive(Debug, Clone)]
struct Binding {
    key: ChannelKey,
}

#[derive(Default)]
struct State {
    store: ChatStore,
    bindings: HashMap<String, Binding>,
}

pub(crate) struct ChatSessions {
    state: Mutex<State>,
    /// Bumped after every change to any channel.
    changed: watch::Sender<u64>,
}

impl Default for ChatSessions {
    fn default() -> Self {
        ChatSessions {
            state: Mutex::new(State::default()),
            changed: watch::Sender::new(0),
        }
    }
}

impl ChatSessions {
    /// Binds (or re-binds) `runner_id` to a channel, creating the channel if needed.
    pub(crate) fn bind(&self, request: BindRequest) -> Result<Bound, ChatError> {
        let mut state = lock(&self.state);
        let root_seq = match &request.thread_id {
            Some(thread_id) => Some(
                state
                    .store
                    .root_seq(&request.key, thread_id)
                    .ok_or(ChatError::ThreadNotFound)?,
            ),
            None => None,
        };
        state.store.ensure_channel(&request.key);
        let cursor_seq = state.store.last_seq(&request.key);
        let after = request.after_seq.unwrap_or(cursor_seq);
        let catch_up = state
            .store
            .messages_after(&request.key, after)
            .iter()
            .filter(|message| message.posted_by_runner.as_deref() != Some(&request.runner_id))
            .map(|message| session_message(&request.key, message))
            .collect();
        // Registered under the same lock as the catch-up is read: a message posted from now on
        // is pushed live, never both or neither.
        state.bindings.insert(
            request.runner_id,
            Binding {
                key: request.key.clone(),
            },
        );
        Ok(Bound {
            root_seq,
            cursor_seq,
            catch_up,
        })
    }

    /// Stores a message and pushes it to every runner bound to the channel except the one
    /// that posted it. A retried runner post (same `client_id`) is not pushed again.
    pub(crate) fn post(
        &self,
        registry: &Registry,
        key: &ChannelKey,
        new: NewMessage,
    ) -> Result<ChatMessage, ChatError> {
        let message = {
            let mut state = lock(&self.state);
            let posted = state.store.post(key, new, SystemTime::now())?;
            if !posted.retried {
                let payload = session_message(key, &posted.message);
                let poster = posted.message.posted_by_runner.as_deref();
                // Pushed while the lock is held, so every runner gets messages in seq order.
                for (runner_id, binding) in &state.bindings {
                    if binding.key == *key && Some(runner_id.as_str()) != poster {
                        let topic = format!("{}{runner_id}", RunnerTopic::PREFIX);
                        registry.push_to_topic(&topic, SESSION_MESSAGE, &payload);
                    }
                }
            }
            posted.message
        };
        // A retry may have changed the stored row; waiters re-check either way.
        self.notify();
        Ok(message)
    }

    pub(crate) fn update(
        &self,
        key: &ChannelKey,
        thread_id: &str,
        seq: i64,
        runner_id: &str,
        body: String,
        payload: Value,
    ) -> Result<ChatMessage, ChatError> {
        let updated = lock(&self.state)
            .store
            .update(key, thread_id, seq, runner_id, body, payload)?;
        self.notify();
        Ok(updated)
    }

    pub(crate) fn set_state(
        &self,
        key: &ChannelKey,
        thread_id: Option<&str>,
        seq: i64,
        state: Value,
    ) -> Result<(), ChatError> {
        lock(&self.state)
            .store
            .set_state(key, thread_id, seq, state)?;
        self.notify();
        Ok(())
    }

    pub(crate) fn set_typing(
        &self,
        key: &ChannelKey,
        thread_id: &str,
        runner_id: &str,
        typing: bool,
    ) -> Result<(), ChatError> {
        lock(&self.state)
            .store
            .set_typing(key, thread_id, runner_id, typing)?;
        self.notify();
        Ok(())
    }

    pub(crate) fn messages(&self, key: &ChannelKey) -> Vec<ChatMessage> {
        lock(&self.state).store.messages(key)
    }

    pub(crate) fn thread(&self, key: &ChannelKey, thread_id: &str) -> Vec<ChatMessage> {
        lock(&self.state).store.thread(key, thread_id)
    }

    pub(crate) fn threads(&self, key: &ChannelKey) -> Vec<String> {
        lock(&self.state).store.threads(key)
    }

    pub(crate) fn message(&self, key: &ChannelKey, seq: i64) -> Option<ChatMessage> {
        lock(&self.state).store.message(key, seq)
    }

    /// The channel's messages, who is typing, and the channel's version, read together.
    pub(crate) fn snapshot(&self, key: &ChannelKey) -> (Vec<ChatMessage>, Vec<Typing>, u64) {
        let state = lock(&self.state);
        (
            state.store.messages(key),
            state.store.typing(key),
            state.store.version(key),
        )
    }

    pub(crate) fn typing(&self, key: &ChannelKey) -> Vec<Typing> {
        lock(&self.state).store.typing(key)
    }

    /// A receiver that sees a new value after every change to any channel.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Resolves with the channel's messages as soon as `pred` holds for them.
    pub(crate) async fn wait_for(
        &self,
        key: &ChannelKey,
        pred: impl Fn(&[ChatMessage]) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<Vec<ChatMessage>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.subscribe();
        loop {
            // Marking the value seen before reading means a change in between still wakes us.
            changes.borrow_and_update();
            let messages = self.messages(key);
            if pred(&messages) {
                return Ok(messages);
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                // The sender lives as long as `self`, so this cannot happen while we borrow it.
                Ok(Err(_)) => anyhow::bail!("chat store was dropped"),
                Err(_) => anyhow::bail!(
                    "the messages of {}/{} did not match within {timeout:?}; they are:\n{}",
                    key.workspace,
                    key.channel,
                    summary(&messages)
                ),
            }
        }
    }

    fn notify(&self) {
        self.changed.send_modify(|version| *version += 1);
    }
}

/// The `session:message` payload of protocol §5.2 (`payload` is null for a person's message).
pub(crate) fn session_message(key: &ChannelKey, message: &ChatMessage) -> Value {
    json!({
        "workspace": key.workspace,
        "channel": key.channel,
        "thread_id": message.thread_id,
        "seq": message.seq,
        "reply_to_seq": message.reply_to_seq,
        "actor_slug": message.actor_slug,
        "actor_user_id": message.actor_user_id,
        "body": message.body,
        "payload": message.payload,
        "inserted_at": message.inserted_at,
    })
}

/// One line per message, for timeout errors.
fn summary(messages: &[ChatMessage]) -> String {
    let lines: Vec<String> = messages
        .iter()
        .map(|message| {
            let state = message
                .state
                .as_ref()
                .and_then(|state| state.get("status"))
                .and_then(Value::as_str)
                .unwrap_or("-");
            format!(
                "  #{} thread={} by={} state={state} updates={} body={:?}",
                message.seq,
                message.thread_id,
                message.actor_slug,
                message.updated_count,
                message.body
            )
        })
        .collect();
    if lines.is_empty() {
        "  (none)".to_owned()
    } else {
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat_store::Actor;
    use crate::registry::{JoinedChannel, Outbound};
    use std::sync::Arc;

    fn key() -> ChannelKey {
        ChannelKey::new("acme", "codex")
    }

    fn message(thread_id: Option<&str>, runner_id: Option<&str>, body: &str) -> NewMessage {
        NewMessage {
            thread_id: thread_id.map(str::to_owned),
            actor: Actor {
                slug: "sean".into(),
                user_id: 7,
                runner_id: runner_id.map(str::to_owned),
            },
            body: body.into(),
            payload: json!({}),
            reply_to_seq: None,
            client_id: None,
        }
    }

    fn bind(sessions: &ChatSessions, runner_id: &str, after_seq: Option<i64>) -> Bound {
        sessions
            .bind(BindRequest {
                runner_id: runner_id.into(),
                key: key(),
                thread_id: None,
                after_seq,
            })
            .expect("bound")
    }

    /// Bodies of the `session:message` pushes queued for a registration.
    fn pushed_bodies(outbound: &mut tokio::sync::mpsc::UnboundedReceiver<Outbound>) -> Vec<Value> {
        let mut bodies = Vec::new();
        while let Ok(Outbound::Frame(frame)) = outbound.try_recv() {
            assert_eq!(frame.event, SESSION_MESSAGE);
            bodies.push(frame.payload["body"].clone());
        }
        bodies
    }

    #[test]
    fn binds_report_the_cursor_and_catch_up_after_after_seq() {
        let sessions = ChatSessions::default();
        let registry = Registry::default();
        let root = sessions
            .post(&registry, &key(), message(None, None, "one"))
            .expect("posted");
        sessions
            .post(
                &registry,
                &key(),
                message(Some(&root.thread_id), None, "two"),
            )
            .expect("posted");
        let bound = bind(&sessions, "r1", None);
        assert_eq!((bound.cursor_seq, bound.root_seq), (2, None));
        assert!(bound.catch_up.is_empty(), "history is not replayed");
        let bound = bind(&sessions, "r1", Some(1));
        assert_eq!(bound.catch_up.len(), 1);
        assert_eq!(bound.catch_up[0]["body"], json!("two"));
        assert_eq!(bound.catch_up[0]["reply_to_seq"], json!(1));

        let missing = sessions.bind(BindRequest {
            runner_id: "r1".into(),
            key: key(),
            thread_id: Some("nope".into()),
            after_seq: None,
        });
        assert_eq!(missing.err(), Some(ChatError::ThreadNotFound));
    }

    #[test]
    fn posts_reach_bound_runners_but_not_the_poster() {
        let sessions = ChatSessions::default();
        let registry = Registry::default();
        let mut r1 = registry.register();
        let mut r2 = registry.register();
        let joined = JoinedChannel {
            join_ref: Some("1".into()),
            reply_join_ref: Some("1".into()),
        };
        registry.insert_channel(r1.id, "local_runner:r1", joined.clone());
        registry.insert_channel(r2.id, "local_runner:r2", joined);
        bind(&sessions, "r1", None);
        bind(&sessions, "r2", None);

        sessions
            .post(&registry, &key(), message(None, Some("r1"), "from r1"))
            .expect("posted");
        sessions
            .post(&registry, &key(), message(None, None, "from sean"))
            .expect("posted");
        sessions
            .post(
                &registry,
                &ChannelKey::new("acme", "other"),
                message(None, None, "elsewhere"),
            )
            .expect("posted");
        assert_eq!(pushed_bodies(&mut r1.outbound), vec![json!("from sean")]);
        assert_eq!(
            pushed_bodies(&mut r2.outbound),
            vec![json!("from r1"), json!("from sean")]
        );
    }

    #[tokio::test]
    async fn wait_for_wakes_on_changes_and_times_out() {
        let sessions = Arc::new(ChatSessions::default());
        let waiter = {
            let sessions = Arc::clone(&sessions);
            tokio::spawn(async move {
                sessions
                    .wait_for(
                        &key(),
                        |messages| messages.iter().any(|m| m.state.is_some()),
                        Duration::from_secs(5),
                    )
                    .await
            })
        };
        tokio::task::yield_now().await;
        let registry = Registry::default();
        sessions
            .post(&registry, &key(), message(None, None, "hi"))
            .expect("posted");
        sessions
            .set_state(&key(), None, 1, json!({"status": "queued"}))
            .expect("state");
        let messages = waiter.await.expect("join").expect("matched");
        assert_eq!(messages.len(), 1);

        let error = sessions
            .wait_for(&key(), |_| false, Duration::from_millis(20))
            .await
            .expect_err("times out");
        assert!(error.to_string().contains("#1 thread="), "{error}");
    }
}
