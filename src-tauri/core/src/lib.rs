//! Linzumi Desktop's logic with no GUI dependency, so that it can be unit-tested headless
//! and the Tauri shell stays a thin layer of windows, tray and commands over it.
//!
//! - [`settings`]: the settings and shared folders (`desktop.json`).
//! - [`token_store`]: Kandan sign-ins in the OS keyring, or a private file without one.
//! - [`folder_state`]: what each folder is doing (a pure state machine over the engine's
//!   runner events) and the tray icon's state.
//! - [`activity`]: the bounded activity log.
//! - [`links`]: the Kandan and editor addresses the desktop opens.
//! - [`snapshot`]: the one value the UI renders.
//! - [`notifications`]: native notifications (approval prompts with buttons, rate-limited
//!   updates).
//! - [`update_state`]: what the window and the tray say about app updates, and when to
//!   look for one.
pub mod activity;
pub mod folder_state;
pub mod links;
pub mod notifications;
pub mod settings;
pub mod snapshot;
pub mod token_store;
pub mod update_state;
