//! Finding dev servers Codex starts and deciding whether to offer them: the listening
//! socket table ([`listen_table`], the one platform-specific piece), debouncing
//! ([`candidates`]), the approval rules ([`review`]) and the scanning thread
//! ([`watcher`]).
pub mod candidates;
pub mod listen_table;
pub mod review;
#[cfg(target_os = "linux")]
mod sock_diag;
pub mod watcher;

pub use candidates::PortCandidate;
pub use review::{PortDecisions, Review};
pub use watcher::PortWatcher;
