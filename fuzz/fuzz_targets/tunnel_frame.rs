//! The forward tunnel's binary frames (`forwarding::tunnel::frame`, protocol §6.4) and
//! what the runner reads out of them: the `OPEN` payload, which then passes the request
//! guard (`forwarding::guard`) as the tunnel's streams do; the `END` close code and
//! reason; the `WINDOW` credit.
//!
//! Properties: decoding never panics and reads the layout exactly (type, stream, payload),
//! re-encoding gives back the same bytes, close reasons stay within 123 bytes and are a
//! prefix of what was sent, and the guard holds for any `OPEN` (see `check_admit`).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use linzumi_engine::forwarding::tunnel::frame::{
    Frame, FrameError, Kind, MAX_CLOSE_REASON, MAX_FRAME, MAX_JSON, Open,
};
use linzumi_fuzz::{allowed_ports, check_admit};

fuzz_target!(|data: &[u8]| {
    let frame = match Frame::decode(Bytes::copy_from_slice(data)) {
        Ok(frame) => frame,
        Err(FrameError::TooShort(size)) => return assert!(size == data.len() && size < 5),
        Err(FrameError::TooLarge(size)) => return assert!(size == data.len() && size > MAX_FRAME),
        Err(FrameError::UnknownType { kind, stream }) => {
            assert_eq!(kind, data[0]);
            assert!(!(1..=8).contains(&kind));
            return assert_eq!(
                stream,
                u32::from_be_bytes([data[1], data[2], data[3], data[4]])
            );
        }
    };
    assert_eq!(frame.kind as u8, data[0]);
    assert_eq!(
        frame.stream,
        u32::from_be_bytes([data[1], data[2], data[3], data[4]])
    );
    assert_eq!(frame.payload.as_ref(), &data[5..]);
    assert_eq!(
        frame.encode().as_ref(),
        data,
        "encode is not the inverse of decode"
    );

    match frame.kind {
        Kind::Open => open(&frame.payload),
        Kind::End => end(&frame),
        Kind::Window => {
            let credit = frame.window_credit();
            assert_eq!(credit.is_some(), frame.payload.len() == 4);
        }
        Kind::Data => {
            // A websocket DATA payload starts with its FIN | opcode byte.
            if let Some((&flags, rest)) = frame.payload.split_first() {
                let again = Frame::decode(Frame::encode_data(frame.stream, Some(flags), rest));
                assert_eq!(again.as_ref(), Ok(&frame));
            }
        }
        Kind::Reset => {
            let text = String::from_utf8_lossy(&frame.payload);
            let reset = Frame::reset(frame.stream, "protocol_error", &text);
            let body: serde_json::Value =
                serde_json::from_slice(&reset.payload).expect("a RESET body is JSON");
            assert_eq!(body["message"].as_str(), Some(text.as_ref()));
        }
        Kind::Head | Kind::Ping | Kind::Pong => {}
    }
});

fn open(payload: &[u8]) {
    // The tunnel refuses larger OPEN payloads before parsing them.
    if payload.len() > MAX_JSON {
        return;
    }
    let Ok(open) = serde_json::from_slice::<Open>(payload) else {
        return;
    };
    let allowed = allowed_ports(open.port, open.path.len() as u8);
    check_admit(
        &allowed,
        open.port,
        &open.path,
        open.query.as_deref(),
        open.headers,
    );
}

fn end(frame: &Frame) {
    let Some((code, reason)) = frame.close_of_end() else {
        return assert!(frame.payload.len() < 2);
    };
    assert_eq!(
        code,
        u16::from_be_bytes([frame.payload[0], frame.payload[1]])
    );
    assert!(reason.len() <= MAX_CLOSE_REASON, "{} bytes", reason.len());
    let sent = String::from_utf8_lossy(&frame.payload[2..]);
    assert!(
        sent.starts_with(&reason),
        "{reason:?} is not a prefix of {sent:?}"
    );
    // What the runner sends back for that close is read back the same.
    let echoed = Frame::end_websocket(frame.stream, Some((code, &reason)));
    assert_eq!(echoed.close_of_end(), Some((code, reason)));
}
