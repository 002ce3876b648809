//! `local_runner:<runnerId>`: the channel a local Codex runner joins. It validates the runner's
//! join payload, acknowledges every runner event, and stores the chat messages the runner posts.
//! Server-to-runner `control` pushes come from tests (`KandanTestServer::push_control`).

use serde_json::{Map, Value, json};

use crate::channels::{ChannelContext, PushOutcome, TopicHandler};
use crate::chat_store::NewMessage;
use crate::sync::lock;

pub(crate) struct RunnerTopic;

impl RunnerTopic {
    pub(crate) const PREFIX: &'static str = "local_runner:";
}

/// The push that posts a message into a Kandan chat thread.
const POST_THREAD_MESSAGE: &str = "session:post_thread_message";

impl TopicHandler for RunnerTopic {
    fn join(&self, ctx: &ChannelContext<'_>, payload: &Value) -> Result<Value, Value> {
        let runner_id = ctx.topic.strip_prefix(Self::PREFIX).unwrap_or_default();
        if runner_id.is_empty() {
            return Err(json!({ "reason": "invalid runner topic: empty runner id" }));
        }
        let problems = join_payload_problems(payload);
        if !problems.is_empty() {
            let reason = format!("invalid runner join payload: {}", problems.join(", "));
            return Err(json!({ "reason": reason }));
        }
        tracing::debug!(%runner_id, owner = %ctx.socket.user.slug, "runner joined");
        Ok(json!({ "runner_id": runner_id }))
    }

    fn handle_in(&self, ctx: &ChannelContext<'_>, event: &str, payload: &Value) -> PushOutcome {
        match event {
            POST_THREAD_MESSAGE => post_thread_message(ctx, payload),
            // heartbeat, codex_notification, codex_response, forward:*, ...: recorded, acked.
            _ => PushOutcome::ok(json!({})),
        }
    }
}

/// What is wrong with a runner join payload (`clientName`, `version`, `capabilities`).
fn join_payload_problems(payload: &Value) -> Vec<&'static str> {
    let field = |name: &str| payload.get(name);
    let mut problems = Vec::new();
    if !field("clientName").is_some_and(Value::is_string) {
        problems.push("clientName must be a string");
    }
    if !field("version").is_some_and(Value::is_string) {
        problems.push("version must be a string");
    }
    if !field("capabilities").is_some_and(Value::is_object) {
        problems.push("capabilities must be an object");
    }
    problems
}

fn post_thread_message(ctx: &ChannelContext<'_>, payload: &Value) -> PushOutcome {
    let new = match parse_post(payload, ctx.socket.user.id) {
        Ok(new) => new,
        Err(problem) => {
            return PushOutcome::error(format!("invalid {POST_THREAD_MESSAGE} payload: {problem}"));
        }
    };
    let posted = lock(&ctx.core.chat).post(new);
    PushOutcome::ok(json!({ "seq": posted.seq, "thread_id": posted.thread_id }))
}

/// Reads `{workspace, channel, thread_id?, body, payload?, reply_to_seq?}`. The runner sends
/// `reply_to_seq` either at the top level or inside `payload`; both are accepted.
fn parse_post(payload: &Value, author_user_id: i64) -> Result<NewMessage, String> {
    let text = |name: &str| -> Result<String, String> {
        payload
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("{name} must be a string"))
    };
    let thread_id = match payload.get("thread_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(_) => return Err("thread_id must be a string or null".into()),
    };
    let message_payload = match payload.get("payload") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(object @ Value::Object(_)) => object.clone(),
        Some(_) => return Err("payload must be an object".into()),
    };
    let reply_to_seq = match payload
        .get("reply_to_seq")
        .or_else(|| message_payload.get("reply_to_seq"))
    {
        None | Some(Value::Null) => None,
        Some(seq) => Some(
            seq.as_u64()
                .ok_or("reply_to_seq must be a non-negative integer or null")?,
        ),
    };
    Ok(NewMessage {
        workspace: text("workspace")?,
        channel: text("channel")?,
        thread_id,
        author_user_id,
        body: text("body")?,
        payload: message_payload,
        reply_to_seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_payload_needs_all_three_fields() {
        let good = json!({"clientName": "kandan-local-codex-runner", "version": "0.0.1", "capabilities": {}});
        assert!(join_payload_problems(&good).is_empty());
        assert_eq!(
            join_payload_problems(&json!({"clientName": 1, "capabilities": []})),
            vec![
                "clientName must be a string",
                "version must be a string",
                "capabilities must be an object"
            ]
        );
    }

    #[test]
    fn parses_a_post_with_nested_reply_to_seq() {
        let post = parse_post(
            &json!({
                "workspace": "acme", "channel": "codex", "thread_id": null, "body": "hi",
                "payload": {"reply_to_seq": 4, "kind": "x"}
            }),
            9,
        )
        .expect("valid");
        assert_eq!(post.thread_id, None);
        assert_eq!(post.reply_to_seq, Some(4));
        assert_eq!(post.author_user_id, 9);
        assert_eq!(post.payload["kind"], json!("x"));
    }

    #[test]
    fn rejects_posts_without_body() {
        let err =
            parse_post(&json!({"workspace": "acme", "channel": "codex"}), 1).expect_err("no body");
        assert_eq!(err, "body must be a string");
    }
}
