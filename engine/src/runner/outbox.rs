//! Runner events to Kandan, in the order they happen, without waiting for each reply,
//! and never dropped silently: a push that fails transiently (the socket dropped, the
//! reconnect took longer than the push timeout) is sent again; one that still fails is
//! logged with its event and reason. Kandan de-duplicates by the ids the payloads
//! carry (`seq`, `requestId`), so a retry after a lost reply is harmless.
use std::sync::Arc;

use serde_json::{Value, json};
use tracing::warn;

use super::event_log::EventLog;
use crate::phoenix::{PhoenixClient, PushError};

/// Attempts per event; with the client's 10 s push timeout this rides out about a
/// minute of outage.
const ATTEMPTS: u32 = 6;

#[derive(Clone)]
pub struct Outbox {
    client: PhoenixClient,
    topic: String,
    log: Arc<EventLog>,
}

impl Outbox {
    pub fn new(client: PhoenixClient, topic: String, log: Arc<EventLog>) -> Outbox {
        Outbox { client, topic, log }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn client(&self) -> &PhoenixClient {
        &self.client
    }

    /// Queues `event` now and delivers it in the background.
    pub fn send(&self, event: &str, payload: Value) {
        self.send_holding(event, payload, ());
    }

    /// [`Outbox::send`], dropping `held` once the event is delivered or reported.
    pub fn send_holding(&self, event: &str, payload: Value, held: impl Send + 'static) {
        let first = self.client.enqueue_push(
            &self.topic,
            event,
            payload.clone(),
            self.client.push_timeout(),
        );
        let outbox = self.clone();
        let event = event.to_owned();
        tokio::spawn(async move {
            let mut result = first.await;
            let mut attempt = 1;
            while let Err(error) = &result {
                if !error.is_transient() || attempt >= ATTEMPTS {
                    break;
                }
                attempt += 1;
                result = outbox
                    .client
                    .push(&outbox.topic, &event, payload.clone())
                    .await;
            }
            if let Err(error) = result {
                outbox.report(&event, &error, attempt);
            }
            drop(held);
        });
    }

    /// Pushes `event` and waits for Kandan's reply (for events whose reply is needed).
    pub async fn request(&self, event: &str, payload: Value) -> Result<Value, PushError> {
        let mut attempt = 1;
        loop {
            match self.client.push(&self.topic, event, payload.clone()).await {
                Err(error) if error.is_transient() && attempt < ATTEMPTS => attempt += 1,
                Err(error) => {
                    self.report(event, &error, attempt);
                    return Err(error);
                }
                Ok(reply) => return Ok(reply),
            }
        }
    }

    fn report(&self, event: &str, error: &PushError, attempts: u32) {
        warn!(%event, %error, attempts, "could not deliver an event to Kandan");
        self.log.log(
            "kandan.push_failed",
            json!({"pushEvent": event, "message": error.to_string(), "attempts": attempts}),
        );
    }
}
