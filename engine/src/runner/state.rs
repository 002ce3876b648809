//! What the runner currently offers Kandan, and the capabilities payload computed from
//! it for every join, rejoin and heartbeat (seed `runner.ts`, `capabilitiesPayload`).
use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::{Value, json};

use super::allowed_cwd::{self, AllowedRoot};
use crate::editor::runtime::{RuntimeState, RuntimeStatus};
use crate::editor::state::RunningEditor;
use crate::forwarding::routes::Routes;

#[derive(Debug, Clone)]
pub struct RunnerState {
    pub cwd: PathBuf,
    /// Where Kandan may start sessions now: the owner's roots, or what Kandan narrowed
    /// them to.
    pub allowed_roots: Vec<AllowedRoot>,
    /// What the owner shares (`--allowed-cwd`, else the folder): Kandan's roots must lie
    /// inside.
    pub shared_roots: Vec<AllowedRoot>,
    /// Ports Kandan may forward to: `--forward-port`, approved dev servers, the editor.
    pub forward_ports: BTreeSet<u16>,
    /// Ports the runner itself opened (the editor): forwarded without a prompt and never
    /// offered as dev servers.
    pub managed_ports: BTreeSet<u16>,
    /// Dependency status (codex) for `toolStatus`.
    pub tool_status: Option<Value>,
    /// The editor runtime's status (`editorRuntime`); `None` when this runner has no
    /// editor at all.
    pub editor_runtime: Option<RuntimeStatus>,
    /// The editor that is running, if one is.
    pub editor: Option<RunningEditor>,
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

    /// Where forwarding may go now: every forward port on `127.0.0.1`, except the
    /// running editor's, which is dialled where only the runner reaches it.
    pub fn routes(&self) -> Routes {
        let mut routes = Routes::loopback(self.forward_ports.iter().copied());
        if let Some(editor) = &self.editor
            && self.forward_ports.contains(&editor.port)
        {
            routes.allow(editor.port, editor.endpoint.clone());
        }
        routes
    }

    pub fn capabilities(&self) -> Value {
        let allowed_cwds = self.allowed_cwds();
        let suggestions = allowed_cwd::normalize(
            std::iter::once(self.cwd.display().to_string()).chain(allowed_cwds.iter().cloned()),
        );
        let editor_runtime = self
            .editor_runtime
            .as_ref()
            .map_or(Value::Null, |status| json!(status));
        let mut tool_status = self.tool_status.clone();
        if self.editor_runtime.is_some() {
            let tools = tool_status.get_or_insert_with(|| json!({}));
            if let Value::Object(tools) = tools {
                tools.insert("editorRuntime".into(), editor_runtime.clone());
            }
        }
        let mut capabilities = json!({
            "codexAppServer": true,
            "codexRemoteTui": true,
            "startInstance": !allowed_cwds.is_empty(),
            "allowedCwds": allowed_cwds,
            "allowedCwdSuggestions": suggestions,
            "portForwarding": !self.forward_ports.is_empty(),
            "allowedPorts": self.forward_ports,
            "streamingForwarding": true,
            "streamingForwardingVersion": 1,
            "toolStatus": tool_status,
            "editorRuntime": editor_runtime,
        });
        if let Value::Object(fields) = &mut capabilities {
            fields.extend(self.local_editor_capabilities(!allowed_cwds.is_empty()));
        }
        capabilities
    }

    /// The editor part of the capabilities (seed `localEditorCapabilities`): whether
    /// "Open editor" can work here, and what is running.
    fn local_editor_capabilities(&self, has_roots: bool) -> serde_json::Map<String, Value> {
        let usable = self.editor_runtime.as_ref().is_some_and(|status| {
            matches!(
                status.state,
                RuntimeState::Ready | RuntimeState::Custom | RuntimeState::Downloading
            )
        });
        let running = self.editor.as_ref();
        let fields = json!({
            "localEditor": usable && has_roots,
            "localEditorCollaborationProviders": if usable { json!(["oct"]) } else { json!([]) },
            "localEditorStatus": if running.is_some() { "running" } else { "disabled" },
            "localEditorCwd": running.map(|editor| editor.cwd.clone()),
            "localEditorPort": running.map(|editor| editor.port),
            "localEditorCollaborationPort": running.and_then(|editor| editor.collaboration_port),
        });
        match fields {
            Value::Object(fields) => fields,
            _ => serde_json::Map::new(),
        }
    }
}

/// The capabilities of the shared state right now (`null` if its lock is poisoned).
pub fn capabilities_of(state: &std::sync::Mutex<RunnerState>) -> Value {
    state
        .lock()
        .map(|state| state.capabilities())
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forwarding::routes::{Endpoint, SecretCookie};

    #[test]
    fn capabilities_reflect_roots_and_ports() {
        let state = RunnerState {
            cwd: "/w/app".into(),
            allowed_roots: vec![AllowedRoot {
                configured: "/w".into(),
                canonical: "/w".into(),
            }],
            shared_roots: vec![],
            forward_ports: [5173, 3000].into_iter().collect(),
            managed_ports: BTreeSet::new(),
            tool_status: Some(json!({"codex": {"status": "ready"}})),
            editor_runtime: None,
            editor: None,
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
                "localEditor": false, "localEditorCollaborationProviders": [],
                "localEditorStatus": "disabled", "localEditorCwd": null,
                "localEditorPort": null, "localEditorCollaborationPort": null,
            })
        );
    }

    #[test]
    fn a_running_editor_and_its_runtime_are_reported() {
        let state = RunnerState {
            cwd: "/w".into(),
            allowed_roots: vec![AllowedRoot {
                configured: "/w".into(),
                canonical: "/w".into(),
            }],
            shared_roots: vec![],
            forward_ports: [8080].into_iter().collect(),
            managed_ports: [8080].into_iter().collect(),
            tool_status: Some(json!({"codex": {"state": "ready"}})),
            editor_runtime: Some(RuntimeStatus {
                state: RuntimeState::Ready,
                version: Some("4.100.3".into()),
                ..RuntimeStatus::default()
            }),
            editor: Some(RunningEditor {
                generation: 1,
                cwd: "/w/app".into(),
                port: 8080,
                endpoint: Endpoint::Loopback,
                collaboration_port: None,
            }),
            app_server_pid: None,
        };
        let capabilities = state.capabilities();
        assert_eq!(capabilities["editorRuntime"]["state"], "ready");
        assert_eq!(
            capabilities["toolStatus"]["editorRuntime"]["version"],
            "4.100.3"
        );
        assert_eq!(capabilities["localEditor"], true);
        assert_eq!(capabilities["localEditorStatus"], "running");
        assert_eq!(capabilities["localEditorCwd"], "/w/app");
        assert_eq!(capabilities["localEditorPort"], 8080);
    }

    #[test]
    fn the_running_editors_port_is_dialled_at_its_own_endpoint() {
        let secret = Endpoint::LoopbackWithCookie(SecretCookie {
            name: "code-server-session",
            value: "s".into(),
        });
        let mut state = RunnerState {
            cwd: "/w".into(),
            allowed_roots: vec![],
            shared_roots: vec![],
            forward_ports: [3000, 8080].into_iter().collect(),
            managed_ports: [8080].into_iter().collect(),
            tool_status: None,
            editor_runtime: None,
            editor: Some(RunningEditor {
                generation: 1,
                cwd: "/w".into(),
                port: 8080,
                endpoint: secret.clone(),
                collaboration_port: None,
            }),
            app_server_pid: None,
        };
        let routes = state.routes();
        assert_eq!(routes.endpoint(3000), Some(&Endpoint::Loopback));
        assert_eq!(routes.endpoint(8080), Some(&secret));
        // Revoked (no longer a forward port): not reachable at all.
        state.forward_ports.remove(&8080);
        assert_eq!(state.routes().endpoint(8080), None);
    }

    #[test]
    fn nothing_configured_means_nothing_offered() {
        let state = RunnerState {
            cwd: "/w".into(),
            allowed_roots: vec![],
            shared_roots: vec![],
            forward_ports: BTreeSet::new(),
            managed_ports: BTreeSet::new(),
            tool_status: None,
            editor_runtime: None,
            editor: None,
            app_server_pid: None,
        };
        let capabilities = state.capabilities();
        assert_eq!(capabilities["startInstance"], false);
        assert_eq!(capabilities["portForwarding"], false);
        assert_eq!(capabilities["allowedPorts"], json!([]));
        assert_eq!(capabilities["allowedCwdSuggestions"], json!(["/w"]));
    }
}
