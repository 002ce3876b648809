//! The tray menu as data: what it says and what each entry does. The shell renders the
//! entries with Tauri's menu types and turns a click's id back into a [`MenuAction`], so
//! everything a person reads or clicks there is decided (and tested) here.
//!
//! The menu states the situation in words, not only in the icon's colour: a disabled
//! status line ("2 folders shared · 1 needs you") and the account at the top. Every
//! pending prompt is an entry of its own with Approve and Deny, so a missed notification
//! (or a desktop that shows none) never leaves a prompt unanswerable. Signed out, "Sign
//! in to Kandan…" is the first action.
use crate::account::{Session, host_of};
use crate::folder_state::{FolderState, needs_you};
use crate::prompts::{self, TITLE_CHARS};

/// One entry of the menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MenuEntry {
    /// Text that is not clickable (the status and account lines).
    Label(String),
    Item {
        action: MenuAction,
        text: String,
    },
    Check {
        action: MenuAction,
        text: String,
        checked: bool,
    },
    Separator,
    Submenu {
        id: String,
        text: String,
        entries: Vec<MenuEntry>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MenuAction {
    Share,
    OpenWindow,
    ToggleAutostart,
    SignIn,
    CancelSignIn,
    SignOut,
    Quit,
    /// The "Update available" entry (the shell's updates module acts on it).
    Update,
    Folder {
        id: String,
        action: FolderAction,
    },
    /// Answers a pending approval or port prompt of a folder.
    Answer {
        folder: String,
        request: String,
        approve: bool,
    },
    /// Opens the window at a prompt.
    ShowPrompt {
        folder: String,
        request: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FolderAction {
    OpenInKandan,
    OpenEditor,
    StopPreview(u16),
    Retry,
    Locate,
    StopSharing,
}

impl FolderAction {
    fn key(self) -> String {
        match self {
            FolderAction::OpenInKandan => "kandan".into(),
            FolderAction::OpenEditor => "editor".into(),
            FolderAction::StopPreview(port) => format!("stop-preview-{port}"),
            FolderAction::Retry => "retry".into(),
            FolderAction::Locate => "locate".into(),
            FolderAction::StopSharing => "stop".into(),
        }
    }

    fn parse(key: &str) -> Option<FolderAction> {
        Some(match key {
            "kandan" => FolderAction::OpenInKandan,
            "editor" => FolderAction::OpenEditor,
            "retry" => FolderAction::Retry,
            "locate" => FolderAction::Locate,
            "stop" => FolderAction::StopSharing,
            _ => FolderAction::StopPreview(key.strip_prefix("stop-preview-")?.parse().ok()?),
        })
    }
}

/// Ids are `:`-separated; the parts escape `%` and `:` so any folder or request id fits.
fn escape(part: &str) -> String {
    part.replace('%', "%25").replace(':', "%3A")
}

fn unescape(part: &str) -> String {
    part.replace("%3A", ":").replace("%25", "%")
}

impl MenuAction {
    pub fn id(&self) -> String {
        match self {
            MenuAction::Share => "share".into(),
            MenuAction::OpenWindow => "open".into(),
            MenuAction::ToggleAutostart => "autostart".into(),
            MenuAction::SignIn => "sign-in".into(),
            MenuAction::CancelSignIn => "cancel-sign-in".into(),
            MenuAction::SignOut => "sign-out".into(),
            MenuAction::Quit => "quit".into(),
            MenuAction::Update => "update".into(),
            MenuAction::Folder { id, action } => format!("folder:{}:{}", escape(id), action.key()),
            MenuAction::Answer {
                folder,
                request,
                approve,
            } => format!(
                "answer:{}:{}:{}",
                if *approve { "approve" } else { "deny" },
                escape(folder),
                escape(request)
            ),
            MenuAction::ShowPrompt { folder, request } => {
                format!("show:{}:{}", escape(folder), escape(request))
            }
        }
    }

    pub fn parse(id: &str) -> Option<MenuAction> {
        let parts: Vec<&str> = id.split(':').collect();
        Some(match parts.as_slice() {
            ["share"] => MenuAction::Share,
            ["open"] => MenuAction::OpenWindow,
            ["autostart"] => MenuAction::ToggleAutostart,
            ["sign-in"] => MenuAction::SignIn,
            ["cancel-sign-in"] => MenuAction::CancelSignIn,
            ["sign-out"] => MenuAction::SignOut,
            ["quit"] => MenuAction::Quit,
            ["update"] => MenuAction::Update,
            ["folder", folder, key] => MenuAction::Folder {
                id: unescape(folder),
                action: FolderAction::parse(key)?,
            },
            ["answer", verb, folder, request] => MenuAction::Answer {
                folder: unescape(folder),
                request: unescape(request),
                approve: match *verb {
                    "approve" => true,
                    "deny" => false,
                    _ => return None,
                },
            },
            ["show", folder, request] => MenuAction::ShowPrompt {
                folder: unescape(folder),
                request: unescape(request),
            },
            _ => return None,
        })
    }
}

/// A prompt waiting in a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrayPrompt {
    pub request_id: String,
    /// "Run `npm test`?".
    pub question: String,
    /// "ada asked: “run the tests”", when known.
    pub asked: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrayFolder {
    pub id: String,
    /// The folder's name (last path component).
    pub name: String,
    pub state: FolderState,
    pub prompts: Vec<TrayPrompt>,
    /// Approved dev-server ports that can be stopped.
    pub previews: Vec<u16>,
    /// Whether Kandan gave it a channel to open.
    pub has_channel: bool,
}

/// Everything the menu is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrayInput {
    pub session: Session,
    pub waiting_for_browser: bool,
    pub kandan_url: String,
    pub autostart: bool,
    pub folders: Vec<TrayFolder>,
}

/// "2 folders shared · 1 needs you", or what keeps anything from being shared.
pub fn status_line(input: &TrayInput) -> String {
    match input.session {
        Session::SignedOut if input.waiting_for_browser => "Waiting for your browser…".into(),
        Session::SignedOut => "Signed out".into(),
        Session::Ended { .. } => "Your Kandan session ended".into(),
        Session::SignedIn { .. } => {
            let shared = input.folders.len();
            if shared == 0 {
                return "No folders shared yet".into();
            }
            let folders = if shared == 1 { "folder" } else { "folders" };
            let needing = input
                .folders
                .iter()
                .filter(|folder| needs_you(folder.state))
                .count();
            match needing {
                0 => format!("{shared} {folders} shared"),
                1 => format!("{shared} {folders} shared · 1 needs you"),
                _ => format!("{shared} {folders} shared · {needing} need you"),
            }
        }
    }
}

/// "Signed in as ada · kandan.example.com".
pub fn account_line(input: &TrayInput) -> String {
    let host = host_of(&input.kandan_url);
    match &input.session {
        Session::SignedIn { user: Some(user) } => format!("Signed in as {user} · {host}"),
        Session::SignedIn { user: None } => format!("Signed in · {host}"),
        Session::Ended { user: Some(user) } => format!("{user} · {host}"),
        Session::Ended { user: None } | Session::SignedOut => format!("Not signed in · {host}"),
    }
}

/// The folder's state in a word or two.
pub fn state_label(state: FolderState) -> &'static str {
    match state {
        FolderState::Connecting => "connecting",
        FolderState::Ready => "ready",
        FolderState::Working => "working",
        FolderState::AwaitingApproval => "needs you",
        FolderState::Offline => "offline, retrying",
        FolderState::Error => "error",
        FolderState::Stopped => "stopped",
        FolderState::WaitingForSignIn => "waiting for sign-in",
        FolderState::Missing => "moved or deleted",
    }
}

fn item(action: MenuAction, text: impl Into<String>) -> MenuEntry {
    MenuEntry::Item {
        action,
        text: text.into(),
    }
}

fn folder_item(folder: &TrayFolder, action: FolderAction, text: impl Into<String>) -> MenuEntry {
    item(
        MenuAction::Folder {
            id: folder.id.clone(),
            action,
        },
        text,
    )
}

fn prompt_entry(folder: &TrayFolder, prompt: &TrayPrompt) -> MenuEntry {
    let answer = |approve| MenuAction::Answer {
        folder: folder.id.clone(),
        request: prompt.request_id.clone(),
        approve,
    };
    let mut entries = Vec::new();
    if let Some(asked) = &prompt.asked {
        entries.push(MenuEntry::Label(asked.clone()));
    }
    entries.extend([
        item(answer(true), "Approve"),
        item(answer(false), "Deny"),
        item(
            MenuAction::ShowPrompt {
                folder: folder.id.clone(),
                request: prompt.request_id.clone(),
            },
            "Show in Linzumi",
        ),
    ]);
    MenuEntry::Submenu {
        id: format!(
            "prompt:{}",
            MenuAction::ShowPrompt {
                folder: folder.id.clone(),
                request: prompt.request_id.clone(),
            }
            .id()
        ),
        text: prompts::shorten(
            &format!("{}: {}", folder.name, prompt.question),
            TITLE_CHARS + 20,
        ),
        entries,
    }
}

fn folder_entry(folder: &TrayFolder) -> MenuEntry {
    let mut entries = Vec::new();
    match folder.state {
        FolderState::Missing => entries.push(folder_item(folder, FolderAction::Locate, "Locate…")),
        FolderState::Error => entries.push(folder_item(folder, FolderAction::Retry, "Retry")),
        FolderState::WaitingForSignIn | FolderState::Stopped | FolderState::Connecting => {}
        _ => {
            if folder.has_channel {
                entries.push(folder_item(
                    folder,
                    FolderAction::OpenInKandan,
                    "Open in Kandan",
                ));
            }
            entries.push(folder_item(folder, FolderAction::OpenEditor, "Open editor"));
            for port in &folder.previews {
                entries.push(folder_item(
                    folder,
                    FolderAction::StopPreview(*port),
                    format!("Stop preview of port {port}"),
                ));
            }
        }
    }
    entries.push(folder_item(
        folder,
        FolderAction::StopSharing,
        "Stop sharing…",
    ));
    MenuEntry::Submenu {
        id: format!("folder:{}", escape(&folder.id)),
        text: format!("{} — {}", folder.name, state_label(folder.state)),
        entries,
    }
}

/// The whole menu, top to bottom. The last entries are always Open Linzumi, Start at
/// login, (Sign out…,) Quit.
pub fn menu(input: &TrayInput) -> Vec<MenuEntry> {
    let mut entries = vec![
        MenuEntry::Label(status_line(input)),
        MenuEntry::Label(account_line(input)),
    ];
    if input.waiting_for_browser {
        entries.push(item(MenuAction::CancelSignIn, "Cancel sign-in"));
    } else {
        match input.session {
            Session::SignedOut => entries.push(item(MenuAction::SignIn, "Sign in to Kandan…")),
            Session::Ended { .. } => {
                entries.push(item(MenuAction::SignIn, "Sign in again…"));
            }
            Session::SignedIn { .. } => {}
        }
    }
    let prompts: Vec<MenuEntry> = input
        .folders
        .iter()
        .flat_map(|folder| {
            folder
                .prompts
                .iter()
                .map(move |prompt| prompt_entry(folder, prompt))
        })
        .collect();
    if !prompts.is_empty() {
        entries.push(MenuEntry::Separator);
        entries.extend(prompts);
    }
    entries.push(MenuEntry::Separator);
    entries.push(item(MenuAction::Share, "Share folder with Kandan…"));
    entries.extend(input.folders.iter().map(folder_entry));
    entries.push(MenuEntry::Separator);
    entries.push(item(MenuAction::OpenWindow, "Open Linzumi"));
    entries.push(MenuEntry::Check {
        action: MenuAction::ToggleAutostart,
        text: "Start at login".into(),
        checked: input.autostart,
    });
    if !matches!(input.session, Session::SignedOut) {
        entries.push(item(MenuAction::SignOut, "Sign out…"));
    }
    entries.push(item(MenuAction::Quit, "Quit"));
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(name: &str, state: FolderState) -> TrayFolder {
        TrayFolder {
            id: format!("id-{name}"),
            name: name.into(),
            state,
            prompts: Vec::new(),
            previews: Vec::new(),
            has_channel: true,
        }
    }

    fn signed_in(folders: Vec<TrayFolder>) -> TrayInput {
        TrayInput {
            session: Session::SignedIn {
                user: Some("ada".into()),
            },
            waiting_for_browser: false,
            kandan_url: "wss://kandan.example.com".into(),
            autostart: false,
            folders,
        }
    }

    fn texts(entries: &[MenuEntry]) -> Vec<String> {
        entries
            .iter()
            .map(|entry| match entry {
                MenuEntry::Label(text) => format!("[{text}]"),
                MenuEntry::Item { text, .. } | MenuEntry::Check { text, .. } => text.clone(),
                MenuEntry::Separator => "---".into(),
                MenuEntry::Submenu { text, .. } => format!("{text} >"),
            })
            .collect()
    }

    #[test]
    fn every_menu_id_parses_back_to_its_action() {
        let actions = [
            MenuAction::Share,
            MenuAction::OpenWindow,
            MenuAction::ToggleAutostart,
            MenuAction::SignIn,
            MenuAction::CancelSignIn,
            MenuAction::SignOut,
            MenuAction::Quit,
            MenuAction::Update,
            MenuAction::Folder {
                id: "5f0c-1".into(),
                action: FolderAction::StopSharing,
            },
            MenuAction::Folder {
                id: "a:b%3A".into(),
                action: FolderAction::OpenEditor,
            },
            MenuAction::Folder {
                id: "f".into(),
                action: FolderAction::StopPreview(5173),
            },
            MenuAction::Folder {
                id: "f".into(),
                action: FolderAction::Locate,
            },
            MenuAction::Folder {
                id: "f".into(),
                action: FolderAction::Retry,
            },
            MenuAction::Answer {
                folder: "f:1".into(),
                request: "port-forward-1:x".into(),
                approve: true,
            },
            MenuAction::Answer {
                folder: "f".into(),
                request: "7".into(),
                approve: false,
            },
            MenuAction::ShowPrompt {
                folder: "f".into(),
                request: "7".into(),
            },
        ];
        for action in actions {
            assert_eq!(MenuAction::parse(&action.id()), Some(action));
        }
        for bad in [
            "folder:x:explode",
            "folder:x",
            "folder:x:stop-preview-x",
            "answer:maybe:f:r",
            "answer:approve:f",
            "",
        ] {
            assert_eq!(MenuAction::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn signed_out_the_first_action_is_to_sign_in() {
        let input = TrayInput {
            session: Session::SignedOut,
            ..signed_in(vec![folder("my-app", FolderState::WaitingForSignIn)])
        };
        let menu = menu(&input);
        assert_eq!(
            texts(&menu),
            [
                "[Signed out]",
                "[Not signed in · kandan.example.com]",
                "Sign in to Kandan…",
                "---",
                "Share folder with Kandan…",
                "my-app — waiting for sign-in >",
                "---",
                "Open Linzumi",
                "Start at login",
                "Quit"
            ]
        );
        let waiting = TrayInput {
            waiting_for_browser: true,
            ..input
        };
        let menu = super::menu(&waiting);
        assert_eq!(texts(&menu)[0], "[Waiting for your browser…]");
        assert_eq!(texts(&menu)[2], "Cancel sign-in");
    }

    #[test]
    fn an_ended_session_says_so_and_offers_to_sign_in_again() {
        let input = TrayInput {
            session: Session::Ended {
                user: Some("ada".into()),
            },
            ..signed_in(vec![folder("my-app", FolderState::WaitingForSignIn)])
        };
        let menu = texts(&menu(&input));
        assert_eq!(
            menu[..3],
            [
                "[Your Kandan session ended]",
                "[ada · kandan.example.com]",
                "Sign in again…"
            ]
        );
        assert!(menu.contains(&"Sign out…".to_owned()));
    }

    #[test]
    fn the_status_line_counts_in_words() {
        assert_eq!(status_line(&signed_in(vec![])), "No folders shared yet");
        assert_eq!(
            status_line(&signed_in(vec![folder("a", FolderState::Ready)])),
            "1 folder shared"
        );
        assert_eq!(
            status_line(&signed_in(vec![
                folder("a", FolderState::AwaitingApproval),
                folder("b", FolderState::Working),
            ])),
            "2 folders shared · 1 needs you"
        );
        assert_eq!(
            account_line(&signed_in(vec![])),
            "Signed in as ada · kandan.example.com"
        );
    }

    #[test]
    fn prompts_are_entries_of_their_own_and_folders_offer_their_way_back() {
        let mut app = folder("my-app", FolderState::AwaitingApproval);
        app.prompts.push(TrayPrompt {
            request_id: "7".into(),
            question: "Run `npm test`?".into(),
            asked: Some("ada asked: “run the tests”".into()),
        });
        app.previews = vec![5173];
        let menu = menu(&signed_in(vec![
            app,
            folder("site", FolderState::Missing),
            folder("api", FolderState::Error),
        ]));
        assert_eq!(
            texts(&menu),
            [
                "[3 folders shared · 3 need you]",
                "[Signed in as ada · kandan.example.com]",
                "---",
                "my-app: Run `npm test`? >",
                "---",
                "Share folder with Kandan…",
                "my-app — needs you >",
                "site — moved or deleted >",
                "api — error >",
                "---",
                "Open Linzumi",
                "Start at login",
                "Sign out…",
                "Quit"
            ]
        );
        let MenuEntry::Submenu { entries, .. } = &menu[3] else {
            panic!("{:?}", menu[3]);
        };
        assert_eq!(
            texts(entries),
            [
                "[ada asked: “run the tests”]",
                "Approve",
                "Deny",
                "Show in Linzumi"
            ]
        );
        assert_eq!(
            entries[1],
            item(
                MenuAction::Answer {
                    folder: "id-my-app".into(),
                    request: "7".into(),
                    approve: true
                },
                "Approve"
            )
        );
        let sub = |index: usize| match &menu[index] {
            MenuEntry::Submenu { entries, .. } => texts(entries),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            sub(6),
            [
                "Open in Kandan",
                "Open editor",
                "Stop preview of port 5173",
                "Stop sharing…"
            ]
        );
        assert_eq!(sub(7), ["Locate…", "Stop sharing…"]);
        assert_eq!(sub(8), ["Retry", "Stop sharing…"]);
    }
}
