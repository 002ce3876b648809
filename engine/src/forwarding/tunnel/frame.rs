//! The forward tunnel's binary frames (protocol §6.4): `type u8 | stream u32 BE | payload`.
use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

/// The most `DATA` payload one frame carries.
pub const MAX_DATA: usize = 64 * 1024;
/// `DATA` bytes a side may send on a stream before the other grants more.
pub const INITIAL_WINDOW: u32 = 256 * 1024;
/// Streams open at once on one tunnel.
pub const MAX_STREAMS: usize = 256;
/// The largest WebSocket message, reassembled from fragments or relayed to a local server.
pub const MAX_MESSAGE: usize = 8 * 1024 * 1024;
/// The largest JSON payload (`OPEN`, `HEAD`, `RESET`).
pub const MAX_JSON: usize = 256 * 1024;
/// The largest tunnel message accepted at all.
pub const MAX_FRAME: usize = 1024 * 1024;
/// The longest close reason, as WebSocket close frames allow.
pub const MAX_CLOSE_REASON: usize = 123;
/// The FIN bit of a WebSocket `DATA` frame's first byte.
pub const FIN: u8 = 0x80;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Open = 1,
    Head = 2,
    Data = 3,
    End = 4,
    Reset = 5,
    Window = 6,
    Ping = 7,
    Pong = 8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    pub stream: u32,
    pub payload: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a tunnel frame needs 5 header bytes, got {0}")]
    TooShort(usize),
    #[error("unknown tunnel frame type {kind} on stream {stream}")]
    UnknownType { kind: u8, stream: u32 },
    #[error("tunnel frame of {0} bytes is over the limit")]
    TooLarge(usize),
}

impl Frame {
    pub fn new(kind: Kind, stream: u32, payload: impl Into<Bytes>) -> Frame {
        Frame {
            kind,
            stream,
            payload: payload.into(),
        }
    }

    pub fn encode(&self) -> Bytes {
        encode_data_like(self.kind, self.stream, None, &self.payload)
    }

    /// A `DATA` frame as it goes on the wire, with the WebSocket flag byte if given: built
    /// straight from the body chunk, so each byte is copied once here.
    pub fn encode_data(stream: u32, flags: Option<u8>, chunk: &[u8]) -> Bytes {
        encode_data_like(Kind::Data, stream, flags, chunk)
    }

    pub fn decode(mut bytes: Bytes) -> Result<Frame, FrameError> {
        if bytes.len() < 5 {
            return Err(FrameError::TooShort(bytes.len()));
        }
        if bytes.len() > MAX_FRAME {
            return Err(FrameError::TooLarge(bytes.len()));
        }
        let stream = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        let kind = match bytes[0] {
            1 => Kind::Open,
            2 => Kind::Head,
            3 => Kind::Data,
            4 => Kind::End,
            5 => Kind::Reset,
            6 => Kind::Window,
            7 => Kind::Ping,
            8 => Kind::Pong,
            kind => return Err(FrameError::UnknownType { kind, stream }),
        };
        let payload = bytes.split_off(5);
        Ok(Frame {
            kind,
            stream,
            payload,
        })
    }

    pub fn reset(stream: u32, code: &str, message: &str) -> Frame {
        let body = serde_json::json!({"code": code, "message": message}).to_string();
        Frame::new(Kind::Reset, stream, body)
    }

    pub fn window(stream: u32, bytes: u32) -> Frame {
        Frame::new(Kind::Window, stream, bytes.to_be_bytes().to_vec())
    }

    /// A websocket `END`: the close code and reason, if the closing side gave one.
    pub fn end_websocket(stream: u32, close: Option<(u16, &str)>) -> Frame {
        let mut payload = BytesMut::new();
        if let Some((code, reason)) = close {
            payload.put_u16(code);
            payload.extend_from_slice(truncate_utf8(reason, MAX_CLOSE_REASON).as_bytes());
        }
        Frame::new(Kind::End, stream, payload.freeze())
    }

    /// The close code and reason of a websocket `END`; `None` for an empty one (1005).
    pub fn close_of_end(&self) -> Option<(u16, String)> {
        let (code, reason) = self.payload.split_first_chunk::<2>()?;
        let reason = String::from_utf8_lossy(reason);
        Some((
            u16::from_be_bytes(*code),
            truncate_utf8(&reason, MAX_CLOSE_REASON).to_owned(),
        ))
    }

    /// The credit of a `WINDOW` frame.
    pub fn window_credit(&self) -> Option<u32> {
        let bytes: [u8; 4] = self.payload.as_ref().try_into().ok()?;
        Some(u32::from_be_bytes(bytes))
    }
}

/// The `OPEN` payload.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Open {
    pub kind: OpenKind,
    pub port: u16,
    #[serde(default = "get")]
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
}

fn encode_data_like(kind: Kind, stream: u32, flags: Option<u8>, payload: &[u8]) -> Bytes {
    let mut buffer = BytesMut::with_capacity(6 + payload.len());
    buffer.put_u8(kind as u8);
    buffer.put_u32(stream);
    if let Some(flags) = flags {
        buffer.put_u8(flags);
    }
    buffer.extend_from_slice(payload);
    buffer.freeze()
}

fn truncate_utf8(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn get() -> String {
    "GET".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpenKind {
    Http,
    Websocket,
}

/// The `HEAD` payload of an http stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpHead {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_kind() {
        for kind in [
            Kind::Open,
            Kind::Head,
            Kind::Data,
            Kind::End,
            Kind::Reset,
            Kind::Window,
            Kind::Ping,
            Kind::Pong,
        ] {
            let frame = Frame::new(kind, 0xDEAD_BEEF, b"payload".to_vec());
            assert_eq!(Frame::decode(frame.encode()), Ok(frame));
        }
    }

    #[test]
    fn the_layout_is_type_then_big_endian_stream() {
        let encoded = Frame::new(Kind::Data, 3, b"ab".to_vec()).encode();
        assert_eq!(encoded.as_ref(), &[3, 0, 0, 0, 3, b'a', b'b']);
        assert_eq!(
            Frame::window(5, 65536).encode().as_ref(),
            &[6, 0, 0, 0, 5, 0, 1, 0, 0]
        );
    }

    #[test]
    fn malformed_frames_are_errors() {
        assert_eq!(
            Frame::decode(Bytes::from_static(&[3, 0, 0])),
            Err(FrameError::TooShort(3))
        );
        assert_eq!(
            Frame::decode(Bytes::from_static(&[42, 0, 0, 0, 1])),
            Err(FrameError::UnknownType {
                kind: 42,
                stream: 1
            })
        );
        let huge = vec![3u8; MAX_FRAME + 1];
        assert!(matches!(
            Frame::decode(Bytes::from(huge)),
            Err(FrameError::TooLarge(_))
        ));
        assert_eq!(Frame::new(Kind::Window, 1, vec![1]).window_credit(), None);
    }

    #[test]
    fn data_frames_encode_with_their_flag_byte() {
        let frame = Frame::decode(Frame::encode_data(9, Some(FIN | 2), b"xy")).unwrap();
        assert_eq!(frame, Frame::new(Kind::Data, 9, vec![0x82, b'x', b'y']));
        let plain = Frame::decode(Frame::encode_data(9, None, b"xy")).unwrap();
        assert_eq!(plain.payload.as_ref(), b"xy");
    }

    #[test]
    fn websocket_ends_carry_the_close_code_and_reason() {
        let end = Frame::end_websocket(7, Some((4001, "bye")));
        assert_eq!(end.payload.as_ref(), &[0x0F, 0xA1, b'b', b'y', b'e']);
        assert_eq!(end.close_of_end(), Some((4001, "bye".to_owned())));
        assert_eq!(Frame::end_websocket(7, None).close_of_end(), None);
        // A reason is cut at a character boundary within 123 bytes.
        let long = "é".repeat(100);
        let cut = Frame::end_websocket(7, Some((1000, &long)))
            .close_of_end()
            .unwrap()
            .1;
        assert_eq!(cut.len(), 122);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn open_payloads_parse() {
        let open: Open = serde_json::from_str(
            r#"{"kind":"http","port":3000,"method":"POST","path":"/api","query":"a=1","headers":[["accept","*/*"]]}"#,
        )
        .unwrap();
        assert_eq!(open.kind, OpenKind::Http);
        assert_eq!(open.headers, vec![("accept".to_owned(), "*/*".to_owned())]);
        let websocket: Open =
            serde_json::from_str(r#"{"kind":"websocket","port":3000,"path":"/ws"}"#).unwrap();
        assert_eq!(websocket.method, "GET");
    }
}
