//! Which turn is running on which Codex thread, from `turn/started` and
//! `turn/completed`, so an `interrupt_turn` without a `turnId` and `stop_instance` know
//! what to interrupt.
use std::collections::HashMap;

use crate::codex::protocol::Notification;

#[derive(Debug, Default)]
pub struct ActiveTurns {
    by_thread: HashMap<String, String>,
}

impl ActiveTurns {
    pub fn observe(&mut self, notification: &Notification) {
        match notification {
            Notification::TurnStarted(event) => {
                self.by_thread
                    .insert(event.thread_id.clone(), event.turn.id.clone());
            }
            Notification::TurnCompleted(event)
                if self.by_thread.get(&event.thread_id) == Some(&event.turn.id) =>
            {
                self.by_thread.remove(&event.thread_id);
            }
            _ => {}
        }
    }

    pub fn turn_of(&self, thread_id: &str) -> Option<&str> {
        self.by_thread.get(thread_id).map(String::as_str)
    }

    pub fn all(&self) -> Vec<(String, String)> {
        self.by_thread
            .iter()
            .map(|(thread, turn)| (thread.clone(), turn.clone()))
            .collect()
    }

    /// The app-server was replaced: nothing it ran is running any more.
    pub fn clear(&mut self) {
        self.by_thread.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn notification(method: &str, turn: &str, status: &str) -> Notification {
        Notification::decode(
            method,
            &json!({"threadId": "t", "turn": {"id": turn, "items": [], "status": status}}),
        )
        .unwrap()
    }

    #[test]
    fn tracks_the_running_turn_per_thread() {
        let mut turns = ActiveTurns::default();
        turns.observe(&notification("turn/started", "u1", "inProgress"));
        assert_eq!(turns.turn_of("t"), Some("u1"));
        // A late completion of an older turn does not clear the newer one.
        turns.observe(&notification("turn/started", "u2", "inProgress"));
        turns.observe(&notification("turn/completed", "u1", "completed"));
        assert_eq!(turns.turn_of("t"), Some("u2"));
        turns.observe(&notification("turn/completed", "u2", "interrupted"));
        assert_eq!(turns.turn_of("t"), None);
    }
}
