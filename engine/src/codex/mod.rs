//! The Codex driver: the `codex app-server` process, its JSON-RPC client, typed views of
//! the methods and notifications the runner uses, and the runtime-option mapping.
pub mod client;
pub mod jsonrpc;
pub mod process;
pub mod protocol;
pub mod runtime_options;
pub mod supervisor;

pub use client::{ClientInfo, CodexClient, CodexError, CodexEvent};
pub use process::{AppServerProcess, AppServerSpec, SpawnError};
pub use runtime_options::{RuntimeOptionError, RuntimeOptions};
pub use supervisor::{AppServerSource, CodexSupervisor, SupervisorEvent};
