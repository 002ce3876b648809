//! Encoding a planned response as Responses API server-sent events, in the shapes the
//! codex client accepts: `response.created`, per item `response.output_item.added` /
//! text or reasoning-summary deltas / `response.output_item.done`, then
//! `response.completed` with usage.
//!
//! The result is a list of [`Frame`]s: runs of events already joined into one buffer (so
//! 2,000 deltas cost one write, not 2,000) separated by pauses.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};

use crate::script::{Item, split_deltas};

/// A piece of the response body: bytes to send, or a pause before the next piece.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Data(Bytes),
    Pause(Duration),
}

/// Collects events into frames, joining consecutive events into one buffer.
#[derive(Debug, Default)]
struct Frames {
    frames: Vec<Frame>,
    buffer: Vec<u8>,
}

impl Frames {
    fn event(&mut self, event: Value) {
        let kind = event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("message");
        self.buffer.extend_from_slice(b"event: ");
        self.buffer.extend_from_slice(kind.as_bytes());
        self.buffer.extend_from_slice(b"\ndata: ");
        self.buffer.extend_from_slice(event.to_string().as_bytes());
        self.buffer.extend_from_slice(b"\n\n");
    }

    fn pause(&mut self, ms: u64) {
        if ms == 0 {
            return;
        }
        self.flush();
        self.frames.push(Frame::Pause(Duration::from_millis(ms)));
    }

    fn flush(&mut self) {
        if !self.buffer.is_empty() {
            let data = std::mem::take(&mut self.buffer);
            self.frames.push(Frame::Data(Bytes::from(data)));
        }
    }

    fn finish(mut self) -> Vec<Frame> {
        self.flush();
        self.frames
    }
}

/// Encodes `items` as the SSE body of response `response_id`.
///
/// Item ids are derived from the response id and the output index (`msg_resp_3_0`,
/// `call_resp_3_1`), so they are unique per mock server.
pub fn encode(response_id: &str, items: &[Item]) -> Vec<Frame> {
    let mut frames = Frames::default();
    frames.event(json!({
        "type": "response.created",
        "response": {"id": response_id, "status": "in_progress"},
    }));
    let mut output_index = 0usize;
    for item in items {
        match item {
            Item::Text {
                text,
                deltas,
                delay_ms,
            } => {
                let id = format!("msg_{response_id}_{output_index}");
                frames.event(json!({
                    "type": "response.output_item.added",
                    "output_index": output_index,
                    "item": {"type": "message", "role": "assistant", "id": id, "content": []},
                }));
                for (n, delta) in split_deltas(text, *deltas).into_iter().enumerate() {
                    if n > 0 {
                        frames.pause(*delay_ms);
                    }
                    frames.event(json!({
                        "type": "response.output_text.delta",
                        "item_id": id,
                        "output_index": output_index,
                        "content_index": 0,
                        "delta": delta,
                    }));
                }
                frames.event(json!({
                    "type": "response.output_item.done",
                    "output_index": output_index,
                    "item": {
                        "type": "message",
                        "role": "assistant",
                        "id": id,
                        "content": [{"type": "output_text", "text": text, "annotations": []}],
                    },
                }));
                output_index += 1;
            }
            Item::Reasoning {
                text,
                deltas,
                delay_ms,
            } => {
                let id = format!("rs_{response_id}_{output_index}");
                frames.event(json!({
                    "type": "response.output_item.added",
                    "output_index": output_index,
                    "item": {"type": "reasoning", "id": id, "summary": []},
                }));
                frames.event(json!({
                    "type": "response.reasoning_summary_part.added",
                    "item_id": id,
                    "output_index": output_index,
                    "summary_index": 0,
                    "part": {"type": "summary_text", "text": ""},
                }));
                for (n, delta) in split_deltas(text, *deltas).into_iter().enumerate() {
                    if n > 0 {
                        frames.pause(*delay_ms);
                    }
                    frames.event(json!({
                        "type": "response.reasoning_summary_text.delta",
                        "item_id": id,
                        "output_index": output_index,
                        "summary_index": 0,
                        "delta": delta,
                    }));
                }
                frames.event(json!({
                    "type": "response.reasoning_summary_text.done",
                    "item_id": id,
                    "output_index": output_index,
                    "summary_index": 0,
                    "text": text,
                }));
                frames.event(json!({
                    "type": "response.output_item.done",
                    "output_index": output_index,
                    "item": {
                        "type": "reasoning",
                        "id": id,
                        "summary": [{"type": "summary_text", "text": text}],
                    },
                }));
                output_index += 1;
            }
            Item::Exec { cmd, yield_ms } => {
                let arguments = json!({"cmd": cmd, "yield_time_ms": yield_ms}).to_string();
                frames.event(json!({
                    "type": "response.output_item.done",
                    "output_index": output_index,
                    "item": {
                        "type": "function_call",
                        "id": format!("fc_{response_id}_{output_index}"),
                        "call_id": format!("call_{response_id}_{output_index}"),
                        "name": "exec_command",
                        "arguments": arguments,
                    },
                }));
                output_index += 1;
            }
            Item::Patch { patch } => {
                frames.event(json!({
                    "type": "response.output_item.done",
                    "output_index": output_index,
                    "item": {
                        "type": "custom_tool_call",
                        "id": format!("ctc_{response_id}_{output_index}"),
                        "call_id": format!("call_{response_id}_{output_index}"),
                        "name": "apply_patch",
                        "input": patch,
                    },
                }));
                output_index += 1;
            }
            Item::Hang { ms } => frames.pause(*ms),
        }
    }
    frames.event(json!({
        "type": "response.completed",
        "response": {
            "id": response_id,
            "status": "completed",
            "usage": {
                "input_tokens": 10,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 5,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 15,
            },
        },
    }));
    frames.finish()
}

/// The JSON body of an HTTP error reply.
pub fn error_body(status: u16, message: &str) -> Value {
    json!({
        "error": {
            "message": message,
            "type": if status >= 500 { "server_error" } else { "invalid_request_error" },
            "code": null,
            "param": null,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(frames: &[Frame]) -> Vec<Value> {
        let mut text = String::new();
        for frame in frames {
            if let Frame::Data(bytes) = frame {
                text.push_str(std::str::from_utf8(bytes).unwrap());
            }
        }
        text.split("\n\n")
            .filter(|block| !block.is_empty())
            .map(|block| {
                let mut lines = block.lines();
                let event = lines.next().unwrap().strip_prefix("event: ").unwrap();
                let data: Value =
                    serde_json::from_str(lines.next().unwrap().strip_prefix("data: ").unwrap())
                        .unwrap();
                assert_eq!(data["type"], event);
                data
            })
            .collect()
    }

    #[test]
    fn text_without_delay_is_one_frame() {
        let frames = encode(
            "resp_1",
            &[Item::Text {
                text: "Hello world".into(),
                deltas: 3,
                delay_ms: 0,
            }],
        );
        assert_eq!(frames.len(), 1);
        let events = events(&frames);
        let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.output_item.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_item.done",
                "response.completed"
            ]
        );
        let text: String = events[2..5]
            .iter()
            .map(|e| e["delta"].as_str().unwrap())
            .collect();
        assert_eq!(text, "Hello world");
        assert_eq!(events[5]["item"]["content"][0]["text"], "Hello world");
        assert_eq!(events[5]["item"]["id"], "msg_resp_1_0");
    }

    #[test]
    fn delays_and_hangs_become_pauses() {
        let frames = encode(
            "r",
            &[
                Item::Text {
                    text: "ab".into(),
                    deltas: 2,
                    delay_ms: 7,
                },
                Item::Hang { ms: 30 },
                Item::Exec {
                    cmd: "ls".into(),
                    yield_ms: 100,
                },
            ],
        );
        let pauses: Vec<&Frame> = frames
            .iter()
            .filter(|f| matches!(f, Frame::Pause(_)))
            .collect();
        assert_eq!(
            pauses,
            [
                &Frame::Pause(Duration::from_millis(7)),
                &Frame::Pause(Duration::from_millis(30))
            ]
        );
        let events = events(&frames);
        let call = &events[events.len() - 2]["item"];
        assert_eq!(call["name"], "exec_command");
        assert_eq!(call["call_id"], "call_r_1");
        let arguments: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(arguments, json!({"cmd": "ls", "yield_time_ms": 100}));
    }
}
