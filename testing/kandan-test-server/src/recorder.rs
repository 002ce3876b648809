//! The record of what clients sent: every message (except `phoenix` heartbeats) and every join,
//! with a change signal so tests can await an event instead of polling.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::sync::watch;

use crate::sync::lock;

/// One client-to-server message, as received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    pub topic: String,
    pub event: String,
    pub payload: Value,
    pub join_ref: Option<String>,
    pub msg_ref: Option<String>,
    pub connection_id: u64,
    pub received_at: SystemTime,
}

/// One `phx_join` and whether the server accepted it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedJoin {
    pub topic: String,
    pub join_ref: Option<String>,
    pub payload: Value,
    pub accepted: bool,
    pub connection_id: u64,
}

#[derive(Default)]
struct Log {
    events: Vec<RecordedEvent>,
    /// Sequence number of `events[0]`; survives [`Recorder::clear_events`] so waiters that
    /// already scanned some events never rescan or skip any.
    first_seq: u64,
    joins: Vec<RecordedJoin>,
}

impl Log {
    fn next_seq(&self) -> u64 {
        self.first_seq + self.events.len() as u64
    }
}

pub(crate) struct Recorder {
    log: Mutex<Log>,
    /// Carries the sequence number the next event will get; bumped on every record.
    changed: watch::Sender<u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            log: Mutex::new(Log::default()),
            changed: watch::Sender::new(0),
        }
    }
}

impl Recorder {
    pub(crate) fn record_event(&self, event: RecordedEvent) {
        let next = {
            let mut log = lock(&self.log);
            log.events.push(event);
            log.next_seq()
        };
        self.changed.send_replace(next);
    }

    pub(crate) fn record_join(&self, join: RecordedJoin) {
        lock(&self.log).joins.push(join);
    }

    pub(crate) fn events(&self) -> Vec<RecordedEvent> {
        lock(&self.log).events.clone()
    }

    pub(crate) fn joins(&self) -> Vec<RecordedJoin> {
        lock(&self.log).joins.clone()
    }

    pub(crate) fn clear_events(&self) {
        let mut log = lock(&self.log);
        log.first_seq = log.next_seq();
        log.events.clear();
    }

    /// Resolves with the first recorded event (already present or future) matching `pred`.
    pub(crate) async fn wait_for(
        &self,
        pred: impl Fn(&RecordedEvent) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<RecordedEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        // Subscribing before scanning means an event recorded in between still wakes us.
        let mut changes = self.changed.subscribe();
        let mut scanned_to = 0u64;
        loop {
            if let Some(found) = self.find_from(&mut scanned_to, &pred) {
                return Ok(found);
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                // The sender lives as long as `self`, so this cannot happen while we borrow it.
                Ok(Err(_)) => anyhow::bail!("event recorder was dropped"),
                Err(_) => anyhow::bail!(
                    "no matching event within {timeout:?}; recorded: [{}]",
                    self.summary()
                ),
            }
        }
    }

    /// `topic/event` of every recorded event, for timeout messages.
    fn summary(&self) -> String {
        let log = lock(&self.log);
        let names: Vec<String> = log
            .events
            .iter()
            .map(|event| format!("{} {}", event.topic, event.event))
            .collect();
        names.join(", ")
    }

    /// Scans events with sequence numbers from `*scanned_to` on and advances it.
    fn find_from(
        &self,
        scanned_to: &mut u64,
        pred: &impl Fn(&RecordedEvent) -> bool,
    ) -> Option<RecordedEvent> {
        let log = lock(&self.log);
        let start = scanned_to.saturating_sub(log.first_seq);
        let start = usize::try_from(start).unwrap_or(usize::MAX);
        let found = log
            .events
            .iter()
            .skip(start)
            .find(|event| pred(event))
            .cloned();
        *scanned_to = log.next_seq();
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn event(topic: &str, event: &str) -> RecordedEvent {
        RecordedEvent {
            topic: topic.into(),
            event: event.into(),
            payload: json!({}),
            join_ref: None,
            msg_ref: None,
            connection_id: 1,
            received_at: SystemTime::now(),
        }
    }

    #[tokio::test]
    async fn wait_finds_already_recorded_events() {
        let recorder = Recorder::default();
        recorder.record_event(event("a", "one"));
        let found = recorder
            .wait_for(|e| e.event == "one", Duration::from_millis(10))
            .await
            .expect("recorded");
        assert_eq!(found.topic, "a");
    }

    #[tokio::test]
    async fn wait_wakes_on_future_events() {
        let recorder = Arc::new(Recorder::default());
        let waiter = {
            let recorder = Arc::clone(&recorder);
            tokio::spawn(async move {
                recorder
                    .wait_for(|e| e.event == "late", Duration::from_secs(5))
                    .await
            })
        };
        tokio::task::yield_now().await;
        recorder.record_event(event("a", "early"));
        recorder.record_event(event("a", "late"));
        let found = waiter.await.expect("join").expect("found");
        assert_eq!(found.event, "late");
    }

    #[tokio::test]
    async fn wait_times_out_and_clear_forgets() {
        let recorder = Recorder::default();
        recorder.record_event(event("a", "gone"));
        recorder.clear_events();
        assert!(recorder.events().is_empty());
        let result = recorder
            .wait_for(|e| e.event == "gone", Duration::from_millis(20))
            .await;
        assert!(result.is_err());
        recorder.record_event(event("a", "after-clear"));
        assert_eq!(recorder.events().len(), 1);
    }
}
