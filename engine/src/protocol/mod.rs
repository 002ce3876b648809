//! The runner ↔ Kandan protocol on the `local_runner:<runnerId>` topic: what Kandan
//! sends (controls) and, as later parts land, what the runner sends back.
pub mod controls;

pub use controls::{ControlError, KandanControl};

/// The Phoenix event that carries a control.
pub const CONTROL_EVENT: &str = "control";
/// The Phoenix event that carries a chat message to a bound session (protocol §5.2).
pub const CHAT_MESSAGE_EVENT: &str = "session:message";

/// The runner's topic for a runner id.
pub fn runner_topic(runner_id: &str) -> String {
    format!("local_runner:{runner_id}")
}
