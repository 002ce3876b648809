//! Codex approval requests waiting for Kandan's answer when no chat session is bound:
//! the runner forwards them as `codex_request` and resolves them from the
//! `resolve_codex_approval_request` control. Keyed by the request id as Kandan sees it
//! (the JSON-RPC id as a string).
use std::collections::HashMap;

use serde_json::Value;

use crate::codex::protocol::ServerRequest;

#[derive(Debug, Clone, PartialEq)]
pub struct PendingApproval {
    /// The JSON-RPC id to answer, exactly as the app-server sent it.
    pub rpc_id: Value,
    pub method: String,
    pub request: ServerRequest,
}

#[derive(Debug, Default)]
pub struct PendingApprovals {
    by_id: HashMap<String, PendingApproval>,
}

/// The id Kandan uses for a JSON-RPC id (`0` → `"0"`, `"a"` → `"a"`).
pub fn request_key(rpc_id: &Value) -> String {
    match rpc_id {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

impl PendingApprovals {
    pub fn insert(&mut self, approval: PendingApproval) -> String {
        let key = request_key(&approval.rpc_id);
        self.by_id.insert(key.clone(), approval);
        key
    }

    pub fn take(&mut self, request_id: &str) -> Option<PendingApproval> {
        self.by_id.remove(request_id)
    }

    pub fn drain(&mut self) -> Vec<PendingApproval> {
        self.by_id.drain().map(|(_, approval)| approval).collect()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_are_found_once_by_their_string_id() {
        let mut pending = PendingApprovals::default();
        let key = pending.insert(PendingApproval {
            rpc_id: json!(0),
            method: "item/commandExecution/requestApproval".into(),
            request: ServerRequest::Unsupported,
        });
        assert_eq!(key, "0");
        assert!(pending.take("1").is_none());
        assert_eq!(pending.take("0").unwrap().rpc_id, json!(0));
        assert!(pending.take("0").is_none());
    }
}
