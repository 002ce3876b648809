//! Typed views of the Codex app-server methods, notifications and server requests the
//! runner uses (codex-cli 0.169.0; `tests/codex_schema.rs` checks them against the
//! schema that `codex app-server generate-json-schema` prints).
//!
//! Views are deliberately partial: they name the fields the runner reads or writes and
//! ignore the rest, so a newer app-server that adds fields still decodes.
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

pub mod methods {
    pub const THREAD_START: &str = "thread/start";
    pub const THREAD_RESUME: &str = "thread/resume";
    pub const THREAD_LIST: &str = "thread/list";
    pub const THREAD_LOADED_LIST: &str = "thread/loaded/list";
    pub const THREAD_READ: &str = "thread/read";
    pub const THREAD_NAME_SET: &str = "thread/name/set";
    pub const TURN_START: &str = "turn/start";
    pub const TURN_STEER: &str = "turn/steer";
    pub const TURN_INTERRUPT: &str = "turn/interrupt";
}

// ---- requests ---------------------------------------------------------------------------

/// `thread/start` and (with `thread_id`) the overrides of `thread/resume`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadStartParams {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub personality: Option<String>,
    /// Config overrides; thread-level reasoning effort travels here as
    /// `model_reasoning_effort` because `thread/start` has no effort field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadResumeParams {
    pub thread_id: String,
    #[serde(flatten)]
    pub overrides: ThreadStartParams,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadListParams {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadReadParams {
    pub thread_id: String,
    pub include_turns: bool,
}

/// `thread/name/set`. Naming a new thread also writes its rollout, which is what makes
/// it resumable (by `codex resume <id> --remote …`) before its first turn.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadSetNameParams {
    pub thread_id: String,
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnStartParams {
    pub thread_id: String,
    /// User input items as Kandan sent them (`{"type": "text", "text": …}` and others).
    pub input: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effort: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox_policy: Option<SandboxPolicy>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnSteerParams {
    pub thread_id: String,
    pub expected_turn_id: String,
    pub input: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnInterruptParams {
    pub thread_id: String,
    pub turn_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum SandboxPolicy {
    DangerFullAccess,
    #[serde(rename_all = "camelCase")]
    ReadOnly {
        network_access: bool,
    },
    #[serde(rename_all = "camelCase")]
    WorkspaceWrite {
        writable_roots: Vec<String>,
        network_access: bool,
        exclude_tmpdir_env_var: bool,
        exclude_slash_tmp: bool,
    },
}

/// A text input item.
pub fn text_input(text: &str) -> Value {
    json!({"type": "text", "text": text})
}

// ---- responses --------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ThreadRef {
    pub id: String,
}

/// The part of `thread/start`, `thread/resume` and `thread/read` results the runner needs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ThreadResult {
    pub thread: ThreadRef,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TurnResult {
    pub turn: Turn,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnSteerResult {
    pub turn_id: String,
}

// ---- notifications ----------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemDelta {
    pub thread_id: String,
    pub turn_id: String,
    pub item_id: String,
    pub delta: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemEvent {
    pub thread_id: String,
    pub turn_id: String,
    pub item: ThreadItem,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnEvent {
    pub thread_id: String,
    pub turn: Turn,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Turn {
    pub id: String,
    pub status: TurnStatus,
    #[serde(default)]
    pub error: Option<TurnError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TurnStatus {
    Completed,
    Interrupted,
    Failed,
    InProgress,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnError {
    pub message: String,
    #[serde(default)]
    pub codex_error_info: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TerminalInteraction {
    pub thread_id: String,
    pub turn_id: String,
    pub item_id: String,
    pub process_id: String,
    pub stdin: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerRequestResolved {
    pub thread_id: String,
    pub request_id: Value,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorNotification {
    pub thread_id: String,
    pub turn_id: String,
    pub error: TurnError,
    pub will_retry: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ThreadItem {
    #[serde(rename_all = "camelCase")]
    UserMessage {
        id: String,
        #[serde(default)]
        content: Vec<Value>,
    },
    #[serde(rename_all = "camelCase")]
    AgentMessage { id: String, text: String },
    #[serde(rename_all = "camelCase")]
    Reasoning {
        id: String,
        #[serde(default)]
        summary: Vec<String>,
        #[serde(default)]
        content: Vec<String>,
    },
    #[serde(rename_all = "camelCase")]
    CommandExecution {
        id: String,
        command: String,
        cwd: String,
        status: ItemStatus,
        #[serde(default)]
        aggregated_output: Option<String>,
        #[serde(default)]
        exit_code: Option<i32>,
        #[serde(default)]
        process_id: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    FileChange {
        id: String,
        changes: Vec<FileUpdateChange>,
        status: ItemStatus,
    },
    #[serde(rename_all = "camelCase")]
    WebSearch {
        id: String,
        query: String,
        #[serde(default)]
        action: Option<Value>,
    },
    /// Item kinds the runner does not render (plans, MCP calls, images, …).
    #[serde(other)]
    Other,
}

impl ThreadItem {
    pub fn id(&self) -> Option<&str> {
        match self {
            ThreadItem::UserMessage { id, .. }
            | ThreadItem::AgentMessage { id, .. }
            | ThreadItem::Reasoning { id, .. }
            | ThreadItem::CommandExecution { id, .. }
            | ThreadItem::FileChange { id, .. }
            | ThreadItem::WebSearch { id, .. } => Some(id),
            ThreadItem::Other => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ItemStatus {
    InProgress,
    Completed,
    Failed,
    Declined,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FileUpdateChange {
    pub path: String,
    pub kind: PatchChangeKind,
    pub diff: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum PatchChangeKind {
    Add,
    Delete,
    Update {
        #[serde(default)]
        move_path: Option<String>,
    },
}

/// The notifications the runner acts on; everything else is [`Notification::Other`].
#[derive(Debug, Clone, PartialEq)]
pub enum Notification {
    AgentMessageDelta(ItemDelta),
    ReasoningSummaryTextDelta(ItemDelta),
    ReasoningTextDelta(ItemDelta),
    CommandOutputDelta(ItemDelta),
    FileChangeOutputDelta(ItemDelta),
    TerminalInteraction(TerminalInteraction),
    ItemStarted(ItemEvent),
    ItemCompleted(ItemEvent),
    TurnStarted(TurnEvent),
    TurnCompleted(TurnEvent),
    ServerRequestResolved(ServerRequestResolved),
    Error(ErrorNotification),
    Other,
}

impl Notification {
    /// Decodes a notification; a known method with an unexpected shape is an error (so it
    /// can be logged), an unknown method is `Other`.
    pub fn decode(method: &str, params: &Value) -> Result<Notification, serde_json::Error> {
        use Notification::*;
        Ok(match method {
            "item/agentMessage/delta" => AgentMessageDelta(view(params)?),
            "item/reasoning/summaryTextDelta" => ReasoningSummaryTextDelta(view(params)?),
            "item/reasoning/textDelta" => ReasoningTextDelta(view(params)?),
            "item/commandExecution/outputDelta" => CommandOutputDelta(view(params)?),
            "item/fileChange/outputDelta" => FileChangeOutputDelta(view(params)?),
            "item/commandExecution/terminalInteraction" => TerminalInteraction(view(params)?),
            "item/started" => ItemStarted(view(params)?),
            "item/completed" => ItemCompleted(view(params)?),
            "turn/started" => TurnStarted(view(params)?),
            "turn/completed" => TurnCompleted(view(params)?),
            "serverRequest/resolved" => ServerRequestResolved(view(params)?),
            "error" => Error(view(params)?),
            _ => Other,
        })
    }
}

/// Decodes a view of `params` without copying it.
fn view<'a, T: Deserialize<'a>>(params: &'a Value) -> Result<T, serde_json::Error> {
    T::deserialize(params)
}

// ---- server requests (approvals) --------------------------------------------------------

pub mod server_requests {
    pub const COMMAND_APPROVAL: &str = "item/commandExecution/requestApproval";
    pub const FILE_CHANGE_APPROVAL: &str = "item/fileChange/requestApproval";
    pub const PERMISSIONS_APPROVAL: &str = "item/permissions/requestApproval";
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandApproval {
    pub thread_id: String,
    pub turn_id: String,
    pub item_id: String,
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub cwd: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileChangeApproval {
    pub thread_id: String,
    pub turn_id: String,
    pub item_id: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub grant_root: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PermissionsApproval {
    pub thread_id: String,
    pub turn_id: String,
    pub item_id: String,
    #[serde(default)]
    pub reason: Option<String>,
    pub permissions: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ServerRequest {
    CommandApproval(CommandApproval),
    FileChangeApproval(FileChangeApproval),
    PermissionsApproval(PermissionsApproval),
    /// A request the runner cannot answer meaningfully; it replies "method not found".
    Unsupported,
}

impl ServerRequest {
    pub fn decode(method: &str, params: &Value) -> Result<ServerRequest, serde_json::Error> {
        Ok(match method {
            server_requests::COMMAND_APPROVAL => ServerRequest::CommandApproval(view(params)?),
            server_requests::FILE_CHANGE_APPROVAL => {
                ServerRequest::FileChangeApproval(view(params)?)
            }
            server_requests::PERMISSIONS_APPROVAL => {
                ServerRequest::PermissionsApproval(view(params)?)
            }
            _ => ServerRequest::Unsupported,
        })
    }

    /// The result that grants (`approve`) or refuses the request.
    pub fn answer(&self, approve: bool) -> Value {
        match self {
            ServerRequest::CommandApproval(_) | ServerRequest::FileChangeApproval(_) => {
                json!({"decision": if approve { "accept" } else { "decline" }})
            }
            // Granting echoes the requested profile for this turn; refusing grants nothing.
            ServerRequest::PermissionsApproval(request) if approve => {
                json!({"permissions": request.permissions, "scope": "turn"})
            }
            ServerRequest::PermissionsApproval(_) => json!({"permissions": {}}),
            ServerRequest::Unsupported => Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_notifications_seen_from_codex_0_169() {
        let delta = Notification::decode(
            "item/agentMessage/delta",
            &json!({"threadId": "t", "turnId": "u", "itemId": "msg_1", "delta": "Hel"}),
        )
        .unwrap();
        assert_eq!(
            delta,
            Notification::AgentMessageDelta(ItemDelta {
                thread_id: "t".into(),
                turn_id: "u".into(),
                item_id: "msg_1".into(),
                delta: "Hel".into()
            })
        );
        let completed = Notification::decode(
            "item/completed",
            &json!({"threadId": "t", "turnId": "u", "completedAtMs": 1, "item": {
                "type": "commandExecution", "id": "call_1", "command": "/bin/bash -lc ls",
                "cwd": "/w", "processId": "13472", "source": "unifiedExecStartup",
                "status": "completed", "commandActions": [], "aggregatedOutput": "a\n",
                "exitCode": 0, "durationMs": 770}}),
        )
        .unwrap();
        let Notification::ItemCompleted(ItemEvent {
            item:
                ThreadItem::CommandExecution {
                    aggregated_output,
                    exit_code,
                    status,
                    ..
                },
            ..
        }) = completed
        else {
            panic!("{completed:?}");
        };
        assert_eq!(aggregated_output.as_deref(), Some("a\n"));
        assert_eq!(exit_code, Some(0));
        assert_eq!(status, ItemStatus::Completed);
        let turn = Notification::decode(
            "turn/completed",
            &json!({"threadId": "t", "turn": {"id": "u", "items": [], "status": "failed",
                "error": {"message": "boom", "codexErrorInfo": "internalServerError"}}}),
        )
        .unwrap();
        let Notification::TurnCompleted(TurnEvent { turn, .. }) = turn else {
            panic!("{turn:?}");
        };
        assert_eq!(turn.status, TurnStatus::Failed);
        assert_eq!(turn.error.unwrap().message, "boom");
    }

    #[test]
    fn unknown_items_and_methods_do_not_fail() {
        let started = Notification::decode(
            "item/started",
            &json!({"threadId": "t", "turnId": "u", "startedAtMs": 1,
                "item": {"type": "mcpToolCall", "id": "m", "server": "s", "tool": "x"}}),
        )
        .unwrap();
        assert!(matches!(
            started,
            Notification::ItemStarted(ItemEvent {
                item: ThreadItem::Other,
                ..
            })
        ));
        assert_eq!(
            Notification::decode("thread/tokenUsage/updated", &json!({})).unwrap(),
            Notification::Other
        );
        assert!(Notification::decode("item/agentMessage/delta", &json!({"delta": 1})).is_err());
    }

    #[test]
    fn approval_answers_follow_the_schema() {
        let command = ServerRequest::decode(
            server_requests::COMMAND_APPROVAL,
            &json!({"threadId": "t", "turnId": "u", "itemId": "i", "startedAtMs": 1,
                "command": "touch x", "cwd": "/w"}),
        )
        .unwrap();
        assert_eq!(command.answer(true), json!({"decision": "accept"}));
        assert_eq!(command.answer(false), json!({"decision": "decline"}));
        let permissions = ServerRequest::decode(
            server_requests::PERMISSIONS_APPROVAL,
            &json!({"threadId": "t", "turnId": "u", "itemId": "i", "startedAtMs": 1, "cwd": "/w",
                "permissions": {"network": {"enabled": true}}}),
        )
        .unwrap();
        assert_eq!(
            permissions.answer(true),
            json!({"permissions": {"network": {"enabled": true}}, "scope": "turn"})
        );
        assert_eq!(permissions.answer(false), json!({"permissions": {}}));
    }

    #[test]
    fn sandbox_policies_serialize_as_the_app_server_expects() {
        assert_eq!(
            serde_json::to_value(SandboxPolicy::DangerFullAccess).unwrap(),
            json!({"type": "dangerFullAccess"})
        );
        assert_eq!(
            serde_json::to_value(SandboxPolicy::WorkspaceWrite {
                writable_roots: vec!["/w".into()],
                network_access: false,
                exclude_tmpdir_env_var: false,
                exclude_slash_tmp: false
            })
            .unwrap(),
            json!({"type": "workspaceWrite", "writableRoots": ["/w"], "networkAccess": false,
                "excludeTmpdirEnvVar": false, "excludeSlashTmp": false})
        );
    }
}
