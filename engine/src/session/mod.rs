//! The chat session: one Kandan thread bound to one Codex thread (seed
//! `channelSession.ts`, split the way its later releases split it). Pure state machines
//! decide; [`driver`] only performs I/O.
//!
//! - [`intake`]: which chat messages become turns; [`chat_commands`]: `/kandan …`
//! - [`message_queue`]: accepted messages waiting; [`turn_state`]: the running turn
//! - [`transcript`] and [`codex_items`]: Codex's work as streaming rows
//! - [`approvals`]: approval requests; [`message_state`]: what Kandan shows per message
//! - [`port_prompts`]: asking the listen user about dev servers Codex starts
//! - [`folder_check`]: whether the shared folder is still there before each turn
pub mod approvals;
pub mod bounded_map;
pub mod chat_commands;
pub mod codex_items;
pub mod driver;
pub mod folder_check;
pub mod intake;
pub mod message_queue;
pub mod message_state;
pub mod port_prompts;
pub mod transcript;
pub mod turn_state;

pub use driver::{ChannelSession, SessionContext, SessionError, SessionOptions};
pub use intake::{ChatEvent, ListenUser};
