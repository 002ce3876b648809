//! The one value the UI renders: account, tray state, folders, activity, settings.
//!
//! The shell sends a fresh [`Snapshot`] whenever something changes, and the window just
//! renders it, so there is a single UI contract to keep stable. It is built by a pure
//! function from what the shell holds ([`SnapshotInput`]) and serialized in camelCase.
//! The test at the bottom pins the exact JSON shape, so the contract cannot drift
//! silently: change the UI in the same commit as that test.
use std::collections::HashMap;

use serde::Serialize;

use crate::account::{Account, AccountSnapshot};
use crate::activity::ActivityLog;
use crate::folder_state::{ActivityLevel, FolderState, FolderStatus, TrayState, tray_state};
use crate::notices::Notice;
use crate::problem::Problem;
use crate::settings::{DesktopConfig, Settings, SharedFolder};
use crate::tray_menu::{self, TrayFolder, TrayInput, TrayPrompt};

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub account: AccountSnapshot,
    pub tray_state: TrayState,
    /// The tray's status line ("2 folders shared · 1 needs you").
    pub status_line: String,
    pub folders: Vec<FolderSnapshot>,
    /// Newest first.
    pub activity: Vec<ActivitySnapshot>,
    pub settings: Settings,
    pub autostart: bool,
    /// Oldest first.
    pub notices: Vec<Notice>,
    /// A prompt to bring into view (a notification's body was clicked).
    pub focus: Option<Focus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Focus {
    pub folder_id: String,
    pub request_id: String,
    /// Grows with every request, so the window acts on each once.
    pub serial: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FolderSnapshot {
    pub id: String,
    pub path: String,
    pub name: String,
    /// For "Details" only.
    pub runner_id: String,
    pub workspace: Option<String>,
    pub channel: Option<String>,
    pub state: FolderState,
    pub detail: Option<String>,
    pub problem: Option<Problem>,
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
    /// "Run `npm test`?", as the notification and the tray say it.
    pub question: String,
    pub summary: String,
    pub reason: Option<String>,
    /// "ada asked: “run the tests”".
    pub asked: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortPromptSnapshot {
    pub request_id: String,
    pub port: u16,
    pub command: String,
    pub cwd: Option<String>,
    pub question: String,
    pub context: String,
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
    /// Unix milliseconds of the latest occurrence.
    pub at: u64,
    /// Unix milliseconds of the first one (repeats are folded into one entry).
    pub first_at: u64,
    pub count: u32,
    pub folder_id: String,
    pub level: ActivityLevel,
    pub text: String,
    pub details: Option<String>,
}

/// Everything a snapshot is built from.
pub struct SnapshotInput<'a> {
    pub config: &'a DesktopConfig,
    /// By folder id; a folder without a status shows as stopped.
    pub statuses: &'a HashMap<String, FolderStatus>,
    pub activity: &'a ActivityLog,
    pub account: &'a Account,
    pub autostart: bool,
    /// The notices to show now.
    pub notices: Vec<Notice>,
    pub focus: Option<Focus>,
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
        account: input.account.snapshot(&input.config.settings.kandan_url),
        tray_state: tray_state(input.config.folders.iter().map(status_of)),
        status_line: tray_menu::status_line(&tray_input(input)),
        folders,
        activity: input
            .activity
            .entries()
            .rev()
            .map(|entry| ActivitySnapshot {
                at: entry.at_unix_ms,
                first_at: entry.first_at_unix_ms,
                count: entry.count,
                folder_id: entry.folder_id.clone(),
                level: entry.level,
                text: entry.text.clone(),
                details: entry.details.clone(),
            })
            .collect(),
        settings: input.config.settings.clone(),
        autostart: input.autostart,
        notices: input.notices.clone(),
        focus: input.focus.clone(),
    }
}

/// What the tray menu is made from: the same state the window shows.
pub fn tray_input(input: &SnapshotInput<'_>) -> TrayInput {
    let stopped = FolderStatus::new();
    TrayInput {
        session: input.account.session().clone(),
        waiting_for_browser: input.account.waiting().is_some(),
        kandan_url: input.config.settings.kandan_url.clone(),
        autostart: input.autostart,
        folders: input
            .config
            .folders
            .iter()
            .map(|folder| {
                let status = input.statuses.get(&folder.id).unwrap_or(&stopped);
                TrayFolder {
                    id: folder.id.clone(),
                    name: folder.display_name(),
                    state: status.state(),
                    prompts: status
                        .approvals
                        .iter()
                        .map(|approval| TrayPrompt {
                            request_id: approval.request_id.clone(),
                            question: approval.question(),
                            asked: approval.asked(),
                        })
                        .chain(status.port_prompts.iter().map(|prompt| TrayPrompt {
                            request_id: prompt.request_id.clone(),
                            question: prompt.question(),
                            asked: Some(prompt.context()),
                        }))
                        .collect(),
                    previews: status.forwarded_ports.clone(),
                    has_channel: folder.workspace.is_some() && folder.channel.is_some(),
                }
            })
            .collect(),
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
        name: folder.display_name(),
        runner_id: folder.runner_id.clone(),
        workspace: folder.workspace.clone(),
        channel: folder.channel.clone(),
        state: status.state(),
        detail: status.detail(),
        problem: status.problem(),
        approvals: status
            .approvals
            .iter()
            .map(|approval| ApprovalSnapshot {
                request_id: approval.request_id.clone(),
                kind: approval.kind.clone(),
                question: approval.question(),
                summary: approval.summary.clone(),
                reason: approval.reason.clone(),
                asked: approval.asked(),
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
                question: prompt.question(),
                context: prompt.context(),
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
    use crate::notices::{NewNotice, Notices};
    use crate::token_store::TokenStorage;
    use linzumi_engine::runner::{ChatOrigin, RunnerEvent};
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

    fn signed_in() -> Account {
        let mut account = Account::default();
        account.token_storage = Some(TokenStorage::Keyring);
        account.token_found(Some("ada".into()), true);
        account
    }

    #[test]
    fn the_json_shape_is_the_ui_contract() {
        let config = DesktopConfig {
            folders: vec![folder("f1", "/src/app"), folder("f2", "/src/site")],
            ..DesktopConfig::default()
        };
        let mut activity = ActivityLog::new();
        let mut app = FolderStatus::new();
        let origin = ChatOrigin {
            seq: 4,
            author: Some("grace".into()),
            excerpt: "run the tests".into(),
        };
        for (at, input) in [
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
                asked_in: Some(origin),
            }),
            FolderInput::Runner(RunnerEvent::EditorStarted {
                port: 8443,
                path: "/?folder=/home/me/app".into(),
            }),
        ]
        .into_iter()
        .enumerate()
        {
            activity.record(1000 + at as u64, "f1", app.apply(input));
        }
        let mut site = FolderStatus::new();
        site.apply(FolderInput::Missing {
            path: "/src/site".into(),
        });
        let statuses = HashMap::from([("f1".to_owned(), app), ("f2".to_owned(), site)]);
        let preview = |folder: &SharedFolder, port: u16| {
            (port == 5173).then(|| format!("https://preview.example/{}/{port}", folder.runner_id))
        };
        let mut notices = Notices::default();
        notices.push(NewNotice::info("Signed in to Kandan as ada."), 500);
        let snapshot = build_snapshot(&SnapshotInput {
            config: &config,
            statuses: &statuses,
            activity: &activity,
            account: &signed_in(),
            autostart: true,
            notices: notices.visible(600),
            focus: Some(Focus {
                folder_id: "f1".into(),
                request_id: "a1".into(),
                serial: 1,
            }),
            preview_url: &preview,
        });
        let expected = json!({
            "account": {
                "signedIn": true,
                "sessionEnded": false,
                "kandanUrl": "wss://serve.kandanai.com",
                "kandanHost": "serve.kandanai.com",
                "user": "ada",
                "tokenStorage": "keyring",
                "warning": null,
                "signIn": null
            },
            "trayState": "attention",
            "statusLine": "2 folders shared · 2 need you",
            "folders": [
                {
                    "id": "f1",
                    "path": "/src/app",
                    "name": "app",
                    "runnerId": "desktop-f1",
                    "workspace": "acme",
                    "channel": "codex",
                    "state": "awaiting_approval",
                    "detail": "Run `npm test`?",
                    "problem": null,
                    "approvals": [{
                        "requestId": "a1",
                        "kind": "item/commandExecution/requestApproval",
                        "question": "Run `npm test`?",
                        "summary": "npm test",
                        "reason": null,
                        "asked": "grace asked: “run the tests”"
                    }],
                    "portPrompts": [{
                        "requestId": "p2",
                        "port": 3000,
                        "command": "node api.js",
                        "cwd": null,
                        "question": "Open a preview of port 3000?",
                        "context": "`node api.js` is listening on it"
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
                    "name": "site",
                    "runnerId": "desktop-f2",
                    "workspace": "acme",
                    "channel": "codex",
                    "state": "missing",
                    "detail": null,
                    "problem": {
                        "title": "The folder was moved or deleted",
                        "message": "Linzumi cannot find it at /src/site any more, and Codex stopped working in it. Locate it where it is now, or stop sharing it.",
                        "next": "locate",
                        "field": null,
                        "details": null
                    },
                    "approvals": [],
                    "portPrompts": [],
                    "forwardedPorts": [],
                    "editor": null
                }
            ],
            "activity": [
                {"at": 1006, "firstAt": 1006, "count": 1, "folderId": "f1", "level": "info",
                 "text": "The editor is running", "details": null},
                {"at": 1005, "firstAt": 1005, "count": 1, "folderId": "f1", "level": "warning",
                 "text": "Run `npm test`? — grace asked: “run the tests”", "details": null},
                {"at": 1004, "firstAt": 1004, "count": 1, "folderId": "f1", "level": "warning",
                 "text": "Open a preview of port 3000? `node api.js` is listening on it", "details": null},
                {"at": 1003, "firstAt": 1003, "count": 1, "folderId": "f1", "level": "info",
                 "text": "Preview of port 5173 opened — approved by ada in Kandan", "details": null},
                {"at": 1002, "firstAt": 1002, "count": 1, "folderId": "f1", "level": "warning",
                 "text": "Open a preview of port 5173? `npm run dev` is listening on it", "details": null},
                {"at": 1001, "firstAt": 1001, "count": 1, "folderId": "f1", "level": "info",
                 "text": "Shared with Kandan", "details": "Runner desktop-f1, instance i1"},
                {"at": 1000, "firstAt": 1000, "count": 1, "folderId": "f1", "level": "info",
                 "text": "Connecting to Kandan…", "details": null}
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
            "notices": [{"id": 1, "level": "info", "text": "Signed in to Kandan as ada.",
                         "details": null, "action": null, "expiresAt": 6500}],
            "focus": {"folderId": "f1", "requestId": "a1", "serial": 1}
        });
        assert_eq!(serde_json::to_value(&snapshot).unwrap(), expected);
    }

    #[test]
    fn signed_out_with_a_file_store() {
        let config = DesktopConfig::default();
        let mut account = Account::default();
        account.token_storage = Some(TokenStorage::File);
        account.warning = Some("no keyring".into());
        let snapshot = build_snapshot(&SnapshotInput {
            config: &config,
            statuses: &HashMap::new(),
            activity: &ActivityLog::new(),
            account: &account,
            autostart: false,
            notices: Vec::new(),
            focus: None,
            preview_url: &|_, _| None,
        });
        let json = serde_json::to_value(&snapshot).unwrap();
        assert_eq!(
            json["account"],
            json!({"signedIn": false, "sessionEnded": false,
                   "kandanUrl": "wss://serve.kandanai.com", "kandanHost": "serve.kandanai.com",
                   "user": null, "tokenStorage": "file", "warning": "no keyring", "signIn": null})
        );
        assert_eq!(json["trayState"], "idle");
        assert_eq!(json["statusLine"], "Signed out");
        assert_eq!(json["folders"], json!([]));
    }
}
