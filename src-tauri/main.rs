//! Linzumi Desktop: the tray front over the runner engine.
// No console window next to the tray app on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod tray;

fn main() {
    let result = tauri::Builder::default()
        .setup(|app| {
            tray::install(app.handle())?;
            Ok(())
        })
        .run(tauri::generate_context!());
    if let Err(error) = result {
        eprintln!("linzumi-desktop: {error}");
        std::process::exit(1);
    }
}
