//! The Linzumi runner engine: everything the runner does, with no GUI dependency, so
//! that the headless `linzumi` CLI and the desktop app are thin fronts over it.
pub mod auth;
pub mod child_process;
pub mod codex;
pub mod dependencies;
pub mod editor;
pub mod forwarding;
pub mod http;
pub mod json;
pub mod kandan_url;
pub mod phoenix;
pub mod ports;
pub mod private_file;
pub mod process_tree;
pub mod protocol;
pub mod runner;
pub mod secrets;
pub mod session;
pub mod tls;
