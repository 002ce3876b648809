//! What Kandan shows next to a chat message while the runner works on it (seed
//! `localCodexMessageState.ts`): queued → processing (with a reason) → processed,
//! ignored or failed (with a reason).
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessingReason {
    StartingTurn,
    StreamingResponse,
    RunningTerminalCommand,
    InterruptRequested,
    AwaitingApproval,
}

impl ProcessingReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessingReason::StartingTurn => "starting turn",
            ProcessingReason::StreamingResponse => "streaming response",
            ProcessingReason::RunningTerminalCommand => "running terminal command",
            ProcessingReason::InterruptRequested => "interrupt requested",
            ProcessingReason::AwaitingApproval => "awaiting approval",
        }
    }
}

/// A choice offered on an approval prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalChoice {
    pub decision: &'static str,
    pub label: String,
    pub description: String,
}

/// What an "awaiting approval" state carries (seed `CodexApprovalMessageState`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalPrompt {
    pub request_id: String,
    pub kind: String,
    pub summary: String,
    pub reason: Option<String>,
    pub choices: Vec<ApprovalChoice>,
    pub allowed_actor_slug: Option<String>,
    pub allowed_actor_user_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageState {
    Queued,
    Processing(ProcessingReason),
    AwaitingApproval(ApprovalPrompt),
    Processed,
    Ignored(String),
    Failed(String),
}

impl MessageState {
    /// `queued`, `processing`, `processed`, `ignored` or `failed`.
    pub fn status_name(&self) -> &'static str {
        match self {
            MessageState::Queued => "queued",
            MessageState::Processing(_) | MessageState::AwaitingApproval(_) => "processing",
            MessageState::Processed => "processed",
            MessageState::Ignored(_) => "ignored",
            MessageState::Failed(_) => "failed",
        }
    }

    /// The `message_state` fields for this state (the caller adds where the message is).
    pub fn fields(&self) -> Map<String, Value> {
        let mut fields = Map::new();
        let reason = match self {
            MessageState::Queued | MessageState::Processed => None,
            MessageState::Processing(reason) => Some(reason.as_str().to_owned()),
            MessageState::AwaitingApproval(_) => {
                Some(ProcessingReason::AwaitingApproval.as_str().to_owned())
            }
            MessageState::Ignored(reason) | MessageState::Failed(reason) => Some(reason.clone()),
        };
        fields.insert("status".into(), json!(self.status_name()));
        if let Some(reason) = reason {
            fields.insert("reason".into(), json!(reason));
        }
        if let MessageState::AwaitingApproval(prompt) = self {
            fields.insert("approval_request_id".into(), json!(prompt.request_id));
            fields.insert("approval_kind".into(), json!(prompt.kind));
            fields.insert("approval_summary".into(), json!(prompt.summary));
            if let Some(reason) = &prompt.reason {
                fields.insert("approval_reason".into(), json!(reason));
            }
            let choices: Vec<Value> = prompt
                .choices
                .iter()
                .map(|choice| {
                    json!({"decision": choice.decision, "label": choice.label,
                        "description": choice.description})
                })
                .collect();
            fields.insert("approval_choices".into(), Value::Array(choices));
            if let Some(slug) = &prompt.allowed_actor_slug {
                fields.insert("approval_allowed_actor_slug".into(), json!(slug));
            }
            if let Some(id) = prompt.allowed_actor_user_id {
                fields.insert("approval_allowed_actor_user_id".into(), json!(id));
            }
        }
        fields
    }
}

/// The processing reason a Codex notification implies, if any (seed
/// `processingReasonForCodexNotification`).
pub fn reason_for_notification(method: &str, params: &Value) -> Option<ProcessingReason> {
    if method == "item/agentMessage/delta" || method == "item/reasoning/textDelta" {
        return Some(ProcessingReason::StreamingResponse);
    }
    if method.starts_with("item/commandExecution/") || method == "command/exec/outputDelta" {
        return Some(ProcessingReason::RunningTerminalCommand);
    }
    // Any other notification: the type of its item, or of the params themselves.
    let item = params
        .get("item")
        .filter(|item| item.is_object())
        .unwrap_or(params);
    match item.get("type").and_then(Value::as_str)? {
        "commandExecution" | "terminalInput" => Some(ProcessingReason::RunningTerminalCommand),
        "agentMessage" | "reasoning" | "fileChange" | "web_search_call" | "webSearchCall"
        | "webSearch" => Some(ProcessingReason::StreamingResponse),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_become_message_state_fields() {
        assert_eq!(
            Value::Object(MessageState::Processing(ProcessingReason::StartingTurn).fields()),
            json!({"status": "processing", "reason": "starting turn"})
        );
        assert_eq!(
            Value::Object(MessageState::Ignored("not_listen_user".into()).fields()),
            json!({"status": "ignored", "reason": "not_listen_user"})
        );
        let prompt = ApprovalPrompt {
            request_id: "0".into(),
            kind: "item/commandExecution/requestApproval".into(),
            summary: "touch x".into(),
            reason: None,
            choices: vec![ApprovalChoice {
                decision: "approve",
                label: "Approve".into(),
                description: "Run it".into(),
            }],
            allowed_actor_slug: Some("sean".into()),
            allowed_actor_user_id: Some(7),
        };
        assert_eq!(
            Value::Object(MessageState::AwaitingApproval(prompt).fields()),
            json!({"status": "processing", "reason": "awaiting approval",
                "approval_request_id": "0", "approval_kind": "item/commandExecution/requestApproval",
                "approval_summary": "touch x",
                "approval_choices": [{"decision": "approve", "label": "Approve", "description": "Run it"}],
                "approval_allowed_actor_slug": "sean", "approval_allowed_actor_user_id": 7})
        );
    }

    #[test]
    fn notifications_imply_reasons() {
        assert_eq!(
            reason_for_notification("item/agentMessage/delta", &json!({})),
            Some(ProcessingReason::StreamingResponse)
        );
        assert_eq!(
            reason_for_notification("item/commandExecution/outputDelta", &json!({})),
            Some(ProcessingReason::RunningTerminalCommand)
        );
        assert_eq!(
            reason_for_notification(
                "item/started",
                &json!({"item": {"type": "commandExecution"}})
            ),
            Some(ProcessingReason::RunningTerminalCommand)
        );
        assert_eq!(
            reason_for_notification("item/started", &json!({"item": {"type": "userMessage"}})),
            None
        );
        assert_eq!(reason_for_notification("turn/started", &json!({})), None);
        // The seed looks at any notification's item, or at the params when there is none.
        for item_type in [
            "web_search_call",
            "webSearchCall",
            "webSearch",
            "fileChange",
        ] {
            assert_eq!(
                reason_for_notification("item/completed", &json!({"item": {"type": item_type}})),
                Some(ProcessingReason::StreamingResponse),
                "{item_type}"
            );
        }
        assert_eq!(
            reason_for_notification(
                "rawResponseItem/completed",
                &json!({"type": "web_search_call"})
            ),
            Some(ProcessingReason::StreamingResponse)
        );
        assert_eq!(
            reason_for_notification("item/updated", &json!({"item": {"type": "terminalInput"}})),
            Some(ProcessingReason::RunningTerminalCommand)
        );
    }
}
