//! The one value the UI renders: account, tray state, folders, activity, settings.
//!
//! The shell sends a fresh [`Snapshot`] whenever something changes, and the window just
//! renders it, so there is a single UI contract to keep stable. It is built by a pure
//! function from what the shell holds ([`SnapshotInput`]) and serialized in camelCase.
//! The test at the bottom pins the exact JSON shape, so the contract cannot drift
//! silently: change the UI in the same commit as that test.
use std::collections::HashMap;

use serde::Serialize;

use crate::activity::ActivityLog;
use crate::folder_state::{ActivityLevel, FolderState, FolderStatus, TrayState, tray_state};
use crate::settings::{DesktopConfig, Settings, SharedFolder};
use crate::token_store::TokenStorage;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub account: AccountSnapshot,
    pub tray_state: TrayState,
    pub folders: Vec<FolderSnapshot>,
    /// Newest first.
    pub activity: Vec<ActivitySnapshot>,
    pub settings: Settings,
    pub autostart: bool,
    pub notice: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountSnapshot {
    pub signed_in: bool,
    pub kandan_url: String,
    pub user: Option<String>,
    pub token_storage: Option<TokenStorage>,
    pub warning: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FolderSnapshot {
    pub id: String,
    pub path: String,
    pub runner_id: String,
    pub workspace: Option<String>,
    pub channel: Option<String>,
    pub state: FolderState,
    pub detail: Option<String>,
    pub approvals: Vec<ApprovalSnapshot>,
    pub port_prompts: Vec<PortPromptSnapshot>,
    pub forwarded_ports: Vec<ForwardedPortSnapshot>,
    pub editor: Option<EditorSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalSnapshot {
    pub request_id: String,
    pub kind: String,
    pub summary: String,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortPromptSnapshot {
    pub request_id: String,
    pub port: u16,
    pub command: String,
    pub cwd: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ForwardedPortSnapshot {
    pub port: u16,
    pub preview_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EditorSnapshot {
    pub running: bool,
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivitySnapshot {
    /// Unix milliseconds.
    pub at: u64,
    pub folder_id: String,
    pub level: ActivityLevel,
    pub text: String,
}

/// What the shell knows about the sign-in (the Kandan URL comes from the settings).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountInput {
    pub signed_in: bool,
    pub user: Option<String>,
    pub token_storage: Option<TokenStorage>,
    pub warning: Option<String>,
}

/// Everything a snapshot is built from.
pub struct SnapshotInput<'a> {
    pub config: &'a DesktopConfig,
    /// By folder id; a folder without a status shows as stopped.
    pub statuses: &'a HashMap<String, FolderStatus>,
    pub activity: &'a ActivityLog,
    pub account: &'a AccountInput,
    pub autostart: bool,
    pub notice: Option<&'a str>,
    /// The preview URL of a forwarded port, where the shell knows one.
    pub preview_url: &'a dyn Fn(&SharedFolder, u16) -> Option<String>,
}

/// Builds the snapshot; folders in the configuration's order.
pub fn build_snapshot(input: &SnapshotInput<'_>) -> Snapshot {
    let stopped = FolderStatus::new();
    let status_of = |folder: &SharedFolder| input.statuses.get(&folder.id).unwrap_or(&stopped);
    let folders = input
        .config
        .folders
        .iter()
        .map(|folder| folder_snapshot(folder, status_of(folder), input.preview_url))
        .collect();
    Snapshot {
        account: AccountSnapshot {
            signed_in: input.account.signed_in,
            kandan_url: input.config.settings.kandan_url.clone(),
            user: input.account.user.clone(),
            token_storage: input.account.token_storage,
            warning: input.account.warning.clone(),
        },
        tray_state: tray_state(input.config.folders.iter().map(status_of)),
        folders,
        activity: input
            .activity
            .entries()
            .rev()
            .map(|entry| ActivitySnapshot {
                at: entry.at_unix_ms,
                folder_id: entry.folder_id.clone(),
                level: entry.level,
                text: entry.text.clone(),
            })
            .collect(),
        settings: input.config.settings.clone(),
        autostart: input.autostart,
        notice: input.notice.map(str::to_owned),
    }
}

fn folder_snapshot(
    folder: &SharedFolder,
    status: &FolderStatus,
    preview_url: &dyn Fn(&SharedFolder, u16) -> Option<String>,
) -> FolderSnapshot {
    FolderSnapshot {
        id: folder.id.clone(),
        path: folder.path.to_string_lossy().into_owned(),
        runner_id: folder.runner_id.clone(),
        workspace: folder.workspace.clone(),
        channel: folder.channel.clone(),
        state: status.state(),
        detail: status.detail(),
        approvals: status
            .approvals
            .iter()
            .map(|approval| ApprovalSnapshot {
                request_id: approval.request_id.clone(),
                kind: approval.kind.clone(),
                summary: approval.summary.clone(),
                reason: approval.reason.clone(),
            })
            .collect(),
        port_prompts: status
            .port_prompts
            .iter()
            .map(|prompt| PortPromptSnapshot {
                request_id: prompt.request_id.clone(),
                port: prompt.port,
                command: prompt.command.clone(),
                cwd: prompt.cwd.clone(),
            })
            .collect(),
        forwarded_ports: status
            .forwarded_ports
            .iter()
            .map(|&port| ForwardedPortSnapshot {
                port,
                preview_url: preview_url(folder, port),
            })
            .collect(),
        editor: status.editor.as_ref().map(|editor| EditorSnapshot {
            running: editor.running,
            port: editor.port,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folder_state::FolderInput;
    use linzumi_engine::runner::RunnerEvent;
    use serde_json::json;

    fn folder(id: &str, path: &str) -> SharedFolder {
        SharedFolder {
            id: id.into(),
            path: path.into(),
            runner_id: format!("desktop-{id}"),
            workspace: Some("acme".into()),
            channel: Some("codex".into()),
            added_at: 1,
        }
    }

    #[test]
    fn the_json_shape_is_the_ui_contract() {
        let config = DesktopConfig {
            folders: vec![folder("f1", "/src/app"), folder("f2", "/src/site")],
            ..DesktopConfig::default()
        };
        let mut activity = ActivityLog::new();
        let mut app = FolderStatus::new();
        for input in [
            FolderInput::Connecting,
            FolderInput::Started {
                runner_id: "desktop-f1".into(),
                instance_id: "i1".into(),
            },
            FolderInput::Runner(RunnerEvent::PortForwardRequested {
                request_id: "p1".into(),
                port: 5173,
                command: "npm run dev".into(),
                cwd: Some("/src/app".into()),
            }),
            FolderInput::Runner(RunnerEvent::PortForwardResolved {
                request_id: "p1".into(),
                approved: true,
                by: "kandan:ada".into(),
            }),
            FolderInput::Runner(RunnerEvent::PortForwardRequested {
                request_id: "p2".into(),
                port: 3000,
                command: "node api.js".into(),
                cwd: None,
            }),
            FolderInput::Runner(RunnerEvent::ApprovalRequested {
                request_id: "a1".into(),
                kind: "item/commandExecution/requestApproval".into(),
                summary: "npm test".into(),
                reason: None,
            }),
            FolderInput::Runner(RunnerEvent::EditorStarted {
                port: 8443,
                path: "/?folder=/home/me/app".into(),
            }),
        ]
        .into_iter()
        .enumerate()
        {
            let (at, input) = input;
            activity.record(1000 + at as u64, "f1", app.apply(input));
        }
        let statuses = HashMap::from([("f1".to_owned(), app)]);
        let account = AccountInput {
            signed_in: true,
            user: Some("ada".into()),
            token_storage: Some(TokenStorage::Keyring),
            warning: None,
        };
        let preview = |folder: &SharedFolder, port: u16| {
            (port == 5173).then(|| format!("https://preview.example/{}/{port}", folder.runner_id))
        };
        let snapshot = build_snapshot(&SnapshotInput {
            config: &config,
            statuses: &statuses,
            activity: &activity,
            account: &account,
            autostart: true,
            notice: None,
            preview_url: &preview,
        });
        let expected = json!({
            "account": {
                "signedIn": true,
                "kandanUrl": "wss://serve.kandanai.com",
                "user": "ada",
                "tokenStorage": "keyring",
                "warning": null
            },
            "trayState": "attention",
            "folders": [
                {
                    "id": "f1",
                    "path": "/src/app",
                    "runnerId": "desktop-f1",
                    "workspace": "acme",
                    "channel": "codex",
                    "state": "awaiting_approval",
                    "detail": "Codex asks to run `npm test`",
                    "approvals": [{
                        "requestId": "a1",
                        "kind": "item/commandExecution/requestApproval",
                        "summary": "npm test",
                        "reason": null
                    }],
                    "portPrompts": [{
                        "requestId": "p2",
                        "port": 3000,
                        "command": "node api.js",
                        "cwd": null
                    }],
                    "forwardedPorts": [{
                        "port": 5173,
                        "previewUrl": "https://preview.example/desktop-f1/5173"
                    }],
                    "editor": {"running": true, "port": 8443}
                },
                {
                    "id": "f2",
                    "path": "/src/site",
                    "runnerId": "desktop-f2",
                    "workspace": "acme",
                    "channel": "codex",
                    "state": "stopped",
                    "detail": null,
                    "approvals": [],
                    "portPrompts": [],
                    "forwardedPorts": [],
                    "editor": null
                }
            ],
            "activity": [
                {"at": 1006, "folderId": "f1", "level": "info", "text": "The editor is open on port 8443"},
                {"at": 1005, "folderId": "f1", "level": "warning", "text": "Codex asks to run `npm test`"},
                {"at": 1004, "folderId": "f1", "level": "warning",
                 "text": "`node api.js` listens on port 3000: share it with Kandan?"},
                {"at": 1003, "folderId": "f1", "level": "info", "text": "Port 5173 approved by kandan:ada"},
                {"at": 1002, "folderId": "f1", "level": "warning",
                 "text": "`npm run dev` listens on port 5173: share it with Kandan?"},
                {"at": 1001, "folderId": "f1", "level": "info", "text": "Shared with Kandan as runner desktop-f1"},
                {"at": 1000, "folderId": "f1", "level": "info", "text": "Connecting to Kandan…"}
            ],
            "settings": {
                "kandanUrl": "wss://serve.kandanai.com",
                "codexBin": "codex",
                "codeServerBin": null,
                "model": null,
                "reasoningEffort": null,
                "fast": false,
                "approvalPolicy": null,
                "sandbox": null,
                "listenUser": null,
                "allowedRoots": [],
                "forwardPorts": [],
                "streamFlushMs": 150,
                "startAtLogin": false,
                "checkForUpdates": true
            },
            "autostart": true,
            "notice": null
        });
        assert_eq!(serde_json::to_value(&snapshot).unwrap(), expected);
    }

    #[test]
    fn signed_out_with_a_file_store_and_a_notice() {
        let config = DesktopConfig::default();
        let account = AccountInput {
            token_storage: Some(TokenStorage::File),
            warning: Some("no keyring".into()),
            ..AccountInput::default()
        };
        let snapshot = build_snapshot(&SnapshotInput {
            config: &config,
            statuses: &HashMap::new(),
            activity: &ActivityLog::new(),
            account: &account,
            autostart: false,
            notice: Some("settings were reset"),
            preview_url: &|_, _| None,
        });
        let json = serde_json::to_value(&snapshot).unwrap();
        assert_eq!(
            json["account"],
            json!({"signedIn": false, "kandanUrl": "wss://serve.kandanai.com", "user": null,
                   "tokenStorage": "file", "warning": "no keyring"})
        );
        assert_eq!(json["trayState"], "idle");
        assert_eq!(json["notice"], "settings were reset");
        assert_eq!(json["folders"], json!([]));
    }
}
