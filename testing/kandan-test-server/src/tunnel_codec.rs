//! The forward tunnel's framing (protocol §6.4): every WebSocket message is one binary frame,
//! `type u8 | stream u32 BE | payload`, with a JSON, raw, `u32` or 8-byte payload by type.
//! Decoding checks sizes and payload shapes and says which stream a bad frame was for, so the
//! caller can reset that stream (or drop the connection when the stream cannot be told).

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::{Value, json};

/// `type u8` + `stream u32`.
pub(crate) const HEADER_LEN: usize = 5;
/// The largest `DATA` payload either side may send (a WebSocket fragment's flag byte included).
pub(crate) const MAX_DATA_PAYLOAD: usize = 64 * 1024;
/// The largest JSON payload (`OPEN`, `HEAD`, `RESET`).
pub(crate) const MAX_JSON_PAYLOAD: usize = 256 * 1024;
/// The largest tunnel WebSocket message (one frame).
pub(crate) const MAX_TUNNEL_MESSAGE: usize = 1024 * 1024;
/// The `DATA` bytes either side may send on a new stream before the other grants more.
pub(crate) const INITIAL_WINDOW: u32 = 256 * 1024;
/// The largest relayed WebSocket message, once its fragments are put together.
pub(crate) const MAX_WEBSOCKET_MESSAGE: usize = 8 * 1024 * 1024;
/// The longest close reason a websocket `END` carries, in bytes (a close frame's 125 bytes
/// minus the code).
pub(crate) const MAX_CLOSE_REASON: usize = 123;

const OPEN: u8 = 1;
const HEAD: u8 = 2;
const DATA: u8 = 3;
const END: u8 = 4;
const RESET: u8 = 5;
const WINDOW: u8 = 6;
const PING: u8 = 7;
const PONG: u8 = 8;

/// The first byte of a WebSocket stream's `DATA` payload: `FIN | opcode`, the opcode on a
/// message's first fragment only (0 on the following ones), `FIN` on its last.
pub(crate) mod opcode {
    pub(crate) const FIN: u8 = 0x80;
    /// The bits an opcode may use; the three in between are always 0.
    pub(crate) const MASK: u8 = 0x0f;
    pub(crate) const CONTINUATION: u8 = 0;
    pub(crate) const TEXT: u8 = 1;
    pub(crate) const BINARY: u8 = 2;
    pub(crate) const PING: u8 = 9;
    pub(crate) const PONG: u8 = 10;
}

/// What a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StreamKind {
    Http,
    Websocket,
}

impl StreamKind {
    fn as_str(self) -> &'static str {
        match self {
            StreamKind::Http => "http",
            StreamKind::Websocket => "websocket",
        }
    }
}

/// `OPEN`: what Kandan asks the runner to connect to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Open {
    pub kind: StreamKind,
    pub port: u16,
    pub method: String,
    /// Origin-form, without the query.
    pub path: String,
    /// Without the `?`.
    #[serde(default)]
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
}

/// `HEAD`: `status` and `headers` for http, `protocol` for websocket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct Head {
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default)]
    pub protocol: Option<String>,
}

/// `RESET`: why a stream was abandoned.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Reset {
    pub code: String,
    #[serde(default)]
    pub message: String,
}

impl Reset {
    pub(crate) fn new(code: &str, message: impl Into<String>) -> Reset {
        Reset {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

/// A websocket `END`'s close code and reason (an empty `END` is `None`: 1005, no status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CloseStatus {
    pub code: u16,
    /// At most [`MAX_CLOSE_REASON`] bytes.
    pub reason: String,
}

impl CloseStatus {
    /// `reason` is cut to [`MAX_CLOSE_REASON`] bytes at a character boundary.
    pub(crate) fn new(code: u16, reason: &str) -> CloseStatus {
        let mut end = reason.len().min(MAX_CLOSE_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        CloseStatus {
            code,
            reason: reason[..end].to_owned(),
        }
    }
}

/// One tunnel frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    Open {
        stream: u32,
        open: Open,
    },
    Head {
        stream: u32,
        head: Head,
    },
    Data {
        stream: u32,
        data: Bytes,
    },
    /// `close` only on websocket streams.
    End {
        stream: u32,
        close: Option<CloseStatus>,
    },
    Reset {
        stream: u32,
        reset: Reset,
    },
    Window {
        stream: u32,
        increment: u32,
    },
    Ping {
        stream: u32,
        payload: [u8; 8],
    },
    Pong {
        stream: u32,
        payload: [u8; 8],
    },
}

/// Why a WebSocket message is not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("a frame of {0} bytes is shorter than the 5-byte header")]
    TooShort(usize),
    #[error("unknown frame type {kind} on stream {stream}")]
    UnknownType { kind: u8, stream: u32 },
    #[error("a {name} payload of {len} bytes on stream {stream} is over the {max}-byte limit")]
    Oversized {
        name: &'static str,
        stream: u32,
        len: usize,
        max: usize,
    },
    #[error("bad {name} payload on stream {stream}: {problem}")]
    BadPayload {
        name: &'static str,
        stream: u32,
        problem: String,
    },
}

impl DecodeError {
    /// The stream the bad frame named, if its header was readable.
    pub(crate) fn stream(&self) -> Option<u32> {
        match self {
            DecodeError::TooShort(_) => None,
            DecodeError::UnknownType { stream, .. }
            | DecodeError::Oversized { stream, .. }
            | DecodeError::BadPayload { stream, .. } => Some(*stream),
        }
    }

    /// Whether the bad frame was a `RESET`: its stream is abandoned all the same, and a `RESET`
    /// is never answered with a `RESET`.
    pub(crate) fn is_reset(&self) -> bool {
        matches!(
            self,
            DecodeError::Oversized { name: "RESET", .. }
                | DecodeError::BadPayload { name: "RESET", .. }
        )
    }
}

impl Frame {
    pub(crate) fn stream(&self) -> u32 {
        match self {
            Frame::Open { stream, .. }
            | Frame::Head { stream, .. }
            | Frame::Data { stream, .. }
            | Frame::End { stream, .. }
            | Frame::Reset { stream, .. }
            | Frame::Window { stream, .. }
            | Frame::Ping { stream, .. }
            | Frame::Pong { stream, .. } => *stream,
        }
    }

    /// The frame's name in §6.4, for logs and errors.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Frame::Open { .. } => "OPEN",
            Frame::Head { .. } => "HEAD",
            Frame::Data { .. } => "DATA",
            Frame::End { .. } => "END",
            Frame::Reset { .. } => "RESET",
            Frame::Window { .. } => "WINDOW",
            Frame::Ping { .. } => "PING",
            Frame::Pong { .. } => "PONG",
        }
    }

    pub(crate) fn encode(&self) -> Bytes {
        let (kind, payload): (u8, Bytes) = match self {
            Frame::Open { open, .. } => (OPEN, json_bytes(&open_json(open))),
            Frame::Head { head, .. } => (HEAD, json_bytes(&head_json(head))),
            Frame::Data { data, .. } => (DATA, data.clone()),
            Frame::End { close, .. } => (END, close.as_ref().map_or_else(Bytes::new, close_bytes)),
            Frame::Reset { reset, .. } => (
                RESET,
                json_bytes(&json!({ "code": reset.code, "message": reset.message })),
            ),
            Frame::Window { increment, .. } => {
                (WINDOW, Bytes::copy_from_slice(&increment.to_be_bytes()))
            }
            Frame::Ping { payload, .. } => (PING, Bytes::copy_from_slice(payload)),
            Frame::Pong { payload, .. } => (PONG, Bytes::copy_from_slice(payload)),
        };
        let mut out = BytesMut::with_capacity(HEADER_LEN + payload.len());
        out.put_u8(kind);
        out.put_u32(self.stream());
        out.put_slice(&payload);
        out.freeze()
    }

    pub(crate) fn decode(message: &Bytes) -> Result<Frame, DecodeError> {
        let Some((&kind, rest)) = message.split_first() else {
            return Err(DecodeError::TooShort(0));
        };
        let Some(stream) = rest
            .get(..4)
            .and_then(|bytes| <[u8; 4]>::try_from(bytes).ok())
            .map(u32::from_be_bytes)
        else {
            return Err(DecodeError::TooShort(message.len()));
        };
        let payload = message.slice(HEADER_LEN..);
        let decoder = PayloadDecoder {
            stream,
            payload: &payload,
        };
        match kind {
            OPEN => Ok(Frame::Open {
                stream,
                open: decoder.json("OPEN")?,
            }),
            HEAD => Ok(Frame::Head {
                stream,
                head: decoder.json("HEAD")?,
            }),
            DATA => {
                decoder.at_most("DATA", MAX_DATA_PAYLOAD)?;
                Ok(Frame::Data {
                    stream,
                    data: payload.clone(),
                })
            }
            END => Ok(Frame::End {
                stream,
                close: decoder.close()?,
            }),
            RESET => Ok(Frame::Reset {
                stream,
                reset: decoder.json("RESET")?,
            }),
            WINDOW => Ok(Frame::Window {
                stream,
                increment: u32::from_be_bytes(decoder.exactly("WINDOW")?),
            }),
            PING => Ok(Frame::Ping {
                stream,
                payload: decoder.exactly("PING")?,
            }),
            PONG => Ok(Frame::Pong {
                stream,
                payload: decoder.exactly("PONG")?,
            }),
            kind => Err(DecodeError::UnknownType { kind, stream }),
        }
    }
}

/// Reads one frame's payload, turning every problem into a [`DecodeError`] for its stream.
struct PayloadDecoder<'a> {
    stream: u32,
    payload: &'a Bytes,
}

impl PayloadDecoder<'_> {
    fn bad(&self, name: &'static str, problem: impl Into<String>) -> DecodeError {
        DecodeError::BadPayload {
            name,
            stream: self.stream,
            problem: problem.into(),
        }
    }

    fn at_most(&self, name: &'static str, max: usize) -> Result<(), DecodeError> {
        match self.payload.len() {
            len if len > max => Err(DecodeError::Oversized {
                name,
                stream: self.stream,
                len,
                max,
            }),
            _ => Ok(()),
        }
    }

    fn exactly<const N: usize>(&self, name: &'static str) -> Result<[u8; N], DecodeError> {
        <[u8; N]>::try_from(self.payload.as_ref()).map_err(|_| {
            let len = self.payload.len();
            self.bad(name, format!("expected {N} bytes, got {len}"))
        })
    }

    /// An `END` payload: nothing, or a close code and a short UTF-8 reason.
    fn close(&self) -> Result<Option<CloseStatus>, DecodeError> {
        let Some((code, reason)) = self.payload.split_first_chunk::<2>() else {
            return match self.payload.len() {
                0 => Ok(None),
                _ => Err(self.bad("END", "a close code is 2 bytes")),
            };
        };
        if reason.len() > MAX_CLOSE_REASON {
            let len = reason.len();
            let problem = format!("a close reason of {len} bytes is over {MAX_CLOSE_REASON}");
            return Err(self.bad("END", problem));
        }
        let reason = std::str::from_utf8(reason)
            .map_err(|_| self.bad("END", "the close reason is not UTF-8"))?;
        Ok(Some(CloseStatus {
            code: u16::from_be_bytes(*code),
            reason: reason.to_owned(),
        }))
    }

    fn json<T: serde::de::DeserializeOwned>(&self, name: &'static str) -> Result<T, DecodeError> {
        self.at_most(name, MAX_JSON_PAYLOAD)?;
        serde_json::from_slice(self.payload).map_err(|err| self.bad(name, err.to_string()))
    }
}

fn open_json(open: &Open) -> Value {
    let mut value = json!({
        "kind": open.kind.as_str(),
        "port": open.port,
        "method": open.method,
        "path": open.path,
        "headers": open.headers,
    });
    if let Some(query) = &open.query {
        value["query"] = json!(query);
    }
    value
}

fn head_json(head: &Head) -> Value {
    let mut value = json!({});
    if let Some(status) = head.status {
        value["status"] = json!(status);
        value["headers"] = json!(head.headers);
    }
    if let Some(protocol) = &head.protocol {
        value["protocol"] = json!(protocol);
    }
    value
}

fn close_bytes(close: &CloseStatus) -> Bytes {
    let close = CloseStatus::new(close.code, &close.reason);
    let mut out = BytesMut::with_capacity(2 + close.reason.len());
    out.put_u16(close.code);
    out.put_slice(close.reason.as_bytes());
    out.freeze()
}

fn json_bytes(value: &Value) -> Bytes {
    Bytes::from(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(frame: Frame) {
        let encoded = frame.encode();
        assert_eq!(encoded[0], type_byte(&frame));
        assert_eq!(&encoded[1..5], &frame.stream().to_be_bytes());
        assert_eq!(Frame::decode(&encoded), Ok(frame));
    }

    fn type_byte(frame: &Frame) -> u8 {
        match frame {
            Frame::Open { .. } => 1,
            Frame::Head { .. } => 2,
            Frame::Data { .. } => 3,
            Frame::End { .. } => 4,
            Frame::Reset { .. } => 5,
            Frame::Window { .. } => 6,
            Frame::Ping { .. } => 7,
            Frame::Pong { .. } => 8,
        }
    }

    fn raw(kind: u8, stream: u32, payload: &[u8]) -> Bytes {
        let mut out = vec![kind];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        Bytes::from(out)
    }

    #[test]
    fn every_frame_type_round_trips() {
        let open = Open {
            kind: StreamKind::Http,
            port: 5173,
            method: "POST".into(),
            path: "/api/x".into(),
            query: Some("a=1&b=2".into()),
            headers: vec![("content-type".into(), "text/plain".into())],
        };
        round_trip(Frame::Open { stream: 1, open });
        let websocket = Open {
            kind: StreamKind::Websocket,
            port: 1,
            method: "GET".into(),
            path: "/".into(),
            query: None,
            headers: Vec::new(),
        };
        round_trip(Frame::Open {
            stream: 3,
            open: websocket,
        });
        let head = Head {
            status: Some(404),
            headers: vec![("x-a".into(), "1".into()), ("x-a".into(), "2".into())],
            protocol: None,
        };
        round_trip(Frame::Head { stream: 5, head });
        let upgraded = Head {
            protocol: Some("chat".into()),
            ..Head::default()
        };
        round_trip(Frame::Head {
            stream: 5,
            head: upgraded,
        });
        round_trip(Frame::Data {
            stream: 7,
            data: Bytes::from_static(b"\x00\xffbody"),
        });
        round_trip(Frame::Data {
            stream: 7,
            data: Bytes::from(vec![7; MAX_DATA_PAYLOAD]),
        });
        round_trip(Frame::End {
            stream: u32::MAX,
            close: None,
        });
        round_trip(Frame::End {
            stream: 3,
            close: Some(CloseStatus::new(4001, "bye")),
        });
        round_trip(Frame::End {
            stream: 3,
            close: Some(CloseStatus::new(1000, &"é".repeat(61))),
        });
        round_trip(Frame::Reset {
            stream: 9,
            reset: Reset::new("connect_failed", "refused"),
        });
        round_trip(Frame::Window {
            stream: 9,
            increment: 0x0102_0304,
        });
        round_trip(Frame::Ping {
            stream: 0,
            payload: *b"12345678",
        });
        round_trip(Frame::Pong {
            stream: 0,
            payload: [0xff; 8],
        });
    }

    #[test]
    fn the_wire_format_is_the_documented_one() {
        let window = Frame::Window {
            stream: 0x0a0b_0c0d,
            increment: 65536,
        };
        assert_eq!(
            window.encode().as_ref(),
            &[6, 0x0a, 0x0b, 0x0c, 0x0d, 0, 1, 0, 0]
        );
        let open = Frame::Open {
            stream: 1,
            open: Open {
                kind: StreamKind::Websocket,
                port: 80,
                method: "GET".into(),
                path: "/ws".into(),
                query: None,
                headers: vec![("origin".into(), "http://x".into())],
            },
        };
        let json: Value = serde_json::from_slice(&open.encode()[5..]).expect("json");
        assert_eq!(
            json,
            json!({"kind": "websocket", "port": 80, "method": "GET", "path": "/ws",
                   "headers": [["origin", "http://x"]]})
        );
        // The runner's forms decode too: RESET without a message, HEAD for a websocket.
        let reset = Frame::decode(&raw(5, 3, br#"{"code":"timeout"}"#)).expect("reset");
        assert_eq!(
            reset,
            Frame::Reset {
                stream: 3,
                reset: Reset::new("timeout", "")
            }
        );
        let end = Frame::decode(&raw(4, 3, b"\x0f\xa1bye")).expect("end");
        assert_eq!(
            end,
            Frame::End {
                stream: 3,
                close: Some(CloseStatus::new(4001, "bye"))
            }
        );
        let no_reason = Frame::End {
            stream: 3,
            close: Some(CloseStatus::new(1000, "")),
        };
        assert_eq!(no_reason.encode().as_ref(), &[4, 0, 0, 0, 3, 0x03, 0xe8]);
        let head = Frame::decode(&raw(2, 3, b"{}")).expect("head");
        assert_eq!(
            head,
            Frame::Head {
                stream: 3,
                head: Head::default()
            }
        );
    }

    #[test]
    fn close_reasons_are_cut_at_a_character_boundary() {
        let long = CloseStatus::new(4000, &"é".repeat(100));
        assert_eq!(long.reason.len(), 122);
        let end = Frame::End {
            stream: 1,
            close: Some(CloseStatus {
                code: 4000,
                reason: "x".repeat(200),
            }),
        };
        assert_eq!(end.encode().len(), HEADER_LEN + 2 + MAX_CLOSE_REASON);
    }

    #[test]
    fn bad_resets_are_told_apart() {
        let bad_reset = Frame::decode(&raw(5, 1, b"{")).expect_err("bad");
        assert!(bad_reset.is_reset());
        let bad_head = Frame::decode(&raw(2, 1, b"{")).expect_err("bad");
        assert!(!bad_head.is_reset());
    }

    #[test]
    fn short_frames_cannot_name_a_stream() {
        for len in 0..HEADER_LEN {
            let message = Bytes::from(vec![3; len]);
            let err = Frame::decode(&message).expect_err("too short");
            assert_eq!(err, DecodeError::TooShort(len));
            assert_eq!(err.stream(), None);
        }
    }

    #[test]
    fn unknown_types_name_their_stream() {
        for kind in [0, 9, 255] {
            let err = Frame::decode(&raw(kind, 11, b"x")).expect_err("unknown");
            assert_eq!(err, DecodeError::UnknownType { kind, stream: 11 });
            assert_eq!(err.stream(), Some(11));
        }
    }

    #[test]
    fn oversized_payloads_are_refused() {
        let data = raw(3, 5, &vec![0; MAX_DATA_PAYLOAD + 1]);
        assert_eq!(
            Frame::decode(&data),
            Err(DecodeError::Oversized {
                name: "DATA",
                stream: 5,
                len: MAX_DATA_PAYLOAD + 1,
                max: MAX_DATA_PAYLOAD
            })
        );
        let mut huge_json = br#"{"status":200,"headers":[["x",""#.to_vec();
        huge_json.extend(vec![b'a'; MAX_JSON_PAYLOAD]);
        huge_json.extend(br#""]]}"#);
        let err = Frame::decode(&raw(2, 5, &huge_json)).expect_err("oversized");
        assert!(
            matches!(err, DecodeError::Oversized { name: "HEAD", .. }),
            "{err}"
        );
    }

    #[test]
    fn malformed_payloads_are_refused() {
        for (message, name) in [
            (raw(6, 1, &[0, 0, 1]), "WINDOW"),
            (raw(6, 1, &[0, 0, 0, 1, 0]), "WINDOW"),
            (raw(7, 0, b"1234567"), "PING"),
            (raw(8, 0, b"123456789"), "PONG"),
            (raw(4, 1, b"x"), "END"),
            (raw(4, 1, b"\x03\xe8\xff"), "END"),
            (raw(4, 1, &[&[3, 0xe8][..], &[b'a'; 124]].concat()), "END"),
            (raw(2, 1, b"not json"), "HEAD"),
            (raw(2, 1, br#"{"status":"200"}"#), "HEAD"),
            (raw(5, 1, br#"{"message":"no code"}"#), "RESET"),
            (raw(1, 1, br#"{"kind":"ftp","port":1}"#), "OPEN"),
        ] {
            let err = Frame::decode(&message).expect_err(name);
            assert!(
                matches!(&err, DecodeError::BadPayload { name: got, stream: 1 | 0, .. } if *got == name),
                "{name}: {err}"
            );
        }
    }
}
