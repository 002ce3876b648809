//! What Kandan pushes on the runner topic: `control` payloads (`protocol::controls`, the
//! serde-tagged `KandanControl`) and `session:message` chat events with their `/kandan`
//! commands (`session::intake`, `session::chat_commands`). A forwarding control goes on
//! through the header parsing and the request guard, as the runner does.
//!
//! Properties: parsing never panics; the error says exactly what is wrong (unknown type
//! iff the type is not listed); a parsed control reports its own wire type; the guard
//! holds (see `check_admit`); header parsing stays bounded however the input repeats.
#![no_main]

use libfuzzer_sys::fuzz_target;
use linzumi_engine::forwarding::guard::{self, MAX_HEADER_BYTES, MAX_HEADERS};
use linzumi_engine::protocol::controls::{CONTROL_TYPES, ControlError, KandanControl};
use linzumi_engine::session::chat_commands::{self, ChatCommand};
use linzumi_engine::session::intake::{self, ChatEvent, IntakeContext, ListenUser};
use linzumi_fuzz::{allowed_ports, check_admit};
use serde::Deserialize;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(payload) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    control(&payload, data.len());
    chat_event(&payload);
});

fn control(payload: &Value, input_len: usize) {
    let wire_type = payload.get("type").and_then(Value::as_str);
    match KandanControl::parse(payload) {
        Ok(control) => {
            assert!(payload.is_object());
            assert_eq!(Some(control.kind()), wire_type);
            match control.instance_id() {
                None => assert!(control.targets("any-instance")),
                Some(id) => {
                    assert!(control.targets(id));
                    assert_eq!(control.targets("other-instance"), id == "other-instance");
                }
            }
            forward(&control, input_len);
        }
        Err(ControlError::NotAnObject) => assert!(!payload.is_object()),
        Err(ControlError::MissingType) => assert!(payload.is_object() && wire_type.is_none()),
        Err(ControlError::UnknownType(kind)) => {
            assert_eq!(Some(kind.as_str()), wire_type);
            assert!(!CONTROL_TYPES.contains(&kind.as_str()));
        }
        Err(ControlError::Malformed { control_type, .. }) => {
            assert_eq!(Some(control_type.as_str()), wire_type);
            assert!(CONTROL_TYPES.contains(&control_type.as_str()));
        }
    }
}

/// The forwarding controls, as `control_http` and `websocket_relay` check them.
fn forward(control: &KandanControl, input_len: usize) {
    let (port, path, query, headers) = match control {
        KandanControl::ForwardHttpRequest(request) => (
            request.port,
            &request.path,
            request.query_string.as_deref(),
            request.headers.as_ref(),
        ),
        KandanControl::ForwardWebsocketOpen(open) => (
            open.port,
            &open.path,
            open.query_string.as_deref(),
            open.headers.as_ref(),
        ),
        _ => return,
    };
    let Ok(pairs) = guard::header_pairs(headers) else {
        return;
    };
    // A name with a list of values is copied once per value: that must stay bounded by
    // the header limits, not grow with the square of the frame.
    let bytes: usize = pairs
        .iter()
        .map(|(name, value)| name.len() + value.len())
        .sum();
    assert!(
        pairs.len() <= MAX_HEADERS && bytes <= MAX_HEADER_BYTES,
        "{} header pairs, {bytes} bytes, from a {input_len}-byte control",
        pairs.len()
    );
    check_admit(
        &allowed_ports(port, path.len() as u8),
        port,
        path,
        query,
        pairs,
    );
}

fn chat_event(payload: &Value) {
    if let Some(body) = payload.get("body").and_then(Value::as_str) {
        command(body);
    }
    let Ok(event) = ChatEvent::deserialize(payload) else {
        return;
    };
    let listen = ListenUser::parse(
        event.actor_slug.as_deref().unwrap_or("all"),
        Some(("sean".to_owned(), 7)),
    );
    let context = IntakeContext {
        bound_thread: event.thread_id.as_deref(),
        cursor_seq: 0,
        listen: &listen,
    };
    for seen in [false, true] {
        let outcome = intake::classify(&event, &context, seen);
        if seen && event.seq > 0 && !matches!(outcome, intake::Intake::Ignore("runner_message")) {
            assert_eq!(outcome, intake::Intake::Ignore("duplicate"));
        }
    }
}

/// `/kandan …` commands: ids are one non-empty word; anything not starting with the
/// command word is not a command.
fn command(body: &str) {
    let parsed = chat_commands::parse(body);
    let trimmed = body.trim();
    let Some(rest) = trimmed.strip_prefix("/kandan") else {
        assert!(parsed.is_none(), "{body:?} → {parsed:?}");
        return;
    };
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        assert!(parsed.is_none(), "{body:?} → {parsed:?}");
        return;
    }
    match parsed.expect("a /kandan body is a command or an error") {
        Ok(
            ChatCommand::Approve(id)
            | ChatCommand::Deny(id)
            | ChatCommand::ApprovePortForward(id)
            | ChatCommand::DenyPortForward(id),
        ) => {
            assert!(
                !id.is_empty() && !id.contains(char::is_whitespace),
                "{id:?}"
            );
            assert!(trimmed.ends_with(&id));
        }
        Ok(ChatCommand::Steer(text)) => {
            assert!(!text.is_empty() && text.trim() == text, "{text:?}");
        }
        Ok(ChatCommand::Interrupt) | Err(_) => {}
    }
}
