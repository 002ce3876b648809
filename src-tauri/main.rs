//! Linzumi Desktop: the tray front over the runner engine. The logic lives in
//! `linzumi-desktop-core` (settings, folder state, tokens, notifications) and the engine;
//! this crate wires them to Tauri: the tray, the window's commands, the deep link.
// No console window next to the tray app on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod commands;
mod desktop;
mod folders;
mod menu_actions;
mod tray;
mod tray_host;
mod updates;

use desktop::show_window;
use tauri::Manager;

fn main() {
    let mut context = tauri::generate_context!();
    updates::test_feed(&mut context);
    let result = tauri::Builder::default()
        // First: a second launch (e.g. the browser opening a linzumi:// link) hands its
        // arguments to this process and exits; the deep-link plugin turns them into URLs.
        .plugin(tauri_plugin_single_instance::init(|app, _argv, _cwd| {
            // The deep-link plugin delivers the URL in the arguments as an open-url event.
            show_window(app);
        }))
        .plugin(tauri_plugin_deep_link::init())
        .plugin(tauri_plugin_autostart::init(
            tauri_plugin_autostart::MacosLauncher::LaunchAgent,
            Some(vec!["--hidden"]),
        ))
        .plugin(tauri_plugin_dialog::init())
        .plugin(tauri_plugin_shell::init())
        .plugin(updates::plugin())
        .invoke_handler(tauri::generate_handler![
            commands::get_snapshot,
            commands::share_folder,
            commands::stop_sharing,
            commands::retry_folder,
            commands::locate_folder,
            commands::answer_prompt,
            commands::stop_preview,
            commands::sign_in,
            commands::cancel_sign_in,
            commands::sign_out,
            commands::dismiss_notice,
            commands::save_settings,
            commands::set_autostart,
            commands::open_in_kandan,
            commands::open_preview,
            commands::open_editor,
            updates::get_update_state,
            updates::install_update,
            updates::open_release_page,
        ])
        .setup(|app| {
            let config_path = std::env::var_os("LINZUMI_DESKTOP_CONFIG")
                .map(std::path::PathBuf::from)
                .map_or_else(
                    linzumi_desktop_core::settings::ConfigStore::default_path,
                    Ok,
                )?;
            let desktop = desktop::Desktop::open(app.handle().clone(), config_path);
            app.manage(desktop.clone());
            tray::install(app.handle(), &desktop.tray_model(), menu_actions::on_menu)?;
            #[cfg(any(target_os = "linux", windows))]
            {
                use tauri_plugin_deep_link::DeepLinkExt as _;
                // Linux and Windows learn the scheme at run time; bundles declare it too.
                if let Err(error) = app.deep_link().register_all() {
                    tracing::warn!(%error, "could not register the linzumi:// scheme");
                }
            }
            {
                use tauri_plugin_deep_link::DeepLinkExt as _;
                let links = desktop.clone();
                app.deep_link().on_open_url(move |event| {
                    for url in event.urls() {
                        links.deep_link(&url);
                    }
                });
                if let Ok(Some(urls)) = app.deep_link().get_current() {
                    for url in urls {
                        desktop.deep_link(&url);
                    }
                }
            }
            // With a tray the app lives there and the window opens on demand; without
            // one, the window is the app.
            let in_tray = tray_host::available();
            app.manage(InTray(in_tray));
            if !in_tray {
                show_window(app.handle());
            }
            desktop.publish();
            let republish = desktop.clone();
            updates::start(
                app.handle(),
                desktop.snapshot().settings.check_for_updates,
                move || republish.publish(),
            );
            #[cfg(unix)]
            end_on_signals(app.handle().clone());
            let resume = desktop.clone();
            tauri::async_runtime::spawn(async move { resume.resume().await });
            desktop.watch_folders();
            Ok(())
        })
        .build(context);
    let app = match result {
        Ok(app) => app,
        Err(error) => {
            eprintln!("linzumi-desktop: {error}");
            std::process::exit(1);
        }
    };
    app.run(|app, event| match event {
        // The last window closed (its webview and WebKit processes are gone): a tray app
        // keeps running; Quit asks with a code and does end it.
        tauri::RunEvent::ExitRequested {
            code: None, api, ..
        } if app.try_state::<InTray>().is_some_and(|in_tray| in_tray.0) => api.prevent_exit(),
        // Codex and everything it started end with the app.
        tauri::RunEvent::Exit => {
            if let Some(desktop) = app.try_state::<std::sync::Arc<desktop::Desktop<tauri::Wry>>>() {
                tauri::async_runtime::block_on(desktop.stop_all());
            }
        }
        _ => {}
    });
}

/// SIGTERM (a logout, a service manager) and SIGINT end the app the way Quit does, so
/// the runners stop and take Codex and its children with them.
#[cfg(unix)]
fn end_on_signals(app: tauri::AppHandle) {
    tauri::async_runtime::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut terminate), Ok(mut interrupt)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::warn!("cannot listen for SIGTERM; a signal would leave Codex running");
            return;
        };
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        app.exit(0);
    });
}

/// Whether the app has a tray icon to live in.
struct InTray(bool);
