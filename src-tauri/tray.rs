//! The tray icon and its menu.
use tauri::menu::{Menu, MenuItem};
use tauri::tray::TrayIconBuilder;
use tauri::{AppHandle, Runtime};

/// Menu item ids, kept in one place so the handler and the builder agree.
pub const QUIT: &str = "quit";

pub fn install<R: Runtime>(app: &AppHandle<R>) -> tauri::Result<()> {
    let quit = MenuItem::with_id(app, QUIT, "Quit Linzumi", true, None::<&str>)?;
    let menu = Menu::with_items(app, &[&quit])?;
    let mut builder = TrayIconBuilder::with_id("linzumi")
        .tooltip("Linzumi")
        .menu(&menu)
        .on_menu_event(|app, event| {
            if event.id().as_ref() == QUIT {
                app.exit(0);
            }
        });
    if let Some(icon) = app.default_window_icon() {
        builder = builder.icon(icon.clone());
    }
    builder.build(app)?;
    Ok(())
}
