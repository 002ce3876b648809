//! What the runner currently offers Kandan, and the capabilities payload computed from
//! it for every join, rejoin and heartbeat (seed `runner.ts`, `capabilitiesPayload`).
use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::{Value, json};

use super::allowed_cwd::{self, AllowedRoot};

#[derive(Debug, Clone)]
pub struct RunnerState {
    pub cwd: PathBuf,
    pub allowed_roots: Vec<AllowedRoot>,
    /// Ports Kandan may forward to: `--forward-port`, approved dev servers, the editor.
    pub forward_ports: BTreeSet<u16>,
    /// Ports the runner itself opened (the editor): forwarded without a prompt and never
    /// offered as dev servers.
    pub managed_ports: BTreeSet<u16>,
    /// Dependency status (codex, editor runtime) for `toolStatus`.
    pub tool_status: Option<Value>,
    /// The Codex app-server the runner started, whose own sockets are not dev servers.
    pub app_server_pid: Option<u32>,
}

impl RunnerState {
    pub fn allowed_cwds(&self) -> Vec<String> {
        self.allowed_roots
            .iter()
            .map(|root| root.configured.clone())
            .collect()
    }

    pub fn capabilities(&self) -> Value {
        let allowed_cwds = self.allowed_cwds();
        let suggestions = allowed_cwd::normalize(
            std::iter::once(self.cwd.display().to_string()).chain(allowed_cwds.iter().cloned()),
        );
        let editor_runtime = self
            .tool_status
            .as_ref()
            .and_then(|status| status.get("editorRuntime"))
            .cloned()
            .unwrap_or(Value::Null);
        json!({
            "codexAppServer": true,
            "codexRemoteTui": true,
            "startInstance": !allowed_cwds.is_empty(),
            "allowedCwds": allowed_cwds,
            "allowedCwdSuggestions": suggestions,
            "portForwarding": !self.forward_ports.is_empty(),
            "allowedPorts": self.forward_ports,
            "streamingForwarding": true,
            "streamingForwardingVersion": 1,
            "toolStatus": self.tool_status,
            "editorRuntime": editor_runtime,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_reflect_roots_and_ports() {
        let state = RunnerState {
            cwd: "/w/app".into(),
            allowed_roots: vec![AllowedRoot {
                configured: "/w".into(),
                canonical: "/w".into(),
            }],
            forward_ports: [5173, 3000].into_iter().collect(),
            managed_ports: BTreeSet::new(),
            tool_status: Some(json!({"codex": {"status": "ready"}})),
            app_server_pid: None,
        };
        assert_eq!(
            state.capabilities(),
            json!({
                "codexAppServer": true, "codexRemoteTui": true, "startInstance": true,
                "allowedCwds": ["/w"], "allowedCwdSuggestions": ["/w/app", "/w"],
                "portForwarding": true, "allowedPorts": [3000, 5173],
                "streamingForwarding": true, "streamingForwardingVersion": 1,
                "toolStatus": {"codex": {"status": "ready"}}, "editorRuntime": null,
            })
        );
    }

    #[test]
    fn nothing_configured_means_nothing_offered() {
        let state = RunnerState {
            cwd: "/w".into(),
            allowed_roots: vec![],
            forward_ports: BTreeSet::new(),
            managed_ports: BTreeSet::new(),
            tool_status: None,
            app_server_pid: None,
        };
        let capabilities = state.capabilities();
        assert_eq!(capabilities["startInstance"], false);
        assert_eq!(capabilities["portForwarding"], false);
        assert_eq!(capabilities["allowedPorts"], json!([]));
        assert_eq!(capabilities["allowedCwdSuggestions"], json!(["/w"]));
    }
}
