//! What a tray menu click does. The window may be closed: whatever fails here is reported
//! through [`Desktop::report`], which also raises a notification then. Stopping a share
//! and signing out (which stops every share) ask first, as the window does.
use std::sync::Arc;

use linzumi_desktop_core::notices::NewNotice;
use linzumi_desktop_core::prompts::Surface;
use linzumi_desktop_core::tray_menu::{FolderAction, MenuAction};
use tauri::{AppHandle, Manager, Wry};

use crate::commands;
use crate::desktop::{Desktop, confirm, show_window};

pub fn on_menu(app: &AppHandle<Wry>, action: MenuAction) {
    let Some(desktop) = app.try_state::<Arc<Desktop<Wry>>>() else {
        return;
    };
    let desktop = desktop.inner().clone();
    let app = app.clone();
    match action {
        MenuAction::Quit => app.exit(0),
        MenuAction::Update => crate::updates::on_tray_click(&app),
        MenuAction::OpenWindow => show_window(&app),
        MenuAction::ToggleAutostart => {
            let enabled = !desktop.snapshot().autostart;
            if let Err(message) = commands::apply_autostart(&app, &desktop, enabled) {
                desktop.report(NewNotice::error(message));
            }
        }
        MenuAction::ShowPrompt { folder, request } => desktop.show_prompt(&folder, &request),
        action => {
            tauri::async_runtime::spawn(async move { run(&app, &desktop, action).await });
        }
    }
}

/// The actions that wait for something (a dialog, the runner, the keyring).
async fn run(app: &AppHandle<Wry>, desktop: &Arc<Desktop<Wry>>, action: MenuAction) {
    let failed = |message: String| NewNotice::error(message);
    let outcome: Result<(), NewNotice> = match action {
        MenuAction::Share => {
            desktop.share_from_tray().await;
            Ok(())
        }
        MenuAction::SignIn => desktop.sign_in().map_err(failed),
        MenuAction::CancelSignIn => {
            desktop.cancel_sign_in().await;
            Ok(())
        }
        MenuAction::SignOut => {
            let asked = !desktop.has_folders()
                || confirm(
                    app,
                    "Sign out of Kandan?",
                    "Your shared folders stop until you sign in again.",
                    "Sign out",
                )
                .await;
            if asked {
                desktop.sign_out().await.map_err(failed)
            } else {
                Ok(())
            }
        }
        MenuAction::Answer {
            folder,
            request,
            approve,
        } => {
            let answered = desktop
                .answer(&folder, &request, approve, Surface::Tray)
                .await;
            desktop.publish();
            answered.map_err(|message| failed(message).about_folder(folder))
        }
        MenuAction::Folder { id, action } => folder_action(app, desktop, &id, action).await,
        MenuAction::Quit
        | MenuAction::Update
        | MenuAction::OpenWindow
        | MenuAction::ToggleAutostart
        | MenuAction::ShowPrompt { .. } => Ok(()),
    };
    if let Err(notice) = outcome {
        desktop.report(notice);
    }
}

async fn folder_action(
    app: &AppHandle<Wry>,
    desktop: &Arc<Desktop<Wry>>,
    id: &str,
    action: FolderAction,
) -> Result<(), NewNotice> {
    let failed = |message: String| NewNotice::error(message).about_folder(id);
    match action {
        FolderAction::OpenInKandan => desktop.open_in_kandan(id),
        FolderAction::OpenEditor => desktop.open_editor(id).await,
        FolderAction::StopPreview(port) => desktop.stop_preview(id, port).await.map_err(failed),
        FolderAction::Retry => {
            desktop.retry(id).await;
            Ok(())
        }
        FolderAction::Locate => desktop.locate(id).await.map_err(failed),
        FolderAction::StopSharing => {
            let name = desktop.folder_name(id).unwrap_or_default();
            let sure = confirm(
                app,
                &format!("Stop sharing {name}?"),
                "The thread stays in Kandan; Codex stops working in this folder.",
                "Stop sharing",
            )
            .await;
            if sure {
                desktop.stop_sharing(id).await.map_err(failed)
            } else {
                Ok(())
            }
        }
    }
}
