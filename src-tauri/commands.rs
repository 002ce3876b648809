//! What the window may ask for (`invoke`). Errors are sentences the window shows next to
//! what was clicked.
use std::sync::Arc;

use linzumi_desktop_core::settings::Settings;
use linzumi_desktop_core::snapshot::Snapshot;
use tauri::{AppHandle, State, Wry};
use tauri_plugin_autostart::ManagerExt as _;
use tauri_plugin_dialog::DialogExt as _;

use crate::desktop::Desktop;

type App<'a> = State<'a, Arc<Desktop<Wry>>>;

#[tauri::command]
pub fn get_snapshot(desktop: App<'_>) -> Snapshot {
    desktop.snapshot()
}

/// Asks for a folder with the native picker, then shares it.
#[tauri::command]
pub async fn share_folder(app: AppHandle<Wry>, desktop: App<'_>) -> Result<(), String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    app.dialog().file().pick_folder(move |folder| {
        let _ = tx.send(folder);
    });
    let Some(folder) = rx.await.ok().flatten() else {
        return Ok(());
    };
    let path = folder.into_path().map_err(|error| error.to_string())?;
    desktop.inner().share(path).await
}

#[tauri::command]
pub async fn stop_sharing(desktop: App<'_>, folder_id: String) -> Result<(), String> {
    desktop.stop_sharing(&folder_id).await
}

#[tauri::command]
pub async fn resolve_approval(
    desktop: App<'_>,
    folder_id: String,
    request_id: String,
    approve: bool,
) -> Result<(), String> {
    desktop
        .resolve_approval(&folder_id, &request_id, approve)
        .await
}

#[tauri::command]
pub async fn resolve_port_forward(
    desktop: App<'_>,
    folder_id: String,
    request_id: String,
    approve: bool,
) -> Result<(), String> {
    desktop
        .resolve_port_forward(&folder_id, &request_id, approve)
        .await
}

#[tauri::command]
pub fn sign_in(desktop: App<'_>) -> Result<(), String> {
    desktop.inner().sign_in()
}

#[tauri::command]
pub async fn sign_out(desktop: App<'_>) -> Result<(), String> {
    desktop.sign_out().await
}

#[tauri::command]
pub async fn save_settings(
    app: AppHandle<Wry>,
    desktop: App<'_>,
    settings: Settings,
) -> Result<Settings, String> {
    let saved = desktop.save_settings(settings).await?;
    crate::updates::set_enabled(&app, saved.check_for_updates);
    Ok(saved)
}

#[tauri::command]
pub fn open_in_kandan(desktop: App<'_>, folder_id: String) -> Result<(), String> {
    desktop.open_in_kandan(&folder_id)
}

#[tauri::command]
pub fn open_preview(desktop: App<'_>, folder_id: String, port: u16) -> Result<(), String> {
    desktop.open_preview(&folder_id, port)
}

#[tauri::command]
pub async fn open_editor(desktop: App<'_>, folder_id: String) -> Result<(), String> {
    desktop.open_editor(&folder_id).await
}

#[tauri::command]
pub fn set_autostart(app: AppHandle<Wry>, desktop: App<'_>, enabled: bool) -> Result<(), String> {
    apply_autostart(&app, &desktop, enabled)
}

/// Registers or removes the login item, then remembers the choice (window and tray).
pub fn apply_autostart(
    app: &AppHandle<Wry>,
    desktop: &Desktop<Wry>,
    enabled: bool,
) -> Result<(), String> {
    // auto-launch makes ~/.config/autostart with create_dir, which fails in a home
    // that has no ~/.config yet (a fresh account).
    #[cfg(target_os = "linux")]
    if enabled && let Some(home) = std::env::var_os("HOME") {
        let _ = std::fs::create_dir_all(std::path::Path::new(&home).join(".config"));
    }
    let launcher = app.autolaunch();
    let result = if enabled {
        launcher.enable()
    } else {
        launcher.disable()
    };
    result.map_err(|error| format!("Could not change Start at login: {error}"))?;
    desktop.set_autostart(enabled)
}
