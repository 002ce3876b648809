//! What can go wrong when connecting, joining and pushing, worded for the person who
//! will read it in a log or a notification.
use std::time::Duration;

use serde_json::Value;

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ConnectError {
    #[error("Kandan refused the connection to {url} (HTTP {status}): {hint}")]
    Refused {
        url: String,
        status: u16,
        hint: &'static str,
    },
    #[error("could not reach Kandan at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("TLS setup for {url} failed: {reason}")]
    Tls { url: String, reason: String },
}

impl ConnectError {
    /// Kandan refused the token (HTTP 401 or 403): it is invalid, expired or revoked, and
    /// trying again with it cannot succeed.
    pub fn is_unauthorized(&self) -> bool {
        matches!(
            self,
            ConnectError::Refused {
                status: 401 | 403,
                ..
            }
        )
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum JoinError {
    /// The seed's words (`phoenix join failed: <error>`); the topic stays in the value.
    #[error("phoenix join failed: {}", join_reason(.response))]
    Rejected { topic: String, response: Value },
    #[error("no reply to joining {topic} within {after:?}")]
    Timeout { topic: String, after: Duration },
    #[error("{topic} is already joined on this socket")]
    AlreadyJoined { topic: String },
    #[error("the Kandan client is closed")]
    Closed,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum PushError {
    #[error("cannot push {event} to {topic}: the topic is not joined")]
    NotJoined { topic: String, event: String },
    #[error("cannot push {event} to {topic}: the payload must be a JSON object")]
    PayloadNotObject { topic: String, event: String },
    #[error(
        "cannot push {event} to {topic}: the frame is {size} bytes, over the {limit}-byte limit"
    )]
    TooLarge {
        topic: String,
        event: String,
        size: usize,
        limit: usize,
    },
    #[error("Kandan answered {event} on {topic} with an error: {}", reason_of(.response))]
    Rejected {
        topic: String,
        event: String,
        response: Value,
    },
    #[error("no reply from Kandan to {event} on {topic} within {after:?}")]
    NoReply {
        topic: String,
        event: String,
        after: Duration,
    },
    #[error("{event} on {topic} was not sent: Kandan was unreachable for {after:?}")]
    NotDelivered {
        topic: String,
        event: String,
        after: Duration,
    },
    #[error("the connection to Kandan dropped before it answered {event} on {topic}")]
    Disconnected { topic: String, event: String },
    #[error("the {topic} channel failed on the server before it answered {event}")]
    ChannelErrored { topic: String, event: String },
    #[error("{event} on {topic} was dropped: the topic was left")]
    Left { topic: String, event: String },
    #[error("the Kandan client is closed")]
    Closed,
}

impl PushError {
    /// Whether sending the same push again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            PushError::NoReply { .. }
                | PushError::NotDelivered { .. }
                | PushError::Disconnected { .. }
                | PushError::ChannelErrored { .. }
        )
    }
}

/// The first of `keys` that is a string in an error response.
fn first_text<'a>(response: &'a Value, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .find_map(|key| response.get(key).and_then(Value::as_str))
}

/// The seed's `joinErrorMessage`: the reply's `error`; where Kandan gives none we take
/// its `reason` or `message` ([designed]) before the seed's "unknown".
fn join_reason(response: &Value) -> String {
    first_text(response, &["error", "reason", "message"])
        .unwrap_or("unknown")
        .to_owned()
}

/// The human part of an error response: `reason` or `error` if present, else the JSON.
fn reason_of(response: &Value) -> String {
    first_text(response, &["reason", "error", "message"])
        .map(str::to_owned)
        .unwrap_or_else(|| response.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rejection_messages_quote_the_reason() {
        let error = JoinError::Rejected {
            topic: "local_runner:r".into(),
            response: json!({"reason": "unauthorized"}),
        };
        assert_eq!(error.to_string(), "phoenix join failed: unauthorized");
        let error = JoinError::Rejected {
            topic: "t".into(),
            response: json!({"error": "runner disabled", "reason": "other"}),
        };
        assert_eq!(error.to_string(), "phoenix join failed: runner disabled");
        let error = JoinError::Rejected {
            topic: "t".into(),
            response: json!({"code": 1}),
        };
        assert_eq!(error.to_string(), "phoenix join failed: unknown");
        let error = PushError::Rejected {
            topic: "t".into(),
            event: "e".into(),
            response: json!({"code": 1}),
        };
        assert_eq!(
            error.to_string(),
            r#"Kandan answered e on t with an error: {"code":1}"#
        );
    }
}
