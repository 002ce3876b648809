//! Controls: what Kandan asks a runner to do, pushed as event `control` on the
//! `local_runner:<runnerId>` topic (seed `protocol.ts`, `KandanControl`).
//!
//! Parsing is two-step so that errors say exactly what is wrong: first the envelope
//! (an object with a known `type`), then the fields of that type.
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum KandanControl {
    StartInstance(StartInstance),
    StopInstance(InstanceOnly),
    KillInstance(InstanceOnly),
    StartTurn(StartTurn),
    SteerTurn(SteerTurn),
    InterruptTurn(InterruptTurn),
    InterruptQueuedMessages(InterruptQueuedMessages),
    ResolveCodexApprovalRequest(ResolveCodexApprovalRequest),
    UpdateSessionSettings(UpdateSessionSettings),
    ResolvePortForwardRequest(ResolvePortForwardRequest),
    ReadThread(ReadThread),
    ForwardHttpRequest(ForwardHttpRequest),
    ForwardWebsocketOpen(ForwardWebsocketOpen),
    ForwardWebsocketSend(ForwardWebsocketSend),
    ForwardWebsocketClose(ForwardWebsocketClose),
    UpdateRunnerConfig(UpdateRunnerConfig),
    StartLocalEditor(StartLocalEditor),
}

/// Every control type the runner understands, in the order of `protocol.ts`.
pub const CONTROL_TYPES: &[&str] = &[
    "start_instance",
    "stop_instance",
    "kill_instance",
    "start_turn",
    "steer_turn",
    "interrupt_turn",
    "interrupt_queued_messages",
    "resolve_codex_approval_request",
    "update_session_settings",
    "resolve_port_forward_request",
    "read_thread",
    "forward_http_request",
    "forward_websocket_open",
    "forward_websocket_send",
    "forward_websocket_close",
    "update_runner_config",
    "start_local_editor",
];

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartInstance {
    pub instance_id: Option<String>,
    pub cwd: Option<String>,
    pub work_description: Option<String>,
    pub launch_tui: Option<bool>,
    pub model: Option<String>,
    pub reasoning_effort: Option<String>,
    pub approval_policy: Option<String>,
    pub sandbox: Option<String>,
    pub fast: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceOnly {
    pub instance_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartTurn {
    pub instance_id: Option<String>,
    pub thread_id: String,
    pub input: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SteerTurn {
    pub instance_id: Option<String>,
    pub thread_id: String,
    pub turn_id: String,
    pub input: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InterruptTurn {
    pub instance_id: Option<String>,
    pub thread_id: String,
    pub turn_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InterruptQueuedMessages {
    pub instance_id: Option<String>,
    pub thread_id: String,
    pub through_seq: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolveCodexApprovalRequest {
    pub instance_id: Option<String>,
    pub thread_id: String,
    /// The chat message whose turn asked; absent when no chat session is bound.
    pub source_seq: Option<i64>,
    pub request_id: String,
    pub decision: Decision,
    /// Who pressed the button in Kandan; checked against the listen user.
    pub actor_user_id: Option<i64>,
    pub actor_slug: Option<String>,
}

/// `null` clears a setting; an absent field leaves it as it is.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateSessionSettings {
    pub instance_id: Option<String>,
    pub thread_id: String,
    #[serde(default, deserialize_with = "present")]
    pub model: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub reasoning_effort: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub approval_policy: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub sandbox: Option<Option<String>>,
    pub fast: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvePortForwardRequest {
    pub instance_id: Option<String>,
    pub request_id: String,
    pub decision: Decision,
    pub actor_user_id: Option<i64>,
    pub actor_slug: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadThread {
    pub instance_id: Option<String>,
    pub thread_id: String,
    pub include_turns: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForwardHttpRequest {
    pub instance_id: Option<String>,
    pub request_id: String,
    pub port: u16,
    pub method: String,
    pub path: String,
    pub query_string: Option<String>,
    pub headers: Option<Value>,
    pub body_base64: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForwardWebsocketOpen {
    pub instance_id: Option<String>,
    pub socket_id: String,
    pub port: u16,
    pub path: String,
    pub query_string: Option<String>,
    pub headers: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebsocketOpcode {
    Text,
    Binary,
    Ping,
    Pong,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForwardWebsocketSend {
    pub instance_id: Option<String>,
    pub socket_id: String,
    pub opcode: WebsocketOpcode,
    pub body_base64: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForwardWebsocketClose {
    pub instance_id: Option<String>,
    pub socket_id: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateRunnerConfig {
    pub instance_id: Option<String>,
    pub allowed_cwds: Vec<String>,
    pub config_version: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartLocalEditor {
    pub instance_id: Option<String>,
    pub request_id: Option<String>,
    pub cwd: String,
    pub browser_base_url: Option<String>,
    pub collaboration: Option<EditorCollaboration>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EditorCollaboration {
    pub provider: CollaborationProvider,
    pub editor_session_id: i64,
    pub runtime_session_id: String,
    pub room_id: String,
    pub extension_asset_path: String,
    pub server_asset_path: String,
    pub bootstrap_token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CollaborationProvider {
    Oct,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ControlError {
    #[error("control payload must be a JSON object")]
    NotAnObject,
    #[error("control payload has no string \"type\"")]
    MissingType,
    #[error("unknown control type \"{0}\"")]
    UnknownType(String),
    #[error("malformed {control_type} control: {reason}")]
    Malformed {
        control_type: String,
        reason: String,
    },
}

impl KandanControl {
    pub fn parse(payload: &Value) -> Result<KandanControl, ControlError> {
        let object = payload.as_object().ok_or(ControlError::NotAnObject)?;
        let control_type = object
            .get("type")
            .and_then(Value::as_str)
            .ok_or(ControlError::MissingType)?;
        if !CONTROL_TYPES.contains(&control_type) {
            return Err(ControlError::UnknownType(control_type.to_owned()));
        }
        let malformed = |reason: String| ControlError::Malformed {
            control_type: control_type.to_owned(),
            reason,
        };
        crate::json::reject_reserved_key(payload).map_err(|error| malformed(error.to_string()))?;
        KandanControl::deserialize(payload).map_err(|error| malformed(error.to_string()))
    }

    /// The wire name of this control's type.
    pub fn kind(&self) -> &'static str {
        use KandanControl::*;
        match self {
            StartInstance(_) => "start_instance",
            StopInstance(_) => "stop_instance",
            KillInstance(_) => "kill_instance",
            StartTurn(_) => "start_turn",
            SteerTurn(_) => "steer_turn",
            InterruptTurn(_) => "interrupt_turn",
            InterruptQueuedMessages(_) => "interrupt_queued_messages",
            ResolveCodexApprovalRequest(_) => "resolve_codex_approval_request",
            UpdateSessionSettings(_) => "update_session_settings",
            ResolvePortForwardRequest(_) => "resolve_port_forward_request",
            ReadThread(_) => "read_thread",
            ForwardHttpRequest(_) => "forward_http_request",
            ForwardWebsocketOpen(_) => "forward_websocket_open",
            ForwardWebsocketSend(_) => "forward_websocket_send",
            ForwardWebsocketClose(_) => "forward_websocket_close",
            UpdateRunnerConfig(_) => "update_runner_config",
            StartLocalEditor(_) => "start_local_editor",
        }
    }

    /// The runner instance the control names, if it names one.
    pub fn instance_id(&self) -> Option<&str> {
        use KandanControl::*;
        let id = match self {
            StartInstance(c) => &c.instance_id,
            StopInstance(c) | KillInstance(c) => &c.instance_id,
            StartTurn(c) => &c.instance_id,
            SteerTurn(c) => &c.instance_id,
            InterruptTurn(c) => &c.instance_id,
            InterruptQueuedMessages(c) => &c.instance_id,
            ResolveCodexApprovalRequest(c) => &c.instance_id,
            UpdateSessionSettings(c) => &c.instance_id,
            ResolvePortForwardRequest(c) => &c.instance_id,
            ReadThread(c) => &c.instance_id,
            ForwardHttpRequest(c) => &c.instance_id,
            ForwardWebsocketOpen(c) => &c.instance_id,
            ForwardWebsocketSend(c) => &c.instance_id,
            ForwardWebsocketClose(c) => &c.instance_id,
            UpdateRunnerConfig(c) => &c.instance_id,
            StartLocalEditor(c) => &c.instance_id,
        };
        id.as_deref()
    }

    /// Whether this control is for the runner instance `current` (seed
    /// `controlTargetsInstance`): a control that names no instance is for any.
    pub fn targets(&self, current: &str) -> bool {
        self.instance_id().is_none_or(|id| id == current)
    }
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_listed_type_parses_from_a_minimal_payload() {
        let samples = [
            json!({"type": "start_instance", "cwd": "/w"}),
            json!({"type": "stop_instance", "instanceId": "i"}),
            json!({"type": "kill_instance", "instanceId": "i"}),
            json!({"type": "start_turn", "threadId": "t", "input": [{"type": "text", "text": "hi"}]}),
            json!({"type": "steer_turn", "threadId": "t", "turnId": "u", "input": []}),
            json!({"type": "interrupt_turn", "threadId": "t"}),
            json!({"type": "interrupt_queued_messages", "threadId": "t", "throughSeq": 4}),
            json!({"type": "resolve_codex_approval_request", "threadId": "t", "sourceSeq": 3, "requestId": "0", "decision": "approve"}),
            json!({"type": "update_session_settings", "threadId": "t"}),
            json!({"type": "resolve_port_forward_request", "requestId": "r", "decision": "deny"}),
            json!({"type": "read_thread", "threadId": "t"}),
            json!({"type": "forward_http_request", "requestId": "r", "port": 3000, "method": "GET", "path": "/"}),
            json!({"type": "forward_websocket_open", "socketId": "s", "port": 3000, "path": "/ws"}),
            json!({"type": "forward_websocket_send", "socketId": "s", "opcode": "text", "bodyBase64": "aGk="}),
            json!({"type": "forward_websocket_close", "socketId": "s"}),
            json!({"type": "update_runner_config", "allowedCwds": ["/w"]}),
            json!({"type": "start_local_editor", "cwd": "/w"}),
        ];
        assert_eq!(samples.len(), CONTROL_TYPES.len());
        for sample in samples {
            let control = KandanControl::parse(&sample).unwrap();
            assert_eq!(control.kind(), sample["type"], "{sample}");
        }
    }

    #[test]
    fn unknown_and_malformed_controls_say_what_is_wrong() {
        assert_eq!(
            KandanControl::parse(&json!({"type": "format_disk"})),
            Err(ControlError::UnknownType("format_disk".into()))
        );
        assert_eq!(
            KandanControl::parse(&json!([1])),
            Err(ControlError::NotAnObject)
        );
        assert_eq!(
            KandanControl::parse(&json!({"threadId": "t"})),
            Err(ControlError::MissingType)
        );
        let error = KandanControl::parse(&json!({"type": "start_turn", "input": []})).unwrap_err();
        assert_eq!(
            error.to_string(),
            "malformed start_turn control: missing field `threadId`"
        );
        let error =
            KandanControl::parse(&json!({"type": "forward_http_request", "requestId": "r", "port": 70000, "method": "GET", "path": "/"}))
                .unwrap_err();
        assert!(error.to_string().contains("70000"), "{error}");
    }

    #[test]
    fn instance_targeting_follows_the_seed() {
        let named =
            KandanControl::parse(&json!({"type": "stop_instance", "instanceId": "codex-a"}))
                .unwrap();
        assert!(named.targets("codex-a"));
        assert!(!named.targets("codex-b"));
        let unnamed =
            KandanControl::parse(&json!({"type": "update_runner_config", "allowedCwds": []}))
                .unwrap();
        assert!(unnamed.targets("codex-b"));
    }

    #[test]
    fn session_settings_tell_null_from_absent() {
        let control = KandanControl::parse(
            &json!({"type": "update_session_settings", "threadId": "t", "model": null, "reasoningEffort": "high"}),
        )
        .unwrap();
        let KandanControl::UpdateSessionSettings(settings) = control else {
            panic!("wrong variant");
        };
        assert_eq!(settings.model, Some(None));
        assert_eq!(settings.reasoning_effort, Some(Some("high".into())));
        assert_eq!(settings.sandbox, None);
    }

    #[test]
    fn collaboration_block_is_typed() {
        let control = KandanControl::parse(&json!({
            "type": "start_local_editor", "cwd": "/w", "requestId": "q",
            "collaboration": {"provider": "oct", "editorSessionId": 5, "runtimeSessionId": "rs",
                "roomId": "room", "extensionAssetPath": "/x.vsix", "serverAssetPath": "/s.tgz"}
        }))
        .unwrap();
        let KandanControl::StartLocalEditor(editor) = control else {
            panic!("wrong variant");
        };
        assert_eq!(editor.collaboration.unwrap().room_id, "room");
    }
}
