//! Pushes that await a reply or a chance to be sent, each with a deadline.
//!
//! Keyed three ways so that every operation the socket loop needs is cheap: by id (the
//! caller's handle), by wire ref (an arriving reply) and by deadline (the next timeout).
use std::collections::{BTreeSet, HashMap};

use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::error::PushError;

pub type PushId = u64;
pub type PushResult = Result<Value, PushError>;

#[derive(Debug)]
pub struct Push {
    pub topic: String,
    pub event: String,
    /// Serialized when pushed, so buffering and sending never re-encode it.
    pub payload: Box<RawValue>,
    pub deadline: Instant,
    pub issued_at: Instant,
    pub reply: oneshot::Sender<PushResult>,
}

#[derive(Debug)]
struct Entry {
    push: Push,
    sent_ref: Option<String>,
}

#[derive(Debug, Default)]
pub struct PushRegistry {
    next_id: PushId,
    entries: HashMap<PushId, Entry>,
    by_ref: HashMap<String, PushId>,
    deadlines: BTreeSet<(Instant, PushId)>,
}

impl PushRegistry {
    pub fn insert(&mut self, push: Push) -> PushId {
        self.next_id += 1;
        let id = self.next_id;
        self.deadlines.insert((push.deadline, id));
        self.entries.insert(
            id,
            Entry {
                push,
                sent_ref: None,
            },
        );
        id
    }

    pub fn get(&self, id: PushId) -> Option<&Push> {
        self.entries.get(&id).map(|entry| &entry.push)
    }

    pub fn mark_sent(&mut self, id: PushId, wire_ref: String) {
        if let Some(entry) = self.entries.get_mut(&id) {
            self.by_ref.insert(wire_ref.clone(), id);
            entry.sent_ref = Some(wire_ref);
        }
    }

    /// Removes the push a reply with this ref answers.
    pub fn take_by_ref(&mut self, wire_ref: &str) -> Option<Push> {
        let id = self.by_ref.get(wire_ref).copied()?;
        self.take(id)
    }

    pub fn take(&mut self, id: PushId) -> Option<Push> {
        let entry = self.entries.remove(&id)?;
        if let Some(wire_ref) = &entry.sent_ref {
            self.by_ref.remove(wire_ref);
        }
        self.deadlines.remove(&(entry.push.deadline, id));
        Some(entry.push)
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(deadline, _)| *deadline)
    }

    /// Removes every push whose deadline has passed, saying whether each had been sent.
    pub fn take_expired(&mut self, now: Instant) -> Vec<(PushId, Push, bool)> {
        let mut expired = Vec::new();
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            let sent = self
                .entries
                .get(&id)
                .is_some_and(|entry| entry.sent_ref.is_some());
            if let Some(push) = self.take(id) {
                expired.push((id, push, sent));
            }
        }
        expired
    }

    /// Removes the pushes already on the wire (for `topic`, or all), whose replies can no
    /// longer arrive once the socket or the channel is gone.
    pub fn take_sent(&mut self, topic: Option<&str>) -> Vec<Push> {
        let ids: Vec<PushId> = self
            .entries
            .iter()
            .filter(|(_, entry)| {
                entry.sent_ref.is_some() && topic.is_none_or(|topic| entry.push.topic == topic)
            })
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter().filter_map(|id| self.take(id)).collect()
    }

    pub fn take_all(&mut self) -> Vec<Push> {
        let ids: Vec<PushId> = self.entries.keys().copied().collect();
        ids.into_iter().filter_map(|id| self.take(id)).collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn push(topic: &str, deadline: Instant) -> (Push, oneshot::Receiver<PushResult>) {
        let (reply, receiver) = oneshot::channel();
        (
            Push {
                topic: topic.into(),
                event: "e".into(),
                payload: RawValue::from_string("{}".into()).unwrap(),
                deadline,
                issued_at: deadline,
                reply,
            },
            receiver,
        )
    }

    #[test]
    fn replies_find_their_push_by_ref_once() {
        let mut registry = PushRegistry::default();
        let now = Instant::now();
        let (first, _r1) = push("a", now + Duration::from_secs(1));
        let id = registry.insert(first);
        registry.mark_sent(id, "7".into());
        assert!(registry.take_by_ref("8").is_none());
        assert_eq!(registry.take_by_ref("7").map(|p| p.topic), Some("a".into()));
        assert!(registry.take_by_ref("7").is_none());
        assert!(registry.is_empty());
        assert_eq!(registry.next_deadline(), None);
    }

    #[test]
    fn expiry_is_in_deadline_order_and_reports_sent_state() {
        let mut registry = PushRegistry::default();
        let now = Instant::now();
        let (late, _r1) = push("late", now + Duration::from_secs(5));
        let (early, _r2) = push("early", now + Duration::from_secs(1));
        let late_id = registry.insert(late);
        let early_id = registry.insert(early);
        registry.mark_sent(early_id, "1".into());
        assert_eq!(registry.next_deadline(), Some(now + Duration::from_secs(1)));

        let expired = registry.take_expired(now + Duration::from_secs(2));
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].0, early_id);
        assert!(expired[0].2, "the early push was sent");
        assert!(registry.take_by_ref("1").is_none(), "its ref is forgotten");

        let expired = registry.take_expired(now + Duration::from_secs(10));
        assert_eq!(expired[0].0, late_id);
        assert!(!expired[0].2, "the late push was only buffered");
    }

    #[test]
    fn take_sent_keeps_buffered_pushes() {
        let mut registry = PushRegistry::default();
        let deadline = Instant::now() + Duration::from_secs(1);
        let (a, _ra) = push("a", deadline);
        let (b, _rb) = push("b", deadline);
        let (buffered, _rc) = push("a", deadline);
        let a = registry.insert(a);
        let b = registry.insert(b);
        registry.insert(buffered);
        registry.mark_sent(a, "1".into());
        registry.mark_sent(b, "2".into());

        let failed = registry.take_sent(Some("a"));
        assert_eq!(failed.len(), 1);
        assert_eq!(registry.len(), 2);
        assert_eq!(registry.take_sent(None).len(), 1);
        assert_eq!(
            registry.len(),
            1,
            "the buffered push waits for a connection"
        );
    }
}
