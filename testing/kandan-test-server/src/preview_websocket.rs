//! A preview WebSocket as a websocket stream of the runner's tunnel (§6.4): `OPEN` with the
//! client's headers (its `Sec-WebSocket-Protocol` and `Origin` among them), then the upgrade is
//! completed with the runner's `HEAD` (its `protocol`, if any) or refused with 502 on `RESET`.
//!
//! Messages travel both ways as `DATA` within the windows: a flag byte `FIN | opcode`, then the
//! bytes. A client message larger than one `DATA` payload is split into fragments (opcode on the
//! first, `FIN` on the last); the runner's fragments are put back together into one client
//! message, at most 8 MiB (`RESET message_too_big` and close code 1009 beyond). `END` carries the
//! close code and reason both ways; a close the relay itself causes is 1011 towards the client.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};

use crate::preview::{self, PreviewTarget};
use crate::server::ServerCore;
use crate::tunnel::{OpenedStream, PROTOCOL_ERROR_CODE, StreamEvent};
use crate::tunnel_codec::{
    CloseStatus, MAX_DATA_PAYLOAD, MAX_WEBSOCKET_MESSAGE, StreamKind, opcode,
};
use crate::tunnel_connection::is_message_too_big;

/// How long a closing side waits for the other's `END` or close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// "No status": what an empty `END` stands for; never sent in a close frame.
const CLOSE_NO_STATUS: u16 = 1005;
const CLOSE_TOO_BIG: u16 = 1009;
const CLOSE_ERROR: u16 = 1011;
/// A WebSocket control frame's payload limit.
const MAX_CONTROL_PAYLOAD: usize = 125;

pub(crate) async fn proxy(core: &ServerCore, target: PreviewTarget, request: Request) -> Response {
    let (mut parts, _body) = request.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let stream = preview::open_stream(
        core,
        target,
        StreamKind::Websocket,
        &parts.method,
        &parts.headers,
    );
    let mut stream = match stream {
        Ok(stream) => stream,
        Err(refusal) => return refusal.into_response(),
    };
    let head = match preview::await_head(&mut stream.receiver).await {
        Ok(head) => head,
        Err(refusal) => return refusal.into_response(),
    };
    // tungstenite refuses longer client messages; `relay` turns that into 1009.
    let mut upgrade = upgrade.max_message_size(MAX_WEBSOCKET_MESSAGE);
    if let Some(protocol) = head.protocol {
        // Selected only if the client offered it, as the WebSocket handshake requires.
        upgrade = upgrade.protocols([protocol]);
    }
    upgrade
        .on_failed_upgrade(|err| tracing::debug!(%err, "preview WebSocket upgrade failed"))
        .on_upgrade(move |socket| relay(socket, stream))
}

/// How the relay ended.
enum Ending {
    /// The client closed: `END` was sent; wait for the runner's.
    ClientClosed,
    /// The runner's side is over (or was never going to answer): just let go.
    Done,
}

async fn relay(mut socket: WebSocket, stream: OpenedStream) {
    let OpenedStream {
        mut sender,
        mut receiver,
        guard,
    } = stream;
    // The client message being sent, a fragment at a time as the runner's window allows; the
    // client is not read meanwhile.
    let mut outgoing: Option<Fragments> = None;
    let mut incoming = Reassembly::default();
    let mut can_send = true;
    let ending = loop {
        let need = outgoing.as_ref().map_or(0, Fragments::next_len);
        tokio::select! {
            message = socket.recv(), if outgoing.is_none() => match message {
                Some(Ok(Message::Close(frame))) => {
                    let close = frame.map(|frame| CloseStatus::new(frame.code, &frame.reason));
                    // An error means the stream is already over.
                    let _ = sender.end_with(close);
                    break Ending::ClientClosed;
                }
                Some(Ok(message)) => outgoing = Fragments::of(message),
                Some(Err(err)) if is_message_too_big(&err) => {
                    let message = format!("a client message over {MAX_WEBSOCKET_MESSAGE} bytes");
                    sender.reset("message_too_big", message);
                    close(&mut socket, close_frame(CLOSE_TOO_BIG, "message too big")).await;
                    break Ending::Done;
                }
                Some(Err(_)) | None => {
                    sender.reset("cancelled", "the client's WebSocket dropped");
                    break Ending::Done;
                }
            },
            room = sender.wait_window(need), if outgoing.is_some() && can_send => {
                let sent = room.and_then(|_| match outgoing.as_mut() {
                    Some(fragments) => sender.send_frame(fragments.next_fragment()),
                    None => Ok(()),
                });
                if outgoing.as_ref().is_some_and(Fragments::is_done) {
                    outgoing = None;
                }
                // The stream is gone; the receiver is about to say why.
                can_send = sent.is_ok();
            }
            event = receiver.next() => {
                let frame = match event {
                    StreamEvent::Data(data) => {
                        let len = data.len();
                        match incoming.accept(data) {
                            // Buffered: consumed as far as the window goes.
                            Ok(None) => {
                                receiver.consumed(len);
                                continue;
                            }
                            Ok(Some(message)) => {
                                if socket.send(message).await.is_err() {
                                    sender.reset("cancelled", "the client's WebSocket dropped");
                                    break Ending::Done;
                                }
                                receiver.consumed(len);
                                continue;
                            }
                            Err(Refused::TooBig) => {
                                let message = format!(
                                    "a WebSocket message over {MAX_WEBSOCKET_MESSAGE} bytes"
                                );
                                receiver.reset("message_too_big", message);
                                close_frame(CLOSE_TOO_BIG, "message too big")
                            }
                            Err(Refused::Protocol(problem)) => {
                                tracing::warn!(%problem, "a bad websocket DATA from the runner");
                                receiver.reset(PROTOCOL_ERROR_CODE, problem);
                                close_frame(CLOSE_ERROR, "bad message from the runner")
                            }
                        }
                    }
                    StreamEvent::End(close) => {
                        let frame = client_close(close);
                        // Kandan's END answers with the same status, as a close frame would.
                        let echo = frame
                            .as_ref()
                            .map(|frame| CloseStatus::new(frame.code, &frame.reason));
                        let _ = sender.end_with(echo);
                        frame
                    }
                    StreamEvent::Reset(_) => close_frame(CLOSE_ERROR, "the runner reset the stream"),
                    StreamEvent::Violation(_) | StreamEvent::Head(_) => {
                        close_frame(CLOSE_ERROR, "the runner broke the tunnel protocol")
                    }
                    StreamEvent::TunnelGone => close_frame(CLOSE_ERROR, "the runner disconnected"),
                };
                close(&mut socket, frame).await;
                break Ending::Done;
            }
        }
    };
    if let Ending::ClientClosed = ending {
        // tungstenite queued the reply to the client's close; it goes out on a flush.
        let _ = futures_util::SinkExt::flush(&mut socket).await;
        let runner_done = async { while let StreamEvent::Data(_) = receiver.next().await {} };
        // Past the wait, the guard resets the stream.
        let _ = tokio::time::timeout(CLOSE_WAIT, runner_done).await;
    }
    drop(guard);
}

fn close_frame(code: u16, reason: &'static str) -> Option<CloseFrame> {
    Some(CloseFrame {
        code,
        reason: reason.into(),
    })
}

/// The close frame for a runner's `END`: none for an empty one (or 1005), and 1011 for a code
/// that may not appear in a close frame (1006 "abnormal", 1015 "TLS", reserved or out of range).
fn client_close(close: Option<CloseStatus>) -> Option<CloseFrame> {
    let close = close.filter(|close| close.code != CLOSE_NO_STATUS)?;
    let sendable = matches!(close.code, 1000..=1003 | 1007..=1014 | 3000..=4999);
    Some(CloseFrame {
        code: if sendable { close.code } else { CLOSE_ERROR },
        reason: close.reason.into(),
    })
}

/// Sends a close frame (`None`: one without a status) and waits (bounded) for the client's,
/// completing the close handshake.
async fn close(socket: &mut WebSocket, frame: Option<CloseFrame>) {
    if socket.send(Message::Close(frame)).await.is_err() {
        return;
    }
    let drain = async { while let Some(Ok(_)) = socket.recv().await {} };
    let _ = tokio::time::timeout(CLOSE_WAIT, drain).await;
}

/// A client message on its way to the runner as `DATA` payloads of at most
/// [`MAX_DATA_PAYLOAD`] bytes, flag byte included.
#[derive(Debug)]
struct Fragments {
    opcode: u8,
    rest: Bytes,
    started: bool,
    done: bool,
}

impl Fragments {
    /// `None` for a close frame, which travels as `END`.
    fn of(message: Message) -> Option<Fragments> {
        let (opcode, rest) = match message {
            Message::Text(text) => (opcode::TEXT, Bytes::from(text)),
            Message::Binary(bytes) => (opcode::BINARY, bytes),
            Message::Ping(bytes) => (opcode::PING, bytes),
            Message::Pong(bytes) => (opcode::PONG, bytes),
            Message::Close(_) => return None,
        };
        Some(Fragments {
            opcode,
            rest,
            started: false,
            done: false,
        })
    }

    /// The length of the next payload: what the window must have room for.
    fn next_len(&self) -> u64 {
        (self.rest.len() + 1).min(MAX_DATA_PAYLOAD) as u64
    }

    /// The next payload: the flag byte, then as many bytes as fit.
    fn next_fragment(&mut self) -> Bytes {
        let bytes = self
            .rest
            .split_to(self.rest.len().min(MAX_DATA_PAYLOAD - 1));
        let mut flags = if self.started {
            opcode::CONTINUATION
        } else {
            self.opcode
        };
        self.started = true;
        if self.rest.is_empty() {
            flags |= opcode::FIN;
            self.done = true;
        }
        let mut payload = BytesMut::with_capacity(1 + bytes.len());
        payload.put_u8(flags);
        payload.put_slice(&bytes);
        payload.freeze()
    }

    /// Whether the last fragment was taken.
    fn is_done(&self) -> bool {
        self.done
    }
}

/// Why a runner `DATA` payload cannot be relayed.
#[derive(Debug, PartialEq, Eq)]
enum Refused {
    /// It breaks §6.4's framing: `protocol_error`.
    Protocol(String),
    /// The message it belongs to is over [`MAX_WEBSOCKET_MESSAGE`]: `message_too_big`.
    TooBig,
}

/// Puts the runner's fragments back together. As in WebSocket framing, a ping or pong (never
/// fragmented) may come between the fragments of a text or binary message.
#[derive(Debug, Default)]
struct Reassembly {
    /// The opcode and bytes so far of a message whose last fragment has not come yet.
    partial: Option<(u8, BytesMut)>,
}

impl Reassembly {
    /// Takes one `DATA` payload: `Ok(Some(message))` once a message is whole, `Ok(None)` while
    /// it is not.
    fn accept(&mut self, mut data: Bytes) -> Result<Option<Message>, Refused> {
        if data.is_empty() {
            return Err(Refused::Protocol(
                "an empty websocket DATA (no flag byte)".into(),
            ));
        }
        let flags = data.split_to(1)[0];
        if flags & !(opcode::FIN | opcode::MASK) != 0 {
            return Err(Refused::Protocol(format!(
                "the websocket flag byte {flags:#04x} has reserved bits set"
            )));
        }
        let fin = flags & opcode::FIN != 0;
        match flags & opcode::MASK {
            code @ (opcode::PING | opcode::PONG) => {
                if !fin {
                    return Err(Refused::Protocol("a fragmented ping or pong".into()));
                }
                if data.len() > MAX_CONTROL_PAYLOAD {
                    return Err(Refused::Protocol(format!(
                        "a ping or pong of {} bytes (at most {MAX_CONTROL_PAYLOAD})",
                        data.len()
                    )));
                }
                Ok(Some(match code {
                    opcode::PING => Message::Ping(data),
                    _ => Message::Pong(data),
                }))
            }
            code @ (opcode::TEXT | opcode::BINARY) => {
                if self.partial.is_some() {
                    return Err(Refused::Protocol(
                        "a new message before the last fragment of the previous one".into(),
                    ));
                }
                if fin {
                    return message(code, data).map(Some);
                }
                self.partial = Some((code, BytesMut::from(data)));
                Ok(None)
            }
            opcode::CONTINUATION => {
                let Some((code, mut bytes)) = self.partial.take() else {
                    return Err(Refused::Protocol(
                        "a continuation fragment with no message to continue".into(),
                    ));
                };
                if bytes.len() + data.len() > MAX_WEBSOCKET_MESSAGE {
                    return Err(Refused::TooBig);
                }
                bytes.extend_from_slice(&data);
                if fin {
                    return message(code, bytes.freeze()).map(Some);
                }
                self.partial = Some((code, bytes));
                Ok(None)
            }
            other => Err(Refused::Protocol(format!(
                "unknown websocket opcode {other}"
            ))),
        }
    }
}

/// A whole text or binary message for the client.
fn message(code: u8, bytes: Bytes) -> Result<Message, Refused> {
    match code {
        opcode::TEXT => Utf8Bytes::try_from(bytes)
            .map(Message::Text)
            .map_err(|_| Refused::Protocol("a text message that is not UTF-8".into())),
        _ => Ok(Message::Binary(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fragments(message: Message) -> Vec<Bytes> {
        let mut fragments = Fragments::of(message).expect("not a close");
        let mut out = Vec::new();
        while !fragments.is_done() {
            let len = fragments.next_len();
            let fragment = fragments.next_fragment();
            assert_eq!(fragment.len() as u64, len);
            out.push(fragment);
        }
        out
    }

    fn data(flags: u8, bytes: &[u8]) -> Bytes {
        let mut payload = vec![flags];
        payload.extend_from_slice(bytes);
        Bytes::from(payload)
    }

    #[test]
    fn small_messages_are_one_final_fragment() {
        for (message, flags) in [
            (Message::Text("héllo".into()), 0x81),
            (Message::Binary(Bytes::from_static(&[0, 1, 2])), 0x82),
            (Message::Ping(Bytes::from_static(b"p")), 0x89),
            (Message::Pong(Bytes::new()), 0x8a),
            (Message::Text("".into()), 0x81),
        ] {
            let payloads = fragments(message.clone());
            assert_eq!(payloads.len(), 1, "{message:?}");
            assert_eq!(payloads[0][0], flags);
            let mut reassembly = Reassembly::default();
            assert_eq!(reassembly.accept(payloads[0].clone()), Ok(Some(message)));
        }
        assert!(Fragments::of(Message::Close(None)).is_none());
    }

    #[test]
    fn large_messages_are_split_and_put_back_together() {
        let bytes: Vec<u8> = (0..300 * 1024).map(|i| (i % 251) as u8).collect();
        let payloads = fragments(Message::Binary(bytes.clone().into()));
        let flags: Vec<u8> = payloads.iter().map(|payload| payload[0]).collect();
        assert_eq!(flags, vec![0x02, 0x00, 0x00, 0x00, 0x80]);
        assert!(payloads.iter().all(|p| p.len() <= MAX_DATA_PAYLOAD));
        assert_eq!(payloads[0].len(), MAX_DATA_PAYLOAD);
        let mut reassembly = Reassembly::default();
        let (last, rest) = payloads.split_last().expect("fragments");
        for payload in rest {
            assert_eq!(reassembly.accept(payload.clone()), Ok(None));
        }
        // A ping may come between fragments.
        assert_eq!(
            reassembly.accept(data(0x89, b"between")),
            Ok(Some(Message::Ping(Bytes::from_static(b"between"))))
        );
        assert_eq!(
            reassembly.accept(last.clone()),
            Ok(Some(Message::Binary(bytes.into())))
        );
        // A message of exactly one payload plus one byte takes two fragments.
        let text = "x".repeat(MAX_DATA_PAYLOAD);
        let payloads = fragments(Message::Text(text.clone().into()));
        assert_eq!(
            payloads.iter().map(|p| (p[0], p.len())).collect::<Vec<_>>(),
            vec![(0x01, MAX_DATA_PAYLOAD), (0x80, 2)]
        );
        let mut reassembly = Reassembly::default();
        assert_eq!(reassembly.accept(payloads[0].clone()), Ok(None));
        assert_eq!(
            reassembly.accept(payloads[1].clone()),
            Ok(Some(Message::Text(text.into())))
        );
    }

    #[test]
    fn bad_fragments_are_refused() {
        let refused = |payloads: &[Bytes]| {
            let mut reassembly = Reassembly::default();
            let (last, rest) = payloads.split_last().expect("payloads");
            for payload in rest {
                assert_eq!(reassembly.accept(payload.clone()), Ok(None), "{payload:?}");
            }
            match reassembly.accept(last.clone()) {
                Err(Refused::Protocol(problem)) => problem,
                other => panic!("expected a protocol error, got {other:?}"),
            }
        };
        assert!(refused(&[Bytes::new()]).contains("no flag byte"));
        assert!(refused(&[data(0x80, b"x")]).contains("no message to continue"));
        assert!(refused(&[data(0x01, b"a"), data(0x81, b"b")]).contains("a new message"));
        assert!(refused(&[data(0x09, b"p")]).contains("fragmented ping"));
        assert!(refused(&[data(0x89, &[0; 126])]).contains("126 bytes"));
        assert!(refused(&[data(0x83, b"x")]).contains("opcode 3"));
        assert!(refused(&[data(0xc1, b"x")]).contains("reserved bits"));
        assert!(refused(&[data(0x01, b"\xe2\x82"), data(0x80, b"\xff")]).contains("UTF-8"));
        // A character split between fragments is fine.
        let mut reassembly = Reassembly::default();
        assert_eq!(reassembly.accept(data(0x01, b"\xe2\x82")), Ok(None));
        assert_eq!(
            reassembly.accept(data(0x80, b"\xac")),
            Ok(Some(Message::Text("€".into())))
        );
    }

    #[test]
    fn messages_over_8_mib_are_too_big() {
        let mut reassembly = Reassembly::default();
        let chunk = vec![0u8; MAX_DATA_PAYLOAD - 1];
        assert_eq!(reassembly.accept(data(0x02, &chunk)), Ok(None));
        let mut total = chunk.len();
        while total + chunk.len() <= MAX_WEBSOCKET_MESSAGE {
            assert_eq!(reassembly.accept(data(0x00, &chunk)), Ok(None));
            total += chunk.len();
        }
        let exact = vec![0u8; MAX_WEBSOCKET_MESSAGE - total];
        let mut full = Reassembly {
            partial: reassembly.partial.clone(),
        };
        assert!(matches!(
            full.accept(data(0x80, &exact)),
            Ok(Some(Message::Binary(bytes))) if bytes.len() == MAX_WEBSOCKET_MESSAGE
        ));
        let over = vec![0u8; exact.len() + 1];
        assert_eq!(reassembly.accept(data(0x00, &over)), Err(Refused::TooBig));
    }

    #[test]
    fn end_codes_become_close_frames() {
        let code = |close: Option<CloseStatus>| client_close(close).map(|frame| frame.code);
        assert_eq!(code(None), None);
        assert_eq!(code(Some(CloseStatus::new(1005, ""))), None);
        for (sent, shown) in [
            (1000, 1000),
            (1001, 1001),
            (1009, 1009),
            (1014, 1014),
            (3000, 3000),
            (4001, 4001),
            (1006, 1011),
            (1015, 1011),
            (1004, 1011),
            (999, 1011),
            (2000, 1011),
            (5000, 1011),
        ] {
            assert_eq!(
                code(Some(CloseStatus::new(sent, "r"))),
                Some(shown),
                "{sent}"
            );
        }
        let bye = client_close(Some(CloseStatus::new(4001, "bye"))).expect("frame");
        assert_eq!(bye.reason.as_str(), "bye");
    }
}
