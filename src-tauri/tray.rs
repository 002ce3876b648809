//! The tray icon and its menu, rebuilt from a small model whenever the state changes.
//! Menu ids are plain strings (`folder:<id>:stop`); [`MenuAction::parse`] turns a click
//! back into what to do, so the handler is a pure function the tests can call.
use linzumi_desktop_core::folder_state::{FolderState, TrayState};
use tauri::image::Image;
use tauri::menu::{CheckMenuItem, Menu, MenuItem, PredefinedMenuItem, Submenu};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Runtime};

pub const TRAY_ID: &str = "linzumi";

/// What the menu shows.
#[derive(Debug, Clone, PartialEq)]
pub struct TrayModel {
    pub state: TrayState,
    pub signed_in: bool,
    pub autostart: bool,
    pub folders: Vec<TrayFolder>,
    /// "Update available: Linzumi 0.2.0", when there is one (see updates.rs).
    pub update: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrayFolder {
    pub id: String,
    /// The folder's name (last path component).
    pub name: String,
    pub state: FolderState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MenuAction {
    Share,
    OpenWindow,
    ToggleAutostart,
    SignIn,
    SignOut,
    Quit,
    Update,
    Folder { id: String, action: FolderAction },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FolderAction {
    OpenInKandan,
    OpenEditor,
    ShowPreviews,
    StopSharing,
}

impl FolderAction {
    const ALL: [(FolderAction, &'static str, &'static str); 4] = [
        (FolderAction::OpenInKandan, "kandan", "Open in Kandan"),
        (FolderAction::OpenEditor, "editor", "Open editor"),
        (FolderAction::ShowPreviews, "previews", "Show previews"),
        (FolderAction::StopSharing, "stop", "Stop sharing"),
    ];

    fn key(self) -> &'static str {
        FolderAction::ALL
            .iter()
            .find(|(action, _, _)| *action == self)
            .map_or("", |(_, key, _)| key)
    }
}

impl MenuAction {
    pub fn id(&self) -> String {
        match self {
            MenuAction::Share => "share".into(),
            MenuAction::OpenWindow => "open".into(),
            MenuAction::ToggleAutostart => "autostart".into(),
            MenuAction::SignIn => "sign-in".into(),
            MenuAction::SignOut => "sign-out".into(),
            MenuAction::Quit => "quit".into(),
            MenuAction::Update => "update".into(),
            MenuAction::Folder { id, action } => format!("folder:{id}:{}", action.key()),
        }
    }

    pub fn parse(id: &str) -> Option<MenuAction> {
        Some(match id {
            "share" => MenuAction::Share,
            "open" => MenuAction::OpenWindow,
            "autostart" => MenuAction::ToggleAutostart,
            "sign-in" => MenuAction::SignIn,
            "sign-out" => MenuAction::SignOut,
            "quit" => MenuAction::Quit,
            "update" => MenuAction::Update,
            _ => {
                let rest = id.strip_prefix("folder:")?;
                let (folder, key) = rest.rsplit_once(':')?;
                let action = FolderAction::ALL
                    .iter()
                    .find(|(_, candidate, _)| *candidate == key)?
                    .0;
                MenuAction::Folder {
                    id: folder.to_owned(),
                    action,
                }
            }
        })
    }
}

pub fn state_label(state: FolderState) -> &'static str {
    match state {
        FolderState::Connecting => "connecting",
        FolderState::Ready => "ready",
        FolderState::Working => "working",
        FolderState::AwaitingApproval => "awaiting approval",
        FolderState::Offline => "offline",
        FolderState::Error => "error",
        FolderState::Stopped => "stopped",
    }
}

fn tooltip(state: TrayState) -> &'static str {
    match state {
        TrayState::Idle => "Linzumi",
        TrayState::Working => "Linzumi: Codex is working",
        TrayState::Attention => "Linzumi: needs your attention",
        TrayState::Offline => "Linzumi: offline",
    }
}

fn icon(state: TrayState) -> tauri::Result<Image<'static>> {
    let bytes: &[u8] = match state {
        TrayState::Idle => include_bytes!("../icons/tray-idle.png"),
        TrayState::Working => include_bytes!("../icons/tray-working.png"),
        TrayState::Attention => include_bytes!("../icons/tray-attention.png"),
        TrayState::Offline => include_bytes!("../icons/tray-offline.png"),
    };
    Image::from_bytes(bytes)
}

fn menu<R: Runtime>(app: &AppHandle<R>, model: &TrayModel) -> tauri::Result<Menu<R>> {
    let item = |action: MenuAction, text: &str| {
        MenuItem::with_id(app, action.id(), text, true, None::<&str>)
    };
    let menu = Menu::new(app)?;
    if let Some(update) = &model.update {
        menu.append(&item(MenuAction::Update, update)?)?;
        menu.append(&PredefinedMenuItem::separator(app)?)?;
    }
    menu.append(&item(MenuAction::Share, "Share folder with Kandan…")?)?;
    if !model.folders.is_empty() {
        menu.append(&PredefinedMenuItem::separator(app)?)?;
    }
    for folder in &model.folders {
        let label = format!("{} — {}", folder.name, state_label(folder.state));
        let submenu = Submenu::with_id(app, format!("folder:{}", folder.id), label, true)?;
        for (action, _, text) in FolderAction::ALL {
            submenu.append(&item(
                MenuAction::Folder {
                    id: folder.id.clone(),
                    action,
                },
                text,
            )?)?;
        }
        menu.append(&submenu)?;
    }
    menu.append(&PredefinedMenuItem::separator(app)?)?;
    menu.append(&item(MenuAction::OpenWindow, "Open Linzumi")?)?;
    menu.append(&CheckMenuItem::with_id(
        app,
        MenuAction::ToggleAutostart.id(),
        "Start at login",
        true,
        model.autostart,
        None::<&str>,
    )?)?;
    menu.append(&if model.signed_in {
        item(MenuAction::SignOut, "Sign out")?
    } else {
        item(MenuAction::SignIn, "Sign in…")?
    })?;
    menu.append(&item(MenuAction::Quit, "Quit")?)?;
    Ok(menu)
}

/// Creates the tray icon; `on_action` runs for every menu click.
pub fn install<R: Runtime>(
    app: &AppHandle<R>,
    model: &TrayModel,
    on_action: impl Fn(&AppHandle<R>, MenuAction) + Send + Sync + 'static,
) -> tauri::Result<TrayIcon<R>> {
    TrayIconBuilder::with_id(TRAY_ID)
        .tooltip(tooltip(model.state))
        .icon(icon(model.state)?)
        .menu(&menu(app, model)?)
        .show_menu_on_left_click(true)
        .on_menu_event(move |app, event| {
            if let Some(action) = MenuAction::parse(event.id().as_ref()) {
                on_action(app, action);
            }
        })
        .build(app)
}

/// Shows a new state: icon, tooltip and menu.
pub fn update<R: Runtime>(app: &AppHandle<R>, model: &TrayModel) -> tauri::Result<()> {
    if let Some(tray) = app.tray_by_id(TRAY_ID) {
        tray.set_icon(Some(icon(model.state)?))?;
        tray.set_tooltip(Some(tooltip(model.state)))?;
        tray.set_menu(Some(menu(app, model)?))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_menu_id_parses_back_to_its_action() {
        let actions = [
            MenuAction::Share,
            MenuAction::OpenWindow,
            MenuAction::ToggleAutostart,
            MenuAction::SignIn,
            MenuAction::SignOut,
            MenuAction::Quit,
            MenuAction::Update,
            MenuAction::Folder {
                id: "5f0c-1".into(),
                action: FolderAction::StopSharing,
            },
            MenuAction::Folder {
                id: "a:b".into(),
                action: FolderAction::OpenEditor,
            },
        ];
        for action in actions {
            assert_eq!(MenuAction::parse(&action.id()), Some(action));
        }
        assert_eq!(MenuAction::parse("folder:x:explode"), None);
        assert_eq!(MenuAction::parse("folder:x"), None);
    }
}
