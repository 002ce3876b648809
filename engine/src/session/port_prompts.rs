//! The listen user's say over which dev servers Kandan may open (seed
//! `portForwardApproval.ts`): what is being asked, the decisions made, and the words and
//! payloads of the prompt, the ready message and the events.
use std::collections::HashMap;

use serde_json::{Value, json};

use super::message_state::{ApprovalChoice, ApprovalPrompt};
use crate::ports::{PortCandidate, PortDecisions};

/// The kind Kandan shows for a port-forward approval.
pub const APPROVAL_KIND: &str = "local_runner_port_forward";

#[derive(Debug, Clone, PartialEq)]
pub struct PendingPortForward {
    pub request_id: String,
    pub candidate: PortCandidate,
    /// The prompt row, once Kandan gave it a seq.
    pub seq: Option<i64>,
}

#[derive(Debug, Default)]
pub struct PortPrompts {
    pub decisions: PortDecisions,
    pending: HashMap<String, PendingPortForward>,
}

impl PortPrompts {
    pub fn ask(&mut self, request_id: String, candidate: PortCandidate) {
        self.decisions
            .pending
            .insert(candidate.port, candidate.clone());
        self.pending.insert(
            request_id.clone(),
            PendingPortForward {
                request_id,
                candidate,
                seq: None,
            },
        );
    }

    pub fn posted(&mut self, request_id: &str, seq: i64) -> Option<&PendingPortForward> {
        let pending = self.pending.get_mut(request_id)?;
        pending.seq = Some(seq);
        Some(pending)
    }

    /// Takes the request out of the pending set (it is being answered).
    pub fn take(&mut self, request_id: &str) -> Option<PendingPortForward> {
        let pending = self.pending.remove(request_id)?;
        if self.decisions.pending.get(&pending.candidate.port) == Some(&pending.candidate) {
            self.decisions.pending.remove(&pending.candidate.port);
        }
        Some(pending)
    }

    pub fn approve(&mut self, candidate: &PortCandidate) {
        self.decisions.denied.remove(&candidate.port);
        self.decisions
            .approved
            .insert(candidate.port, Some(candidate.clone()));
    }

    pub fn deny(&mut self, candidate: &PortCandidate) {
        self.decisions
            .denied
            .insert(candidate.port, candidate.clone());
    }

    pub fn revoke(&mut self, port: u16) {
        self.decisions.approved.remove(&port);
    }
}

/// The Kandan route that opens a port's preview (protocol §6.1).
pub fn preview_path(runner_id: &str, port: u16) -> String {
    format!("/local-runners/{runner_id}/ports/{port}/preview")
}

fn where_(candidate: &PortCandidate) -> String {
    candidate
        .cwd
        .as_ref()
        .map(|cwd| format!(" in `{cwd}`"))
        .unwrap_or_default()
}

pub fn prompt_body(candidate: &PortCandidate, request_id: &str) -> String {
    format!(
        "`{}` is listening on port {}{}. Open it as a preview in Kandan?\n\
         Approve with `/kandan approve-port-forward {request_id}`, or deny with \
         `/kandan deny-port-forward {request_id}`.",
        candidate.label(),
        candidate.port,
        where_(candidate)
    )
}

pub fn prompt_structured(candidate: &PortCandidate, request_id: &str) -> Value {
    let mut structured = json!({"kind": "local_runner_port_forward_request",
        "request_id": request_id, "port": candidate.port, "pid": candidate.pid,
        "command": candidate.command, "command_line": candidate.command_line,
        "command_label": candidate.label()});
    // The seed leaves `cwd` out when it is not known.
    if let Some(cwd) = &candidate.cwd {
        structured["cwd"] = json!(cwd);
    }
    structured
}

/// The approval state of the prompt row (seed choices and descriptions).
pub fn approval(
    candidate: &PortCandidate,
    request_id: &str,
    allowed_actor_slug: Option<String>,
    allowed_actor_user_id: Option<i64>,
) -> ApprovalPrompt {
    let port = candidate.port;
    ApprovalPrompt {
        request_id: request_id.to_owned(),
        kind: APPROVAL_KIND.to_owned(),
        summary: format!("Open runner port {port} from {}", candidate.label()),
        reason: Some(format!(
            "{} (pid {}) is listening on port {port}{}.",
            candidate.command_line,
            candidate.pid,
            where_(candidate)
        )),
        choices: vec![
            ApprovalChoice {
                decision: "approve",
                label: "Open preview".into(),
                description: format!(
                    "Allow Kandan to proxy HTTP, HTTPS, and WebSocket traffic for runner port {port}."
                ),
            },
            ApprovalChoice {
                decision: "deny",
                label: "Deny".into(),
                description: format!("Keep runner port {port} private for this runner session."),
            },
        ],
        allowed_actor_slug,
        allowed_actor_user_id,
    }
}

pub fn ready_body(port: u16, path: &str) -> String {
    format!("Runner port {port} is open in Kandan: [Open preview]({path})")
}

pub fn ready_structured(pending: &PendingPortForward, path: &str) -> Value {
    let candidate = &pending.candidate;
    json!({"kind": "local_runner_port_forward_ready", "status": "ready",
        "summary": format!("Runner port {} is open in Kandan.", candidate.port),
        "next_action": "Open HTTP/HTTPS/WebSocket preview", "source_path": path,
        "link_label": "Open preview", "request_id": pending.request_id, "port": candidate.port,
        "pid": candidate.pid, "command": candidate.command, "cwd": candidate.cwd, "url": path})
}

/// The `forward_port_requested` / `forward_port_resolved` / `forward_port_revoked`
/// fields that describe the listener.
pub fn listener_fields(candidate: &PortCandidate) -> serde_json::Map<String, Value> {
    let mut fields = serde_json::Map::new();
    fields.insert("port".into(), json!(candidate.port));
    fields.insert("pid".into(), json!(candidate.pid));
    fields.insert("command".into(), json!(candidate.command));
    fields.insert("commandLine".into(), json!(candidate.command_line));
    if let Some(cwd) = &candidate.cwd {
        fields.insert("cwd".into(), json!(cwd));
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate() -> PortCandidate {
        PortCandidate {
            port: 5173,
            pid: 42,
            command: "/usr/bin/node vite".into(),
            command_line: "/usr/bin/node vite".into(),
            cwd: Some("/w/app".into()),
        }
    }

    #[test]
    fn asking_and_answering_keep_the_decisions_in_step() {
        let mut prompts = PortPrompts::default();
        prompts.ask("port-forward-1".into(), candidate());
        assert_eq!(prompts.decisions.pending.get(&5173), Some(&candidate()));
        assert_eq!(prompts.posted("port-forward-1", 9).unwrap().seq, Some(9));
        let pending = prompts.take("port-forward-1").unwrap();
        assert!(prompts.decisions.pending.is_empty());
        assert!(prompts.take("port-forward-1").is_none(), "answered once");
        prompts.deny(&pending.candidate);
        assert_eq!(prompts.decisions.denied.get(&5173), Some(&candidate()));
        prompts.approve(&pending.candidate);
        assert!(prompts.decisions.denied.is_empty());
        assert_eq!(
            prompts.decisions.approved.get(&5173),
            Some(&Some(candidate()))
        );
    }

    #[test]
    fn the_prompt_follows_the_seed() {
        let approval = approval(&candidate(), "port-forward-1", Some("sean".into()), Some(7));
        assert_eq!(approval.kind, "local_runner_port_forward");
        assert_eq!(approval.summary, "Open runner port 5173 from node");
        assert_eq!(approval.choices[0].label, "Open preview");
        assert_eq!(
            approval.choices[1].description,
            "Keep runner port 5173 private for this runner session."
        );
        assert!(
            prompt_body(&candidate(), "port-forward-1")
                .contains("/kandan approve-port-forward port-forward-1")
        );
        assert_eq!(
            preview_path("runner-1", 5173),
            "/local-runners/runner-1/ports/5173/preview"
        );
    }

    #[test]
    fn the_prompt_row_leaves_out_an_unknown_cwd() {
        let known = prompt_structured(&candidate(), "port-forward-1");
        assert_eq!(known["cwd"], "/w/app");
        let unknown = PortCandidate {
            cwd: None,
            ..candidate()
        };
        let row = prompt_structured(&unknown, "port-forward-1");
        assert!(row.get("cwd").is_none(), "{row}");
        assert_eq!(row["kind"], "local_runner_port_forward_request");
    }
}
