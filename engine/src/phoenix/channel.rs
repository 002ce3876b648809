//! One joined topic: its join state, the payload to (re)join with, pushes waiting for
//! the join to complete, and where its server messages go.
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::error::JoinError;
use super::pushes::PushId;

/// Computes the join payload; called again for every rejoin so it is always current.
pub type PayloadFn = Arc<dyn Fn() -> Value + Send + Sync>;

/// A server-initiated message on a joined topic.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelMessage {
    pub event: String,
    pub payload: Value,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JoinPhase {
    /// Not joined on the current socket: waiting for a connection, or for `retry_at`.
    Waiting {
        retry_at: Option<Instant>,
    },
    /// `phx_join` is on the wire; its reply is due by `deadline`.
    Joining {
        deadline: Instant,
    },
    Joined,
}

/// The caller of [`PhoenixClient::join`](super::PhoenixClient::join), until the first
/// join succeeds or fails.
pub struct FirstJoin {
    pub reply: oneshot::Sender<Result<Value, JoinError>>,
    pub deadline: Instant,
    pub timeout: Duration,
}

pub struct Channel {
    pub topic: String,
    pub payload: PayloadFn,
    pub phase: JoinPhase,
    pub join_ref: Option<String>,
    pub buffer: VecDeque<PushId>,
    pub messages: mpsc::UnboundedSender<ChannelMessage>,
    pub rejoin_tries: u32,
    pub first_join: Option<FirstJoin>,
    /// Set after a reconnect until this channel's rejoin has an outcome.
    pub owes_reconnect_outcome: bool,
}

impl Channel {
    pub fn new(
        topic: String,
        payload: PayloadFn,
        messages: mpsc::UnboundedSender<ChannelMessage>,
        first_join: FirstJoin,
    ) -> Channel {
        Channel {
            topic,
            payload,
            phase: JoinPhase::Waiting { retry_at: None },
            join_ref: None,
            buffer: VecDeque::new(),
            messages,
            rejoin_tries: 0,
            first_join: Some(first_join),
            owes_reconnect_outcome: false,
        }
    }

    /// The earliest moment something about this channel is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        let phase = match self.phase {
            JoinPhase::Waiting { retry_at } => retry_at,
            JoinPhase::Joining { deadline } => Some(deadline),
            JoinPhase::Joined => None,
        };
        let first = self.first_join.as_ref().map(|first| first.deadline);
        match (phase, first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether a frame carrying `join_ref` belongs to the current join (phoenix.js
    /// `isMember`): a frame from an earlier join is outdated.
    pub fn is_current(&self, join_ref: Option<&str>) -> bool {
        match join_ref {
            None => true,
            Some(join_ref) => self.join_ref.as_deref() == Some(join_ref),
        }
    }

    pub fn is_joined(&self) -> bool {
        self.phase == JoinPhase::Joined
    }
}
