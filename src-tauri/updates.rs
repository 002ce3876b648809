//! The shell's side of updates: the updater plugin, the window's commands, the "update"
//! event and the tray's item. Looking, verifying and installing are
//! `linzumi-desktop-updater`'s; the wording is `linzumi_desktop_core::update_state`'s.
use std::sync::Arc;

use linzumi_desktop_updater::update_state::{InstallKind, UpdateState};
use linzumi_desktop_updater::{Options, Updates};
use tauri::plugin::TauriPlugin;
use tauri::{AppHandle, Emitter as _, Manager as _, Runtime, State, Wry};

type AppUpdates = Arc<Updates<Wry>>;

/// What the window gets: the state, and the sentence to show for it (so the wording is
/// the core's, in one place).
#[derive(Debug, Clone, serde::Serialize)]
pub struct UpdateView {
    #[serde(flatten)]
    state: UpdateState,
    text: Option<String>,
}

impl From<UpdateState> for UpdateView {
    fn from(state: UpdateState) -> UpdateView {
        UpdateView {
            text: state.message(),
            state,
        }
    }
}

pub fn plugin() -> TauriPlugin<Wry, tauri_plugin_updater::Config> {
    tauri_plugin_updater::Builder::new().build()
}

/// Debug builds only: `LINZUMI_TEST_UPDATE_FEED` replaces `plugins.updater` (a JSON
/// object with the feed and its key), so the desktop tests and a screenshot can use the
/// local feed of testing/release-feed. Release builds trust only their built-in key.
pub fn test_feed(context: &mut tauri::Context<Wry>) {
    if !cfg!(debug_assertions) {
        return;
    }
    let Some(feed) = std::env::var("LINZUMI_TEST_UPDATE_FEED")
        .ok()
        .and_then(|json| serde_json::from_str(&json).ok())
    else {
        return;
    };
    context
        .config_mut()
        .plugins
        .0
        .insert("updater".into(), feed);
}

/// Starts looking (at once and daily, when `enabled`); `changed` runs after every change
/// (the shell republishes the tray), and the window gets an "update" event.
pub fn start(app: &AppHandle<Wry>, enabled: bool, changed: impl Fn() + Send + Sync + 'static) {
    let window = app.clone();
    let updates = Updates::new(
        app.clone(),
        Options::for_this_app(),
        enabled,
        move |state| {
            let _ = window.emit("update", UpdateView::from(state.clone()));
            changed();
        },
    );
    app.manage(updates.clone());
    tauri::async_runtime::spawn(updates.run());
}

/// The tray's item: "Update available: Linzumi 0.2.0", or nothing.
pub fn tray_label<R: Runtime>(app: &AppHandle<R>) -> Option<String> {
    app.try_state::<Arc<Updates<R>>>()?.state().tray_label()
}

/// The setting changed in the window.
pub fn set_enabled(app: &AppHandle<Wry>, enabled: bool) {
    if let Some(updates) = app.try_state::<AppUpdates>() {
        updates.set_enabled(enabled);
    }
}

/// The tray item's click: installs where this copy can replace itself, and opens the
/// release page where the package manager (or a download) updates it.
pub fn on_tray_click(app: &AppHandle<Wry>) {
    let Some(updates) = app.try_state::<AppUpdates>() else {
        return;
    };
    let updates = updates.inner().clone();
    match updates.state() {
        UpdateState::Available {
            install: InstallKind::InApp,
            ..
        } => {
            tauri::async_runtime::spawn(async move {
                if let Err(message) = updates.install().await {
                    tracing::warn!(%message, "the update was not installed");
                }
            });
        }
        UpdateState::Available { release_url, .. } => open_page(&release_url),
        _ => {}
    }
}

fn open_page(url: &str) {
    if let Err(error) = open::that_detached(url) {
        tracing::warn!(%error, "could not open the release page");
    }
}

#[tauri::command]
pub fn get_update_state(updates: State<'_, AppUpdates>) -> UpdateView {
    updates.state().into()
}

/// The window's Install button.
#[tauri::command]
pub async fn install_update(updates: State<'_, AppUpdates>) -> Result<(), String> {
    updates.install().await
}

/// The window's link to the release; the URL comes from the app, never from the page.
#[tauri::command]
pub fn open_release_page(updates: State<'_, AppUpdates>) -> Result<(), String> {
    match updates.state() {
        UpdateState::Available { release_url, .. } => {
            open::that_detached(&release_url).map_err(|error| error.to_string())
        }
        _ => Err("There is no release to show.".into()),
    }
}
