//! The chat-session events of the runner topic (protocol §5 and `message_state` of §4.4):
//! reads each payload strictly, checks the socket's token scope, and applies it to the chat
//! sessions. Replies follow the protocol: `{reason}` errors such as `thread_not_found`, or
//! `invalid <event> payload: <problem>` for a payload the protocol does not allow.

use serde_json::{Map, Value, json};

use crate::channels::{ChannelContext, PushOutcome};
use crate::chat_sessions::{BindRequest, SESSION_MESSAGE};
use crate::chat_store::{Actor, ChannelKey, NewMessage};
use crate::frame::ReplyStatus;

pub(crate) const BIND: &str = "session:bind";
pub(crate) const POST_THREAD_MESSAGE: &str = "session:post_thread_message";
pub(crate) const UPDATE_THREAD_MESSAGE: &str = "session:update_thread_message";
pub(crate) const TYPING: &str = "session:typing";
pub(crate) const MESSAGE_STATE: &str = "message_state";

/// `listen_user` value that accepts messages from anyone.
const LISTEN_ALL: &str = "all";
/// The statuses of §4.4.
const STATUSES: [&str; 5] = ["queued", "processing", "processed", "failed", "ignored"];

/// Handles `event` if it is a chat-session event; `None` otherwise.
pub(crate) fn handle(
    ctx: &ChannelContext<'_>,
    runner_id: &str,
    event: &str,
    payload: &Value,
) -> Option<PushOutcome> {
    let outcome = match event {
        BIND => bind(ctx, runner_id, payload),
        POST_THREAD_MESSAGE => post(ctx, runner_id, payload),
        UPDATE_THREAD_MESSAGE => update(ctx, runner_id, payload),
        TYPING => typing(ctx, runner_id, payload),
        MESSAGE_STATE => message_state(ctx, payload),
        _ => return None,
    };
    Some(outcome.unwrap_or_else(|refusal| refusal))
}

/// Either way, the answer to the push.
type Handled = Result<PushOutcome, PushOutcome>;

fn bind(ctx: &ChannelContext<'_>, runner_id: &str, payload: &Value) -> Handled {
    let fields = Fields::new(BIND, payload);
    let key = fields.channel_key()?;
    let thread_id = fields.optional_string("thread_id")?;
    let after_seq = fields.optional_integer("after_seq")?;
    // The protocol's default listen user is the signed-in user.
    let listen_user = fields
        .optional_string("listen_user")?
        .unwrap_or_else(|| ctx.socket.user.slug.clone());
    check_scope(ctx, &key)?;
    let listen_user_id = match listen_user.as_str() {
        LISTEN_ALL => None,
        slug => ctx.core.users.find(slug).map(|user| user.id),
    };
    let request = BindRequest {
        runner_id: runner_id.to_owned(),
        key,
        thread_id: thread_id.clone(),
        after_seq,
    };
    let bound = ctx.core.chat.bind(request).map_err(refusal)?;
    let reply = json!({
        "thread_id": thread_id,
        "root_seq": bound.root_seq,
        "cursor_seq": bound.cursor_seq,
        "listen_user_id": listen_user_id,
    });
    let catch_up = bound
        .catch_up
        .into_iter()
        .map(|message| (SESSION_MESSAGE.to_owned(), message))
        .collect();
    Ok(PushOutcome::ReplyThenPush(ReplyStatus::Ok, reply, catch_up))
}

fn post(ctx: &ChannelContext<'_>, runner_id: &str, payload: &Value) -> Handled {
    let fields = Fields::new(POST_THREAD_MESSAGE, payload);
    let key = fields.channel_key()?;
    let thread_id = fields.optional_string("thread_id")?;
    let body = fields.string("body")?;
    let message_payload = fields.object("payload")?;
    let client_id = fields.optional_string("client_id")?;
    // The runner sends `reply_to_seq` inside `payload` (§5.3); the top level is accepted too.
    let reply_to_seq = match fields.optional_integer("reply_to_seq")? {
        Some(seq) => Some(seq),
        None => {
            Fields::new(POST_THREAD_MESSAGE, &message_payload).optional_integer("reply_to_seq")?
        }
    };
    check_scope(ctx, &key)?;
    let new = NewMessage {
        thread_id,
        actor: Actor {
            slug: ctx.socket.user.slug.clone(),
            user_id: ctx.socket.user.id,
            runner_id: Some(runner_id.to_owned()),
        },
        body,
        payload: message_payload,
        reply_to_seq,
        client_id,
    };
    let posted = ctx
        .core
        .chat
        .post(&ctx.core.registry, &key, new)
        .map_err(refusal)?;
    Ok(PushOutcome::ok(
        json!({ "seq": posted.seq, "thread_id": posted.thread_id }),
    ))
}

fn update(ctx: &ChannelContext<'_>, runner_id: &str, payload: &Value) -> Handled {
    let fields = Fields::new(UPDATE_THREAD_MESSAGE, payload);
    let key = fields.channel_key()?;
    let thread_id = fields.string("thread_id")?;
    let seq = fields.integer("seq")?;
    let body = fields.string("body")?;
    let message_payload = fields.object("payload")?;
    check_scope(ctx, &key)?;
    let updated = ctx
        .core
        .chat
        .update(&key, &thread_id, seq, runner_id, body, message_payload)
        .map_err(refusal)?;
    Ok(PushOutcome::ok(json!({ "seq": updated.seq })))
}

fn typing(ctx: &ChannelContext<'_>, runner_id: &str, payload: &Value) -> Handled {
    let fields = Fields::new(TYPING, payload);
    let key = fields.channel_key()?;
    let thread_id = fields.string("thread_id")?;
    let typing = fields.boolean("typing")?;
    check_scope(ctx, &key)?;
    ctx.core
        .chat
        .set_typing(&key, &thread_id, runner_id, typing)
        .map_err(refusal)?;
    Ok(PushOutcome::ok(json!({})))
}

fn message_state(ctx: &ChannelContext<'_>, payload: &Value) -> Handled {
    let fields = Fields::new(MESSAGE_STATE, payload);
    let key = fields.channel_key()?;
    let thread_id = fields.optional_string("thread_id")?;
    let seq = fields.integer("seq")?;
    let status = fields.string("status")?;
    if !STATUSES.contains(&status.as_str()) {
        return Err(fields.invalid(&format!(
            "status must be one of {}, got {status:?}",
            STATUSES.join(", ")
        )));
    }
    fields.optional_string("reason")?;
    check_scope(ctx, &key)?;
    ctx.core
        .chat
        .set_state(&key, thread_id.as_deref(), seq, payload.clone())
        .map_err(refusal)?;
    Ok(PushOutcome::ok(json!({})))
}

/// A token limited to one workspace and channel may not touch another (`forbidden`).
fn check_scope(ctx: &ChannelContext<'_>, key: &ChannelKey) -> Result<(), PushOutcome> {
    match &ctx.socket.scope {
        Some(scope) if scope.workspace != key.workspace || scope.channel != key.channel => {
            Err(PushOutcome::error("forbidden"))
        }
        _ => Ok(()),
    }
}

fn refusal(error: crate::chat_store::ChatError) -> PushOutcome {
    PushOutcome::error(error.to_string())
}

/// Typed access to a payload's fields; every problem becomes the event's error reply.
struct Fields<'a> {
    event: &'static str,
    payload: &'a Value,
}

impl<'a> Fields<'a> {
    fn new(event: &'static str, payload: &'a Value) -> Fields<'a> {
        Fields { event, payload }
    }

    fn invalid(&self, problem: &str) -> PushOutcome {
        PushOutcome::error(format!("invalid {} payload: {problem}", self.event))
    }

    fn present(&self, name: &str) -> Option<&'a Value> {
        self.payload.get(name).filter(|value| !value.is_null())
    }

    fn channel_key(&self) -> Result<ChannelKey, PushOutcome> {
        Ok(ChannelKey {
            workspace: self.string("workspace")?,
            channel: self.string("channel")?,
        })
    }

    fn string(&self, name: &str) -> Result<String, PushOutcome> {
        self.optional_string(name)?
            .ok_or_else(|| self.invalid(&format!("{name} must be a string")))
    }

    fn optional_string(&self, name: &str) -> Result<Option<String>, PushOutcome> {
        match self.present(name) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(self.invalid(&format!("{name} must be a string or null"))),
        }
    }

    fn integer(&self, name: &str) -> Result<i64, PushOutcome> {
        self.optional_integer(name)?
            .ok_or_else(|| self.invalid(&format!("{name} must be an integer")))
    }

    fn optional_integer(&self, name: &str) -> Result<Option<i64>, PushOutcome> {
        match self.present(name) {
            None => Ok(None),
            Some(value) => value
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.invalid(&format!("{name} must be an integer or null"))),
        }
    }

    fn boolean(&self, name: &str) -> Result<bool, PushOutcome> {
        self.present(name)
            .and_then(Value::as_bool)
            .ok_or_else(|| self.invalid(&format!("{name} must be true or false")))
    }

    /// An object, or `{}` when the field is missing or null.
    fn object(&self, name: &str) -> Result<Value, PushOutcome> {
        match self.present(name) {
            None => Ok(Value::Object(Map::new())),
            Some(object @ Value::Object(_)) => Ok(object.clone()),
            Some(_) => Err(self.invalid(&format!("{name} must be an object"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(outcome: PushOutcome) -> Value {
        match outcome {
            PushOutcome::Reply(ReplyStatus::Error, response) => response["reason"].clone(),
            other => panic!("expected an error reply, got {other:?}"),
        }
    }

    #[test]
    fn fields_are_read_strictly() {
        let payload =
            json!({"workspace": "acme", "channel": 3, "seq": "4", "thread_id": null, "typing": 1});
        let fields = Fields::new(TYPING, &payload);
        assert_eq!(
            problem(fields.channel_key().expect_err("channel")),
            json!("invalid session:typing payload: channel must be a string or null")
        );
        assert_eq!(
            problem(fields.integer("seq").expect_err("seq")),
            json!("invalid session:typing payload: seq must be an integer or null")
        );
        assert_eq!(
            problem(fields.string("thread_id").expect_err("null")),
            json!("invalid session:typing payload: thread_id must be a string")
        );
        assert!(fields.boolean("typing").is_err());
        assert_eq!(fields.optional_string("missing").ok(), Some(None));
        assert_eq!(fields.object("missing").ok(), Some(json!({})));
    }
}
