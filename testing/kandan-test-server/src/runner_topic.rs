//! `local_runner:<runnerId>`: the channel a local Codex runner joins. It validates the runner's
//! join payload, hands chat-session events (`session:*`, `message_state`) to
//! [`runner_session`](crate::runner_session) and acknowledges every other runner event.
//! Server-to-runner `control` pushes come from tests (`KandanTestServer::push_control`).

use serde_json::{Value, json};

use crate::channels::{ChannelContext, PushOutcome, TopicHandler};
use crate::runner_session;

pub(crate) struct RunnerTopic;

impl RunnerTopic {
    pub(crate) const PREFIX: &'static str = "local_runner:";
}

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
        // The first user to join owns the runner id (only they may open its forward tunnel);
        // joins by others are not refused.
        if let Err(owner) = ctx.core.runner_owners.claim(runner_id, ctx.socket.user.id) {
            tracing::debug!(%runner_id, owner, "runner id joined by a user who does not own it");
        }
        tracing::debug!(%runner_id, user = %ctx.socket.user.slug, "runner joined");
        Ok(json!({ "runner_id": runner_id }))
    }

    fn handle_in(&self, ctx: &ChannelContext<'_>, event: &str, payload: &Value) -> PushOutcome {
        let runner_id = ctx.topic.strip_prefix(Self::PREFIX).unwrap_or_default();
        // heartbeat, codex_notification, codex_response, forward:*, ...: recorded, acked.
        runner_session::handle(ctx, runner_id, event, payload)
            .unwrap_or_else(|| PushOutcome::ok(json!({})))
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
}
