//! The Codex driver: the `codex app-server` process, its JSON-RPC client, typed views of
//! the methods and notifications the runner uses, and the runtime-option mapping.
pub mod address;
pub mod client;
pub mod jsonrpc;
pub mod process;
pub mod protocol;
pub mod runtime_options;
pub mod supervisor;

pub use address::{AppServerAddress, CapabilityToken};
pub use client::{ClientInfo, CodexClient, CodexError, CodexEvent};
pub use process::{AppServerProcess, AppServerSpec, SpawnError};
pub use runtime_options::{RuntimeOptionError, RuntimeOptions};
pub use supervisor::{AppServerSource, CodexSupervisor, SupervisorEvent};

/// Whether an app-server error says it does not have a thread (never loaded, or lost
/// with a restarted app-server): then the thread must be resumed or started anew.
pub fn thread_not_loaded(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    message.contains("thread") && (message.contains("not found") || message.contains("not loaded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_unloaded_thread_errors() {
        assert!(thread_not_loaded("thread not found: 0199"));
        assert!(thread_not_loaded("Thread abc is not loaded"));
        assert!(!thread_not_loaded("Not initialized"));
    }
}
