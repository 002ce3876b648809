//! The tray icon and its menu, rendered from the core's menu model
//! ([`linzumi_desktop_core::tray_menu`]) whenever the state changes. A click's id is
//! turned back into a [`MenuAction`] there, so the handler is a pure function.
use linzumi_desktop_core::folder_state::TrayState;
use linzumi_desktop_core::tray_menu::{MenuAction, MenuEntry};
use tauri::image::Image;
use tauri::menu::{CheckMenuItem, IsMenuItem, Menu, MenuItem, PredefinedMenuItem, Submenu};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Runtime};

pub const TRAY_ID: &str = "linzumi";

/// What the tray shows: the icon's state, the tooltip's words and the menu.
#[derive(Debug, Clone, PartialEq)]
pub struct TrayModel {
    pub state: TrayState,
    /// The status line, repeated in the tooltip so the icon is not all colour.
    pub status: String,
    pub entries: Vec<MenuEntry>,
}

fn tooltip(model: &TrayModel) -> String {
    format!("Linzumi — {}", model.status)
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

type Item<R> = Box<dyn IsMenuItem<R>>;

/// The menu items of `entries`; labels get ids of their own (`label:<n>`), never an
/// action's.
fn items<R: Runtime>(
    app: &AppHandle<R>,
    entries: &[MenuEntry],
    labels: &mut usize,
) -> tauri::Result<Vec<Item<R>>> {
    let mut built: Vec<Item<R>> = Vec::new();
    for entry in entries {
        match entry {
            MenuEntry::Label(text) => {
                *labels += 1;
                built.push(Box::new(MenuItem::with_id(
                    app,
                    format!("label:{labels}"),
                    text,
                    false,
                    None::<&str>,
                )?));
            }
            MenuEntry::Item { action, text } => built.push(Box::new(MenuItem::with_id(
                app,
                action.id(),
                text,
                true,
                None::<&str>,
            )?)),
            MenuEntry::Check {
                action,
                text,
                checked,
            } => built.push(Box::new(CheckMenuItem::with_id(
                app,
                action.id(),
                text,
                true,
                *checked,
                None::<&str>,
            )?)),
            MenuEntry::Separator => built.push(Box::new(PredefinedMenuItem::separator(app)?)),
            MenuEntry::Submenu { id, text, entries } => {
                let children = items(app, entries, labels)?;
                let refs: Vec<&dyn IsMenuItem<R>> = children.iter().map(|item| &**item).collect();
                built.push(Box::new(Submenu::with_id_and_items(
                    app,
                    id.as_str(),
                    text,
                    true,
                    &refs,
                )?));
            }
        }
    }
    Ok(built)
}

fn menu<R: Runtime>(app: &AppHandle<R>, model: &TrayModel) -> tauri::Result<Menu<R>> {
    let items = items(app, &model.entries, &mut 0)?;
    let refs: Vec<&dyn IsMenuItem<R>> = items.iter().map(|item| &**item).collect();
    Menu::with_items(app, &refs)
}

/// Creates the tray icon; `on_action` runs for every menu click.
pub fn install<R: Runtime>(
    app: &AppHandle<R>,
    model: &TrayModel,
    on_action: impl Fn(&AppHandle<R>, MenuAction) + Send + Sync + 'static,
) -> tauri::Result<TrayIcon<R>> {
    TrayIconBuilder::with_id(TRAY_ID)
        .tooltip(tooltip(model))
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
        tray.set_tooltip(Some(tooltip(model)))?;
        tray.set_menu(Some(menu(app, model)?))?;
    }
    Ok(())
}
