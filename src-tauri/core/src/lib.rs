//! Linzumi Desktop's logic with no GUI dependency, so that it can be unit-tested headless
//! and the Tauri shell stays a thin layer of windows, tray and commands over it.
//!
//! - [`settings`]: the settings and shared folders (`desktop.json`).
//! - [`token_store`]: Kandan sign-ins in the OS keyring, or a private file without one.
//! - [`account`]: signed in, signed out, or ended by Kandan; a sign-in in the browser.
//! - [`folder_state`]: what each folder is doing (a pure state machine over the engine's
//!   runner events) and the tray icon's state.
//! - [`problem`]: failures in plain words, each with its next step.
//! - [`prompts`]: the words of approvals and preview prompts, the same everywhere.
//! - [`activity`]: the bounded activity log, repeats folded.
//! - [`notices`]: the window's short messages, which go away by themselves.
//! - [`links`]: the Kandan and editor addresses the desktop opens.
//! - [`snapshot`]: the one value the UI renders.
//! - [`tray_menu`]: the tray menu as data.
//! - [`notifications`]: native notifications (approval prompts with buttons, rate-limited
//!   updates).
//! - [`update_state`]: what the window and the tray say about app updates, and when to
//!   look for one.
pub mod account;
pub mod activity;
pub mod folder_state;
pub mod links;
pub mod notices;
pub mod notifications;
pub mod problem;
pub mod prompts;
pub mod settings;
pub mod snapshot;
pub mod token_store;
pub mod tray_menu;
pub mod update_state;
