//! Phoenix Channels V2 wire codec: `[join_ref, ref, topic, event, payload]` text frames, and the
//! client-to-server binary push frame of the V2 serializer.
//!
//! Decoding is strict on purpose: this server exists to catch client bugs, so anything that a
//! Phoenix server would choke on (or silently coerce) is reported as a [`FrameError`].

use base64::Engine as _;
use serde_json::{Map, Value, json};

/// Reserved events of the protocol (phoenix.js `CHANNEL_EVENTS`).
pub(crate) mod events {
    pub(crate) const JOIN: &str = "phx_join";
    pub(crate) const LEAVE: &str = "phx_leave";
    pub(crate) const REPLY: &str = "phx_reply";
    pub(crate) const ERROR: &str = "phx_error";
    pub(crate) const CLOSE: &str = "phx_close";
    pub(crate) const HEARTBEAT: &str = "heartbeat";
}

/// The topic heartbeats are sent on.
pub(crate) const PHOENIX_TOPIC: &str = "phoenix";

/// Binary frame kind byte for a push (the only kind a server decodes).
const BINARY_KIND_PUSH: u8 = 0;
/// Kind byte plus the four one-byte size fields of a binary push.
const BINARY_PUSH_HEADER_LEN: usize = 5;

/// One Phoenix message, in either direction.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Frame {
    pub join_ref: Option<String>,
    pub msg_ref: Option<String>,
    pub topic: String,
    pub event: String,
    pub payload: Value,
}

/// Status of a `phx_reply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplyStatus {
    Ok,
    Error,
}

impl ReplyStatus {
    fn as_str(self) -> &'static str {
        match self {
            ReplyStatus::Ok => "ok",
            ReplyStatus::Error => "error",
        }
    }
}

/// Why a frame from a client could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum FrameError {
    #[error("frame is not valid JSON: {0}")]
    Json(String),
    #[error("frame must be a JSON array [join_ref, ref, topic, event, payload]")]
    NotAnArray,
    #[error("frame must have exactly 5 elements, got {0}")]
    WrongLength(usize),
    #[error("{0} must be a string or null")]
    RefNotString(&'static str),
    #[error("{0} must be a string")]
    NotString(&'static str),
    #[error("payload must be a JSON object")]
    PayloadNotObject,
    #[error("binary frame kind {0} is not a push (servers only decode kind 0)")]
    BinaryKind(u8),
    #[error("binary frame is truncated")]
    BinaryTruncated,
    #[error("binary frame {0} is not valid UTF-8")]
    BinaryNotUtf8(&'static str),
}

impl Frame {
    /// Decodes a V2 JSON text frame.
    pub(crate) fn decode_text(text: &str) -> Result<Frame, FrameError> {
        let value: Value =
            serde_json::from_str(text).map_err(|err| FrameError::Json(err.to_string()))?;
        let Value::Array(elements) = value else {
            return Err(FrameError::NotAnArray);
        };
        let [join_ref, msg_ref, topic, event, payload]: [Value; 5] = elements
            .try_into()
            .map_err(|rest: Vec<Value>| FrameError::WrongLength(rest.len()))?;
        if !payload.is_object() {
            return Err(FrameError::PayloadNotObject);
        }
        Ok(Frame {
            join_ref: optional_string(join_ref, "join_ref")?,
            msg_ref: optional_string(msg_ref, "ref")?,
            topic: required_string(topic, "topic")?,
            event: required_string(event, "event")?,
            payload,
        })
    }

    /// Decodes a V2 binary push: kind, four size bytes, join_ref, ref, topic, event, raw payload.
    ///
    /// The raw payload has no JSON form, so it is carried as `{"binary_base64": "..."}`.
    pub(crate) fn decode_binary(bytes: &[u8]) -> Result<Frame, FrameError> {
        let (header, rest) = bytes
            .split_first_chunk::<BINARY_PUSH_HEADER_LEN>()
            .ok_or(FrameError::BinaryTruncated)?;
        let [kind, join_ref_len, ref_len, topic_len, event_len] = *header;
        if kind != BINARY_KIND_PUSH {
            return Err(FrameError::BinaryKind(kind));
        }
        let mut cursor = rest;
        let join_ref = take_utf8(&mut cursor, join_ref_len, "join_ref")?;
        let msg_ref = take_utf8(&mut cursor, ref_len, "ref")?;
        let topic = take_utf8(&mut cursor, topic_len, "topic")?;
        let event = take_utf8(&mut cursor, event_len, "event")?;
        let encoded = base64::engine::general_purpose::STANDARD.encode(cursor);
        Ok(Frame {
            // Phoenix keeps these as (possibly empty) strings; binary frames cannot express null.
            join_ref: Some(join_ref),
            msg_ref: Some(msg_ref),
            topic,
            event,
            payload: json!({ "binary_base64": encoded }),
        })
    }

    /// Encodes the frame as a V2 JSON text frame.
    pub(crate) fn encode_text(&self) -> String {
        json!([
            self.join_ref,
            self.msg_ref,
            self.topic,
            self.event,
            self.payload
        ])
        .to_string()
    }

    /// A `phx_reply` to the message with `msg_ref`.
    pub(crate) fn reply(
        join_ref: Option<String>,
        msg_ref: Option<String>,
        topic: &str,
        status: ReplyStatus,
        response: Value,
    ) -> Frame {
        Frame {
            join_ref,
            msg_ref,
            topic: topic.to_owned(),
            event: events::REPLY.to_owned(),
            payload: json!({ "status": status.as_str(), "response": response }),
        }
    }

    /// A server push to one channel: carries the channel's join_ref, no ref.
    pub(crate) fn push(
        join_ref: Option<String>,
        topic: &str,
        event: &str,
        payload: Value,
    ) -> Frame {
        Frame {
            join_ref,
            msg_ref: None,
            topic: topic.to_owned(),
            event: event.to_owned(),
            payload,
        }
    }

    /// A broadcast to every subscriber: no join_ref, no ref.
    pub(crate) fn broadcast(topic: &str, event: &str, payload: Value) -> Frame {
        Frame::push(None, topic, event, payload)
    }

    /// `phx_close` (graceful channel exit) or `phx_error` (channel crash): both carry the
    /// channel's join_ref as join_ref *and* ref, which is how phoenix.js matches them.
    pub(crate) fn channel_exit(join_ref: Option<String>, topic: &str, event: &str) -> Frame {
        Frame {
            msg_ref: join_ref.clone(),
            join_ref,
            topic: topic.to_owned(),
            event: event.to_owned(),
            payload: Value::Object(Map::new()),
        }
    }
}

fn optional_string(value: Value, field: &'static str) -> Result<Option<String>, FrameError> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) => Ok(Some(text)),
        _ => Err(FrameError::RefNotString(field)),
    }
}

fn required_string(value: Value, field: &'static str) -> Result<String, FrameError> {
    match value {
        Value::String(text) => Ok(text),
        _ => Err(FrameError::NotString(field)),
    }
}

/// Splits `len` bytes off the front of `cursor` and decodes them as UTF-8.
fn take_utf8(cursor: &mut &[u8], len: u8, field: &'static str) -> Result<String, FrameError> {
    let (field_bytes, rest) = cursor
        .split_at_checked(usize::from(len))
        .ok_or(FrameError::BinaryTruncated)?;
    *cursor = rest;
    String::from_utf8(field_bytes.to_vec()).map_err(|_| FrameError::BinaryNotUtf8(field))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_phoenix_js_push() {
        let frame = Frame::decode_text(r#"["1","2","room:lobby","new_msg",{"body":"hi"}]"#)
            .expect("valid frame");
        assert_eq!(
            frame,
            Frame {
                join_ref: Some("1".into()),
                msg_ref: Some("2".into()),
                topic: "room:lobby".into(),
                event: "new_msg".into(),
                payload: json!({"body": "hi"}),
            }
        );
    }

    #[test]
    fn decodes_null_refs_as_none() {
        let frame = Frame::decode_text(r#"[null,null,"phoenix","heartbeat",{}]"#).expect("valid");
        assert_eq!(frame.join_ref, None);
        assert_eq!(frame.msg_ref, None);
    }

    #[test]
    fn rejects_malformed_frames() {
        let cases: &[(&str, FrameError)] = &[
            ("not json", FrameError::Json(String::new())),
            (r#"{"topic":"x"}"#, FrameError::NotAnArray),
            (r#"[null,"1","t","e"]"#, FrameError::WrongLength(4)),
            (r#"[null,"1","t","e",{},1]"#, FrameError::WrongLength(6)),
            (
                r#"[1,"1","t","e",{}]"#,
                FrameError::RefNotString("join_ref"),
            ),
            (r#"[null,2,"t","e",{}]"#, FrameError::RefNotString("ref")),
            (r#"[null,"1",null,"e",{}]"#, FrameError::NotString("topic")),
            (r#"[null,"1","t",3,{}]"#, FrameError::NotString("event")),
            (r#"[null,"1","t","e","body"]"#, FrameError::PayloadNotObject),
            (r#"[null,"1","t","e",null]"#, FrameError::PayloadNotObject),
        ];
        for (text, expected) in cases {
            let err = Frame::decode_text(text).expect_err(text);
            match (expected, &err) {
                // serde's message is not ours to pin down.
                (FrameError::Json(_), FrameError::Json(_)) => {}
                _ => assert_eq!(&err, expected, "for {text}"),
            }
        }
    }

    #[test]
    fn encodes_a_reply_in_wire_order() {
        let reply = Frame::reply(
            Some("1".into()),
            Some("3".into()),
            "room:lobby",
            ReplyStatus::Error,
            json!({"reason": "nope"}),
        );
        // Compared as JSON: object key order depends on serde_json features.
        let encoded: Value = serde_json::from_str(&reply.encode_text()).expect("json");
        assert_eq!(
            encoded,
            json!(["1", "3", "room:lobby", "phx_reply", {"status": "error", "response": {"reason": "nope"}}])
        );
    }

    #[test]
    fn broadcasts_and_pushes_carry_the_right_refs() {
        let broadcast = Frame::broadcast("t", "shout", json!({}));
        assert_eq!(broadcast.encode_text(), r#"[null,null,"t","shout",{}]"#);
        let push = Frame::push(Some("7".into()), "t", "control", json!({"a": 1}));
        assert_eq!(push.encode_text(), r#"["7",null,"t","control",{"a":1}]"#);
        let close = Frame::channel_exit(Some("7".into()), "t", events::CLOSE);
        assert_eq!(close.encode_text(), r#"["7","7","t","phx_close",{}]"#);
    }

    #[test]
    fn text_round_trip() {
        let frame = Frame::push(
            Some("4".into()),
            "a:b",
            "ev",
            json!({"nested": [1, {"x": null}]}),
        );
        assert_eq!(Frame::decode_text(&frame.encode_text()), Ok(frame));
    }

    /// Encodes a push the way phoenix.js `binaryEncode` does.
    fn binary_push(
        join_ref: &str,
        msg_ref: &str,
        topic: &str,
        event: &str,
        data: &[u8],
    ) -> Vec<u8> {
        let mut bytes = vec![
            BINARY_KIND_PUSH,
            u8::try_from(join_ref.len()).expect("short"),
            u8::try_from(msg_ref.len()).expect("short"),
            u8::try_from(topic.len()).expect("short"),
            u8::try_from(event.len()).expect("short"),
        ];
        for part in [join_ref, msg_ref, topic, event] {
            bytes.extend_from_slice(part.as_bytes());
        }
        bytes.extend_from_slice(data);
        bytes
    }

    #[test]
    fn decodes_a_binary_push() {
        let bytes = binary_push("12", "13", "conformance:room", "echo", &[0, 1, 2, 255]);
        let frame = Frame::decode_binary(&bytes).expect("valid binary push");
        assert_eq!(frame.join_ref.as_deref(), Some("12"));
        assert_eq!(frame.msg_ref.as_deref(), Some("13"));
        assert_eq!(frame.topic, "conformance:room");
        assert_eq!(frame.event, "echo");
        assert_eq!(frame.payload, json!({"binary_base64": "AAEC/w=="}));
    }

    #[test]
    fn binary_push_with_empty_payload() {
        let frame = Frame::decode_binary(&binary_push("1", "2", "t", "e", &[])).expect("valid");
        assert_eq!(frame.payload, json!({"binary_base64": ""}));
    }

    #[test]
    fn rejects_bad_binary_frames() {
        assert_eq!(Frame::decode_binary(&[]), Err(FrameError::BinaryTruncated));
        assert_eq!(
            Frame::decode_binary(&[0, 1, 1]),
            Err(FrameError::BinaryTruncated)
        );
        let mut reply_kind = binary_push("1", "2", "t", "e", b"x");
        reply_kind[0] = 1;
        assert_eq!(
            Frame::decode_binary(&reply_kind),
            Err(FrameError::BinaryKind(1))
        );
        // Header claims a 9-byte topic but only 3 bytes follow.
        assert_eq!(
            Frame::decode_binary(&[0, 0, 0, 9, 0, b'a', b'b', b'c']),
            Err(FrameError::BinaryTruncated)
        );
        assert_eq!(
            Frame::decode_binary(&[0, 0, 0, 1, 1, 0xff, b'e']),
            Err(FrameError::BinaryNotUtf8("topic"))
        );
    }
}
