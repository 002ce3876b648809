//! Codex approval requests waiting in a chat session (seed `channelSession.ts`,
//! `requestKandanApproval`): keyed by (request id, the chat message whose turn asked),
//! answered once by the first of Kandan's control, the listen user's chat command or the
//! desktop notification, and withdrawn when Codex says the request is gone.
use std::collections::HashMap;

use serde_json::Value;

use super::intake::ListenUser;
use super::message_state::{ApprovalChoice, ApprovalPrompt};
use crate::codex::jsonrpc::{RpcError, codes};
use crate::codex::protocol::ServerRequest;
use crate::runner::approvals::request_key;

#[derive(Debug, Clone, PartialEq)]
pub struct PendingApproval {
    pub rpc_id: Value,
    pub source_seq: i64,
    pub turn_id: String,
    pub request: ServerRequest,
    pub prompt: ApprovalPrompt,
}

impl PendingApproval {
    pub fn request_id(&self) -> &str {
        &self.prompt.request_id
    }
}

#[derive(Debug, Default)]
pub struct Approvals {
    pending: HashMap<(String, i64), PendingApproval>,
}

impl Approvals {
    pub fn insert(&mut self, approval: PendingApproval) {
        self.pending.insert(
            (approval.request_id().to_owned(), approval.source_seq),
            approval,
        );
    }

    /// The request with this id (and chat message, when Kandan names it).
    pub fn take(&mut self, request_id: &str, source_seq: Option<i64>) -> Option<PendingApproval> {
        let key = match source_seq {
            Some(seq) => (request_id.to_owned(), seq),
            None => self
                .pending
                .keys()
                .find(|(id, _)| id == request_id)
                .cloned()?,
        };
        self.pending.remove(&key)
    }

    /// Codex resolved the request itself (`serverRequest/resolved`).
    pub fn take_by_rpc_id(&mut self, rpc_id: &Value) -> Option<PendingApproval> {
        let key = self
            .pending
            .iter()
            .find(|(_, approval)| &approval.rpc_id == rpc_id)
            .map(|(key, _)| key.clone())?;
        self.pending.remove(&key)
    }

    pub fn take_for_turn(&mut self, turn_id: &str) -> Vec<PendingApproval> {
        let keys: Vec<_> = self
            .pending
            .iter()
            .filter(|(_, approval)| approval.turn_id == turn_id)
            .map(|(key, _)| key.clone())
            .collect();
        keys.into_iter()
            .filter_map(|key| self.pending.remove(&key))
            .collect()
    }

    pub fn drain(&mut self) -> Vec<PendingApproval> {
        self.pending.drain().map(|(_, approval)| approval).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }
}

/// What Kandan (and the desktop notification) shows for an approval request.
pub fn prompt(
    rpc_id: &Value,
    method: &str,
    params: &Value,
    request: &ServerRequest,
    listen: &ListenUser,
    listen_user_id: Option<i64>,
) -> ApprovalPrompt {
    let (reason, what, ours) = match request {
        ServerRequest::CommandApproval(command) => {
            (command.reason.clone(), "run this command", None)
        }
        ServerRequest::FileChangeApproval(change) => (
            change.reason.clone(),
            "apply these file changes",
            Some(
                change
                    .grant_root
                    .clone()
                    .unwrap_or_else(|| "Apply file changes".to_owned()),
            ),
        ),
        ServerRequest::PermissionsApproval(permissions) => (
            permissions.reason.clone(),
            "use these permissions for this turn",
            Some(format!("Grant permissions: {}", permissions.permissions)),
        ),
        ServerRequest::Unsupported => (None, "go ahead", None),
    };
    let summary = summary(params)
        .or(ours)
        .unwrap_or_else(|| method.to_owned());
    let (allowed_actor_slug, allowed_actor_user_id) = listen.prompt_actor(listen_user_id);
    ApprovalPrompt {
        request_id: request_key(rpc_id),
        kind: method.to_owned(),
        summary,
        reason,
        choices: vec![
            ApprovalChoice {
                decision: "approve",
                label: "Approve".into(),
                description: format!("Let Codex {what}."),
            },
            ApprovalChoice {
                decision: "deny",
                label: "Deny".into(),
                description: format!("Do not let Codex {what}; it carries on without."),
            },
        ],
        allowed_actor_slug,
        allowed_actor_user_id,
    }
}

/// Codex's answer to an approval request no chat message is waiting on: the seed's error.
pub fn without_source(method: &str) -> RpcError {
    RpcError {
        code: codes::INTERNAL_ERROR,
        message: format!("Codex approval request has no active Kandan source message: {method}"),
        data: None,
    }
}

/// The seed's summary: the first of these string fields of the request's params
/// (`codexApprovalMessageState`). Where none is there we name what is asked
/// ([designed]) before falling back to the method, as the seed does.
fn summary(params: &Value) -> Option<String> {
    [
        "command", "cmd", "path", "filePath", "file", "reason", "summary",
    ]
    .iter()
    .find_map(|key| params.get(key).and_then(Value::as_str))
    .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codex::protocol::server_requests;
    use serde_json::json;

    fn command(rpc_id: i64, turn: &str, seq: i64) -> PendingApproval {
        let request = ServerRequest::decode(
            server_requests::COMMAND_APPROVAL,
            &json!({"threadId": "t", "turnId": turn, "itemId": "i", "startedAtMs": 1,
                "command": "touch x"}),
        )
        .unwrap();
        let listen = ListenUser::parse("sean", Some(("sean".into(), 7)));
        let prompt = prompt(
            &json!(rpc_id),
            server_requests::COMMAND_APPROVAL,
            &json!({"command": "touch x"}),
            &request,
            &listen,
            None,
        );
        PendingApproval {
            rpc_id: json!(rpc_id),
            source_seq: seq,
            turn_id: turn.into(),
            request,
            prompt,
        }
    }

    #[test]
    fn a_request_is_answered_once() {
        let mut approvals = Approvals::default();
        approvals.insert(command(0, "u1", 5));
        assert!(
            approvals.take("0", Some(6)).is_none(),
            "another message's request"
        );
        assert!(approvals.take("0", Some(5)).is_some());
        assert!(approvals.take("0", None).is_none());
    }

    #[test]
    fn requests_are_found_by_rpc_id_and_by_turn() {
        let mut approvals = Approvals::default();
        approvals.insert(command(0, "u1", 5));
        approvals.insert(command(1, "u1", 5));
        approvals.insert(command(2, "u2", 6));
        assert_eq!(
            approvals.take_by_rpc_id(&json!(1)).unwrap().request_id(),
            "1"
        );
        assert_eq!(approvals.take_for_turn("u1").len(), 1);
        assert_eq!(approvals.len(), 1);
    }

    #[test]
    fn the_prompt_names_the_command_and_who_may_answer() {
        let approval = command(3, "u1", 5);
        assert_eq!(approval.prompt.summary, "touch x");
        assert_eq!(
            approval.prompt.kind,
            "item/commandExecution/requestApproval"
        );
        assert_eq!(approval.prompt.allowed_actor_slug.as_deref(), Some("sean"));
        assert_eq!(approval.prompt.allowed_actor_user_id, Some(7));
        assert_eq!(approval.prompt.choices[0].decision, "approve");
    }

    #[test]
    fn the_summary_falls_back_over_the_seeds_fields_in_its_order() {
        let cases = [
            (json!({"cmd": "ls", "path": "a", "reason": "r"}), "ls"),
            (json!({"path": "a", "filePath": "b", "reason": "r"}), "a"),
            (json!({"filePath": "b", "file": "c"}), "b"),
            (json!({"file": "c", "summary": "s"}), "c"),
            (json!({"reason": "r", "summary": "s"}), "r"),
            (json!({"summary": "s"}), "s"),
        ];
        for (params, expected) in cases {
            assert_eq!(summary(&params).as_deref(), Some(expected), "{params}");
        }
        assert_eq!(summary(&json!({"command": ["not", "a string"]})), None);
        let nothing = prompt(
            &json!(1),
            "item/tool/requestUserInput",
            &json!({}),
            &ServerRequest::Unsupported,
            &ListenUser::All,
            None,
        );
        assert_eq!(nothing.summary, "item/tool/requestUserInput");
    }

    #[test]
    fn a_request_no_message_waits_on_gets_the_seeds_error() {
        let error = without_source("item/commandExecution/requestApproval");
        assert_eq!(
            error.message,
            "Codex approval request has no active Kandan source message: \
             item/commandExecution/requestApproval"
        );
        assert_eq!(error.code, codes::INTERNAL_ERROR);
    }
}
