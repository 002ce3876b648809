//! Injectable misbehaviour, so client tests can exercise timeouts, rejoins and slow servers.

use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;

use crate::sync::lock;

/// A way for the server to misbehave. Several faults can be active at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Heartbeats still reset the idle timer but get no reply (a half-dead server).
    IgnoreHeartbeats,
    /// Messages on `topic` with `event` (including `phx_join`/`phx_leave`) are recorded and then
    /// swallowed: no reply, no state change, as if the channel process hung.
    HoldReplies { topic: String, event: String },
    /// Joins of `topic` are refused with `{"reason": reason}`.
    RejectJoins { topic: String, reason: String },
    /// Every reply (heartbeat, join, push, leave) is sent this much later; order is kept.
    DelayReplies(Duration),
}

/// JSON form of [`Fault`] for the admin API, e.g. `{"type":"delay_replies","ms":500}`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum FaultSpec {
    IgnoreHeartbeats,
    HoldReplies { topic: String, event: String },
    RejectJoins { topic: String, reason: String },
    DelayReplies { ms: u64 },
}

impl From<FaultSpec> for Fault {
    fn from(spec: FaultSpec) -> Fault {
        match spec {
            FaultSpec::IgnoreHeartbeats => Fault::IgnoreHeartbeats,
            FaultSpec::HoldReplies { topic, event } => Fault::HoldReplies { topic, event },
            FaultSpec::RejectJoins { topic, reason } => Fault::RejectJoins { topic, reason },
            FaultSpec::DelayReplies { ms } => Fault::DelayReplies(Duration::from_millis(ms)),
        }
    }
}

/// The active faults, queried by the protocol code on every message.
#[derive(Default)]
pub(crate) struct Faults {
    active: Mutex<Vec<Fault>>,
}

impl Faults {
    pub(crate) fn set(&self, fault: Fault) {
        let mut active = lock(&self.active);
        // A new delay replaces the old one rather than stacking with it.
        if matches!(fault, Fault::DelayReplies(_)) {
            active.retain(|existing| !matches!(existing, Fault::DelayReplies(_)));
        }
        if !active.contains(&fault) {
            active.push(fault);
        }
    }

    pub(crate) fn clear(&self) {
        lock(&self.active).clear();
    }

    pub(crate) fn ignores_heartbeats(&self) -> bool {
        lock(&self.active).contains(&Fault::IgnoreHeartbeats)
    }

    pub(crate) fn holds(&self, topic: &str, event: &str) -> bool {
        lock(&self.active).iter().any(|fault| {
            matches!(fault, Fault::HoldReplies { topic: t, event: e } if t == topic && e == event)
        })
    }

    /// The reason to refuse a join of `topic` with, if joins of it are being rejected.
    pub(crate) fn join_rejection(&self, topic: &str) -> Option<String> {
        lock(&self.active).iter().find_map(|fault| match fault {
            Fault::RejectJoins { topic: t, reason } if t == topic => Some(reason.clone()),
            _ => None,
        })
    }

    pub(crate) fn reply_delay(&self) -> Option<Duration> {
        lock(&self.active).iter().find_map(|fault| match fault {
            Fault::DelayReplies(delay) => Some(*delay),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_match_only_their_fault() {
        let faults = Faults::default();
        faults.set(Fault::HoldReplies {
            topic: "t".into(),
            event: "e".into(),
        });
        assert!(faults.holds("t", "e"));
        assert!(!faults.holds("t", "other"));
        assert!(!faults.ignores_heartbeats());
        assert_eq!(faults.join_rejection("t"), None);
        faults.clear();
        assert!(!faults.holds("t", "e"));
    }

    #[test]
    fn a_new_delay_replaces_the_old_one() {
        let faults = Faults::default();
        faults.set(Fault::DelayReplies(Duration::from_millis(5)));
        faults.set(Fault::DelayReplies(Duration::from_millis(9)));
        assert_eq!(faults.reply_delay(), Some(Duration::from_millis(9)));
    }

    #[test]
    fn parses_the_admin_json_form() {
        let spec: FaultSpec =
            serde_json::from_str(r#"{"type":"reject_joins","topic":"a:b","reason":"nope"}"#)
                .expect("valid");
        assert_eq!(
            Fault::from(spec),
            Fault::RejectJoins {
                topic: "a:b".into(),
                reason: "nope".into()
            }
        );
        let spec: FaultSpec =
            serde_json::from_str(r#"{"type":"delay_replies","ms":250}"#).expect("valid");
        assert_eq!(
            Fault::from(spec),
            Fault::DelayReplies(Duration::from_millis(250))
        );
        assert!(serde_json::from_str::<FaultSpec>(r#"{"type":"explode"}"#).is_err());
    }
}
