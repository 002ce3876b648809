//! What the window may ask for (`invoke`). A failure is a [`Failure`]: a sentence the
//! window shows next to what was clicked, and the raw error behind "Details".
use std::sync::Arc;

use linzumi_desktop_core::notices::NewNotice;
use linzumi_desktop_core::prompts::Surface;
use linzumi_desktop_core::settings::{Settings, SettingsRejected};
use linzumi_desktop_core::snapshot::Snapshot;
use serde::Serialize;
use tauri::{AppHandle, State, Wry};
use tauri_plugin_autostart::ManagerExt as _;

use crate::desktop::{self, Desktop};

type App<'a> = State<'a, Arc<Desktop<Wry>>>;

/// Why a window action did not work.
#[derive(Debug, Serialize)]
pub struct Failure {
    message: String,
    details: Option<String>,
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure {
            message,
            details: None,
        }
    }
}

impl From<NewNotice> for Failure {
    fn from(notice: NewNotice) -> Failure {
        Failure {
            message: notice.text,
            details: notice.details,
        }
    }
}

type Done = Result<(), Failure>;

#[tauri::command]
pub fn get_snapshot(desktop: App<'_>) -> Snapshot {
    desktop.snapshot()
}

/// Asks for a folder with the native picker, then shares it.
#[tauri::command]
pub async fn share_folder(app: AppHandle<Wry>, desktop: App<'_>) -> Done {
    let Some(path) = desktop::pick_folder(&app, "Share a folder with Kandan").await else {
        return Ok(());
    };
    Ok(desktop.inner().share(path).await?)
}

#[tauri::command]
pub async fn stop_sharing(desktop: App<'_>, folder_id: String) -> Done {
    Ok(desktop.stop_sharing(&folder_id).await?)
}

/// Starts a folder in error again.
#[tauri::command]
pub async fn retry_folder(desktop: App<'_>, folder_id: String) -> Done {
    desktop.inner().retry(&folder_id).await;
    Ok(())
}

/// "Locate…": points a moved folder's share at where it is now.
#[tauri::command]
pub async fn locate_folder(desktop: App<'_>, folder_id: String) -> Done {
    Ok(desktop.inner().locate(&folder_id).await?)
}

/// Answers a Codex approval or a preview prompt.
#[tauri::command]
pub async fn answer_prompt(
    desktop: App<'_>,
    folder_id: String,
    request_id: String,
    approve: bool,
) -> Done {
    let answered = desktop
        .answer(&folder_id, &request_id, approve, Surface::Window)
        .await;
    desktop.publish();
    Ok(answered?)
}

#[tauri::command]
pub async fn stop_preview(desktop: App<'_>, folder_id: String, port: u16) -> Done {
    Ok(desktop.stop_preview(&folder_id, port).await?)
}

#[tauri::command]
pub fn sign_in(desktop: App<'_>) -> Done {
    Ok(desktop.inner().sign_in()?)
}

#[tauri::command]
pub async fn cancel_sign_in(desktop: App<'_>) -> Done {
    desktop.inner().cancel_sign_in().await;
    Ok(())
}

#[tauri::command]
pub async fn sign_out(desktop: App<'_>) -> Done {
    Ok(desktop.sign_out().await?)
}

#[tauri::command]
pub fn dismiss_notice(desktop: App<'_>, id: u64) {
    desktop.dismiss_notice(id);
}

#[tauri::command]
pub async fn save_settings(
    desktop: App<'_>,
    app: AppHandle<Wry>,
    settings: Settings,
) -> Result<Settings, SettingsRejected> {
    let saved = desktop.save_settings(settings).await?;
    crate::updates::set_enabled(&app, saved.check_for_updates);
    Ok(saved)
}

#[tauri::command]
pub fn open_in_kandan(desktop: App<'_>, folder_id: String) -> Done {
    Ok(desktop.open_in_kandan(&folder_id)?)
}

#[tauri::command]
pub fn open_preview(desktop: App<'_>, folder_id: String, port: u16) -> Done {
    Ok(desktop.open_preview(&folder_id, port)?)
}

#[tauri::command]
pub async fn open_editor(desktop: App<'_>, folder_id: String) -> Done {
    Ok(desktop.open_editor(&folder_id).await?)
}

#[tauri::command]
pub fn set_autostart(app: AppHandle<Wry>, desktop: App<'_>, enabled: bool) -> Done {
    Ok(apply_autostart(&app, &desktop, enabled)?)
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
