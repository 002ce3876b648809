//! Phoenix Channels V2 frames (`phoenix::frame`): what the runner reads from Kandan's
//! socket. Properties: decoding never panics; the size limit is checked before parsing;
//! a decoded envelope survives encode → decode; `phx_reply` payloads classify exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use linzumi_engine::phoenix::config::MAX_FRAME_BYTES;
use linzumi_engine::phoenix::frame::{self, Frame, FrameError, Reply, ReplyStatus};
use serde_json::Value;

/// A small limit as well, so the too-large path is exercised by small inputs.
const SMALL_LIMIT: usize = 64;

fuzz_target!(|data: &[u8]| {
    // WebSocket text messages are UTF-8 (tungstenite checks); nothing else reaches decode.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    match Frame::decode(text, SMALL_LIMIT) {
        Err(FrameError::TooLarge { size, limit }) => {
            assert_eq!((size, limit), (text.len(), SMALL_LIMIT));
        }
        other => assert!(text.len() <= SMALL_LIMIT, "{other:?} past the limit"),
    }

    let Ok(decoded) = Frame::decode(text, MAX_FRAME_BYTES) else {
        return;
    };

    // Re-encoding keeps the envelope exactly. (Payload numbers are compared by kind
    // only: serde_json's default float parsing is not guaranteed to round-trip.)
    let encoded = frame::encode(
        decoded.join_ref.as_deref(),
        decoded.msg_ref.as_deref(),
        &decoded.topic,
        &decoded.event,
        &decoded.payload,
    );
    let again = Frame::decode(&encoded, usize::MAX).expect("an encoded frame decodes");
    assert_eq!(again.join_ref, decoded.join_ref);
    assert_eq!(again.msg_ref, decoded.msg_ref);
    assert_eq!(again.topic, decoded.topic);
    assert_eq!(again.event, decoded.event);
    assert_eq!(kind(&again.payload), kind(&decoded.payload));

    let payload = decoded.payload;
    let expected_status = payload
        .as_object()
        .and_then(|map| map.get("status"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let expected_response = payload.get("response").cloned().unwrap_or(Value::Null);
    match (Reply::from_payload(payload), expected_status) {
        (Ok(reply), Some(status)) => {
            let shown = match &reply.status {
                ReplyStatus::Ok => "ok",
                ReplyStatus::Error => "error",
                ReplyStatus::Other(other) => {
                    assert!(other != "ok" && other != "error");
                    other
                }
            };
            assert_eq!(shown, status);
            assert_eq!(reply.response, expected_response);
        }
        (Err(_), None) => {}
        (outcome, status) => panic!("reply {outcome:?} for status {status:?}"),
    }
});

fn kind(value: &Value) -> u8 {
    match value {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}
