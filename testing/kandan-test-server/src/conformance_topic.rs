//! `conformance:<anything>`: a channel with scripted behaviour for protocol conformance tests
//! (ours and phoenix.js's): echo, failure, broadcast and crash on request.

use serde_json::{Value, json};

use crate::channels::{ChannelContext, PushOutcome, TopicHandler};

pub(crate) struct ConformanceTopic;

impl ConformanceTopic {
    pub(crate) const PREFIX: &'static str = "conformance:";
}

impl TopicHandler for ConformanceTopic {
    fn join(&self, ctx: &ChannelContext<'_>, payload: &Value) -> Result<Value, Value> {
        Ok(json!({ "joined": ctx.topic, "payload": payload }))
    }

    fn handle_in(&self, ctx: &ChannelContext<'_>, event: &str, payload: &Value) -> PushOutcome {
        match event {
            "echo" => PushOutcome::ok(json!({ "event": "echo", "payload": payload })),
            "fail" => PushOutcome::error("requested failure"),
            "broadcast" => broadcast(ctx, payload),
            "crash" => PushOutcome::Crash,
            other => PushOutcome::error(format!("unknown conformance event: {other}")),
        }
    }
}

/// `{event, payload}` → acknowledges, then broadcasts `payload` as `event` to the topic.
fn broadcast(ctx: &ChannelContext<'_>, request: &Value) -> PushOutcome {
    let Some(event) = request.get("event").and_then(Value::as_str) else {
        return PushOutcome::error("broadcast needs a string event");
    };
    let payload = request.get("payload").cloned().unwrap_or_else(|| json!({}));
    if !payload.is_object() {
        return PushOutcome::error("broadcast payload must be an object");
    }
    // Queued to every subscriber (this socket included) behind the reply this returns.
    ctx.core.registry.broadcast(ctx.topic, event, &payload);
    PushOutcome::ok(json!({}))
}
