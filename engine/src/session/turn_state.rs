//! The one Codex turn a chat session runs at a time (seed `localCodexTurnState.ts`):
//! idle → starting (turn/start sent) → active (Codex gave the turn id) → completing
//! (turn/completed seen, rows being written) → idle. An interrupt that arrives while
//! the turn is still starting is remembered and sent as soon as the turn id is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnState {
    Idle,
    Starting {
        queued_seq: i64,
        interrupt_after_start: bool,
    },
    Active {
        turn_id: String,
        queued_seq: i64,
    },
    Completing {
        turn_id: String,
        queued_seq: i64,
    },
}

impl TurnState {
    pub fn is_idle(&self) -> bool {
        *self == TurnState::Idle
    }

    /// The Codex turn the session is running, once it is known.
    pub fn active_turn_id(&self) -> Option<&str> {
        match self {
            TurnState::Active { turn_id, .. } | TurnState::Completing { turn_id, .. } => {
                Some(turn_id)
            }
            TurnState::Idle | TurnState::Starting { .. } => None,
        }
    }

    /// The chat message behind `turn_id`, if that is the session's turn.
    pub fn queued_seq_for_turn(&self, turn_id: &str) -> Option<i64> {
        match self {
            TurnState::Active {
                turn_id: current,
                queued_seq,
            }
            | TurnState::Completing {
                turn_id: current,
                queued_seq,
            } if current == turn_id => Some(*queued_seq),
            _ => None,
        }
    }

    /// The chat message whose turn an interrupt would stop (starting or active).
    pub fn interruptible_queued_seq(&self) -> Option<i64> {
        match self {
            TurnState::Starting { queued_seq, .. } | TurnState::Active { queued_seq, .. } => {
                Some(*queued_seq)
            }
            TurnState::Idle | TurnState::Completing { .. } => None,
        }
    }

    /// turn/start answered: the turn is active, and whether it must be interrupted now.
    pub fn started(&mut self, turn_id: String) -> StartOutcome {
        match self {
            TurnState::Starting {
                queued_seq,
                interrupt_after_start,
            } => {
                let interrupt = *interrupt_after_start;
                *self = TurnState::Active {
                    turn_id,
                    queued_seq: *queued_seq,
                };
                if interrupt {
                    StartOutcome::InterruptNow
                } else {
                    StartOutcome::Run
                }
            }
            // The turn was given up on (failure, interrupt of a lost thread) meanwhile.
            _ => StartOutcome::Stale,
        }
    }

    /// An interrupt arrived before the turn id is known.
    pub fn mark_interrupt_after_start(&mut self) {
        if let TurnState::Starting {
            interrupt_after_start,
            ..
        } = self
        {
            *interrupt_after_start = true;
        }
    }

    /// turn/completed for `turn_id`: start writing its rows. Returns the chat message it
    /// answers, if it is the session's turn.
    pub fn complete(&mut self, turn_id: &str) -> Option<i64> {
        let seq = match self {
            TurnState::Active {
                turn_id: current,
                queued_seq,
            } if current == turn_id => *queued_seq,
            _ => return None,
        };
        *self = TurnState::Completing {
            turn_id: turn_id.to_owned(),
            queued_seq: seq,
        };
        Some(seq)
    }

    /// Whether a failure of `turn_id` ends the session's turn: it is the starting turn
    /// (whose id is not known yet) or the active one.
    pub fn should_clear_after_failure(&self, turn_id: Option<&str>) -> bool {
        match self {
            TurnState::Idle => false,
            TurnState::Starting { .. } => true,
            TurnState::Active {
                turn_id: current, ..
            }
            | TurnState::Completing {
                turn_id: current, ..
            } => turn_id.is_none_or(|turn_id| turn_id == current),
        }
    }

    /// Whether output of `turn_id` belongs to the session's current turn.
    pub fn owns_turn(&self, turn_id: &str) -> bool {
        self.active_turn_id() == Some(turn_id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    Run,
    InterruptNow,
    /// The state moved on while turn/start was in flight; the turn is not ours.
    Stale,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn starting() -> TurnState {
        TurnState::Starting {
            queued_seq: 7,
            interrupt_after_start: false,
        }
    }

    #[test]
    fn a_turn_goes_through_its_states() {
        let mut state = starting();
        assert_eq!(state.interruptible_queued_seq(), Some(7));
        assert_eq!(state.active_turn_id(), None);
        assert_eq!(state.started("u1".into()), StartOutcome::Run);
        assert_eq!(state.active_turn_id(), Some("u1"));
        assert_eq!(state.queued_seq_for_turn("u1"), Some(7));
        assert_eq!(state.queued_seq_for_turn("other"), None);
        assert_eq!(state.complete("other"), None);
        assert_eq!(state.complete("u1"), Some(7));
        assert_eq!(
            state.interruptible_queued_seq(),
            None,
            "completing is too late"
        );
        assert!(state.owns_turn("u1"));
    }

    #[test]
    fn an_interrupt_while_starting_is_sent_once_the_turn_is_known() {
        let mut state = starting();
        state.mark_interrupt_after_start();
        assert_eq!(state.started("u1".into()), StartOutcome::InterruptNow);
        let mut idle = TurnState::Idle;
        idle.mark_interrupt_after_start();
        assert_eq!(idle, TurnState::Idle);
    }

    #[test]
    fn a_late_start_answer_is_stale() {
        let mut state = TurnState::Idle;
        assert_eq!(state.started("u1".into()), StartOutcome::Stale);
        assert_eq!(state, TurnState::Idle);
    }

    #[test]
    fn failures_clear_only_the_sessions_turn() {
        assert!(starting().should_clear_after_failure(Some("anything")));
        let active = TurnState::Active {
            turn_id: "u1".into(),
            queued_seq: 7,
        };
        assert!(active.should_clear_after_failure(Some("u1")));
        assert!(active.should_clear_after_failure(None));
        assert!(!active.should_clear_after_failure(Some("u2")));
        assert!(!TurnState::Idle.should_clear_after_failure(None));
    }
}
