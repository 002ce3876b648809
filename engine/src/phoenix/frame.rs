//! The Phoenix Channels V2 JSON frame: `[join_ref, ref, topic, event, payload]`.
//!
//! Decoding is strict about the envelope (five elements, string-or-null refs, string
//! topic and event) and bounded in size, so a hostile or broken server cannot make the
//! client allocate without limit or act on half-understood messages.
use serde_json::Value;

/// Reserved event names (phoenix.js `CHANNEL_EVENTS`).
pub mod events {
    pub const JOIN: &str = "phx_join";
    pub const LEAVE: &str = "phx_leave";
    pub const REPLY: &str = "phx_reply";
    pub const ERROR: &str = "phx_error";
    pub const CLOSE: &str = "phx_close";
    pub const HEARTBEAT: &str = "heartbeat";
}

/// The topic of socket-level messages (heartbeats).
pub const PHOENIX_TOPIC: &str = "phoenix";

#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub join_ref: Option<String>,
    pub msg_ref: Option<String>,
    pub topic: String,
    pub event: String,
    pub payload: Value,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("frame is not JSON: {0}")]
    NotJson(String),
    #[error("frame is not a Phoenix V2 frame: {0}")]
    Shape(&'static str),
}

/// Serializes a frame. The payload is any serializable value: a `Value`, or a
/// pre-serialized `RawValue` that is written verbatim.
pub fn encode(
    join_ref: Option<&str>,
    msg_ref: Option<&str>,
    topic: &str,
    event: &str,
    payload: &(impl serde::Serialize + ?Sized),
) -> String {
    // Serializing strings and an already-valid JSON value cannot fail.
    serde_json::to_string(&(join_ref, msg_ref, topic, event, payload)).unwrap_or_default()
}

impl Frame {
    /// Decodes one text frame, rejecting anything over `limit` bytes before parsing.
    pub fn decode(text: &str, limit: usize) -> Result<Frame, FrameError> {
        if text.len() > limit {
            return Err(FrameError::TooLarge {
                size: text.len(),
                limit,
            });
        }
        let value =
            crate::json::from_str(text).map_err(|error| FrameError::NotJson(error.to_string()))?;
        let Value::Array(mut items) = value else {
            return Err(FrameError::Shape("expected a JSON array"));
        };
        if items.len() != 5 {
            return Err(FrameError::Shape("expected exactly five elements"));
        }
        let payload = items.pop().unwrap_or(Value::Null);
        let event = take_string(items.pop(), "event must be a string")?;
        let topic = take_string(items.pop(), "topic must be a string")?;
        let msg_ref = take_optional_string(items.pop(), "ref must be a string or null")?;
        let join_ref = take_optional_string(items.pop(), "join_ref must be a string or null")?;
        Ok(Frame {
            join_ref,
            msg_ref,
            topic,
            event,
            payload,
        })
    }
}

fn take_string(value: Option<Value>, problem: &'static str) -> Result<String, FrameError> {
    match value {
        Some(Value::String(text)) => Ok(text),
        _ => Err(FrameError::Shape(problem)),
    }
}

fn take_optional_string(
    value: Option<Value>,
    problem: &'static str,
) -> Result<Option<String>, FrameError> {
    match value {
        Some(Value::String(text)) => Ok(Some(text)),
        Some(Value::Null) => Ok(None),
        _ => Err(FrameError::Shape(problem)),
    }
}

/// The `{status, response}` payload of a `phx_reply`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: ReplyStatus,
    pub response: Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyStatus {
    Ok,
    Error,
    /// Any other status string; Phoenix itself only sends ok and error.
    Other(String),
}

impl Reply {
    pub fn from_payload(payload: Value) -> Result<Reply, FrameError> {
        let Value::Object(mut map) = payload else {
            return Err(FrameError::Shape("reply payload must be an object"));
        };
        let status = match map.remove("status") {
            Some(Value::String(status)) => match status.as_str() {
                "ok" => ReplyStatus::Ok,
                "error" => ReplyStatus::Error,
                _ => ReplyStatus::Other(status),
            },
            _ => return Err(FrameError::Shape("reply payload has no status string")),
        };
        let response = map.remove("response").unwrap_or(Value::Null);
        Ok(Reply { status, response })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LIMIT: usize = 1024;

    #[test]
    fn encodes_as_a_five_element_array() {
        assert_eq!(
            encode(
                Some("1"),
                Some("2"),
                "local_runner:r1",
                "heartbeat",
                &json!({"cwd": "/tmp"})
            ),
            r#"["1","2","local_runner:r1","heartbeat",{"cwd":"/tmp"}]"#
        );
    }

    #[test]
    fn writes_raw_payloads_verbatim() {
        let raw = serde_json::value::to_raw_value(&json!({"a": [1, 2]})).unwrap();
        assert_eq!(
            encode(None, Some("3"), "t", "e", &raw),
            r#"[null,"3","t","e",{"a":[1,2]}]"#
        );
    }

    #[test]
    fn round_trips_null_refs() {
        let text = encode(None, None, "t", "e", &json!({}));
        let frame = Frame::decode(&text, LIMIT).unwrap();
        assert_eq!(
            frame,
            Frame {
                join_ref: None,
                msg_ref: None,
                topic: "t".into(),
                event: "e".into(),
                payload: json!({}),
            }
        );
    }

    /// The fuzzer's crash (fuzz/corpus/phoenix_frame/raw_value_marker): serde_json's
    /// private raw-value key in a payload, which re-encoding puts first.
    #[test]
    fn serde_jsons_reserved_key_survives_a_round_trip() {
        let text = include_str!("../../../fuzz/corpus/phoenix_frame/raw_value_marker");
        let frame = Frame::decode(text, LIMIT).unwrap();
        let encoded = encode(None, None, &frame.topic, &frame.event, &frame.payload);
        assert_eq!(Frame::decode(&encoded, LIMIT).unwrap(), frame);
    }

    #[test]
    fn decodes_a_server_reply() {
        let frame = Frame::decode(
            r#"[null,"7","phoenix","phx_reply",{"status":"ok","response":{}}]"#,
            LIMIT,
        )
        .unwrap();
        assert_eq!(frame.msg_ref.as_deref(), Some("7"));
        let reply = Reply::from_payload(frame.payload).unwrap();
        assert_eq!(reply.status, ReplyStatus::Ok);
        assert_eq!(reply.response, json!({}));
    }

    #[test]
    fn rejects_malformed_envelopes() {
        let cases = [
            (r#"{"topic":"t"}"#, "expected a JSON array"),
            (r#"[null,null,"t","e"]"#, "expected exactly five elements"),
            (
                r#"[null,null,"t","e",{},1]"#,
                "expected exactly five elements",
            ),
            (
                r#"[1,null,"t","e",{}]"#,
                "join_ref must be a string or null",
            ),
            (r#"[null,2,"t","e",{}]"#, "ref must be a string or null"),
            (r#"[null,null,3,"e",{}]"#, "topic must be a string"),
            (r#"[null,null,"t",null,{}]"#, "event must be a string"),
        ];
        for (text, problem) in cases {
            assert_eq!(
                Frame::decode(text, LIMIT),
                Err(FrameError::Shape(problem)),
                "{text}"
            );
        }
        assert!(matches!(
            Frame::decode("not json", LIMIT),
            Err(FrameError::NotJson(_))
        ));
    }

    #[test]
    fn rejects_oversized_frames_before_parsing() {
        let text = format!(r#"[null,null,"t","e",{{"x":"{}"}}]"#, "a".repeat(LIMIT));
        assert_eq!(
            Frame::decode(&text, LIMIT),
            Err(FrameError::TooLarge {
                size: text.len(),
                limit: LIMIT
            })
        );
    }

    #[test]
    fn reply_needs_a_status() {
        assert!(Reply::from_payload(json!({"response": {}})).is_err());
        assert!(Reply::from_payload(json!("ok")).is_err());
        let other = Reply::from_payload(json!({"status": "timeout"})).unwrap();
        assert_eq!(other.status, ReplyStatus::Other("timeout".into()));
        assert_eq!(other.response, Value::Null);
    }
}
