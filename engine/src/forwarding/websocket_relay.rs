//! `forward_websocket_open/send/close` (protocol §6.2): one local WebSocket per
//! `socketId`, relayed over runner-topic events. The runner answers with
//! `forward:websocket_opened`, then `forward:websocket_message` for every message from
//! the local server, and `forward:websocket_closed` when either side closes.
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::{guard, local_ws};
use crate::protocol::controls::{
    ForwardWebsocketClose, ForwardWebsocketOpen, ForwardWebsocketSend, WebsocketOpcode,
};

pub const OPENED: &str = "forward:websocket_opened";
pub const MESSAGE: &str = "forward:websocket_message";
pub const CLOSED: &str = "forward:websocket_closed";
/// At most this many relayed sockets at once.
pub const MAX_SOCKETS: usize = 64;

/// Where relay events go (the runner pushes them to Kandan in order).
pub type Emit = Arc<dyn Fn(&'static str, serde_json::Value) + Send + Sync>;

#[derive(Clone, Default)]
pub struct WebSocketRelays {
    sockets: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Message>>>>,
}

impl WebSocketRelays {
    pub fn open(&self, emit: &Emit, allowed: &BTreeSet<u16>, control: ForwardWebsocketOpen) {
        let socket_id = control.socket_id.clone();
        let refuse = |error: String| {
            emit(
                OPENED,
                json!({"socketId": socket_id, "ok": false, "error": error}),
            );
        };
        if self.len() >= MAX_SOCKETS {
            return refuse(format!("too_many_sockets: at most {MAX_SOCKETS} at once"));
        }
        let headers = match guard::header_pairs(control.headers.as_ref()) {
            Ok(headers) => headers,
            Err(error) => return refuse(error.to_string()),
        };
        let target = match guard::admit(
            allowed,
            control.port,
            &control.path,
            control.query_string.as_deref(),
            headers,
        ) {
            Ok(target) => target,
            Err(error) => return refuse(error.to_string()),
        };
        let (sender, receiver) = mpsc::unbounded_channel();
        if let Ok(mut sockets) = self.sockets.lock() {
            sockets.insert(socket_id.clone(), sender);
        }
        let relays = self.clone();
        let emit = emit.clone();
        tokio::spawn(async move {
            relay(&emit, &socket_id, target, receiver).await;
            relays.forget(&socket_id);
        });
    }

    pub fn send(&self, emit: &Emit, control: ForwardWebsocketSend) {
        let message = BASE64
            .decode(&control.body_base64)
            .map_err(|error| format!("bodyBase64 is not base64: {error}"))
            .and_then(|bytes| message_for(control.opcode, bytes));
        let sender = self
            .sockets
            .lock()
            .ok()
            .and_then(|sockets| sockets.get(&control.socket_id).cloned());
        match (sender, message) {
            (Some(sender), Ok(message)) => {
                let _ = sender.send(message);
            }
            (None, _) => emit(
                CLOSED,
                json!({"socketId": control.socket_id, "reason": "unknown socket"}),
            ),
            (Some(_), Err(error)) => emit(
                CLOSED,
                json!({"socketId": control.socket_id, "reason": error}),
            ),
        }
    }

    pub fn close(&self, control: ForwardWebsocketClose) {
        let sender = self
            .sockets
            .lock()
            .ok()
            .and_then(|mut sockets| sockets.remove(&control.socket_id));
        if let Some(sender) = sender {
            let _ = sender.send(Message::Close(None));
        }
    }

    /// Closes every relayed socket (the runner is stopping).
    pub fn close_all(&self) {
        if let Ok(mut sockets) = self.sockets.lock() {
            for (_, sender) in sockets.drain() {
                let _ = sender.send(Message::Close(None));
            }
        }
    }

    fn len(&self) -> usize {
        self.sockets
            .lock()
            .map(|sockets| sockets.len())
            .unwrap_or(0)
    }

    fn forget(&self, socket_id: &str) {
        if let Ok(mut sockets) = self.sockets.lock() {
            sockets.remove(socket_id);
        }
    }
}

async fn relay(
    emit: &Emit,
    socket_id: &str,
    target: guard::LocalTarget,
    mut outgoing: mpsc::UnboundedReceiver<Message>,
) {
    let (socket, protocol) = match local_ws::connect(&target).await {
        Ok(connected) => connected,
        Err(error) => {
            emit(
                OPENED,
                json!({"socketId": socket_id, "ok": false, "error": format!("connect_failed: {error}")}),
            );
            return;
        }
    };
    emit(
        OPENED,
        json!({"socketId": socket_id, "ok": true, "protocol": protocol}),
    );
    let (mut sink, mut stream) = socket.split();
    let closed = loop {
        tokio::select! {
            outgoing = outgoing.recv() => match outgoing {
                Some(Message::Close(_)) | None => {
                    let _ = sink.send(Message::Close(None)).await;
                    break json!({"socketId": socket_id, "reason": "closed by Kandan"});
                }
                Some(message) => {
                    if let Err(error) = sink.send(message).await {
                        break json!({"socketId": socket_id, "reason": error.to_string()});
                    }
                }
            },
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|frame| (Some(u16::from(frame.code)), frame.reason.to_string()))
                        .unwrap_or((None, String::new()));
                    break json!({"socketId": socket_id, "code": code, "reason": reason});
                }
                Some(Ok(message)) => {
                    if let Some((opcode, bytes)) = payload_of(message) {
                        emit(MESSAGE, json!({"socketId": socket_id, "opcode": opcode,
                            "bodyBase64": BASE64.encode(bytes)}));
                    }
                }
                Some(Err(error)) => break json!({"socketId": socket_id, "reason": error.to_string()}),
                None => break json!({"socketId": socket_id, "reason": "the local server went away"}),
            },
        }
    };
    emit(CLOSED, closed);
}

fn message_for(opcode: WebsocketOpcode, bytes: Vec<u8>) -> Result<Message, String> {
    Ok(match opcode {
        WebsocketOpcode::Text => Message::Text(
            String::from_utf8(bytes)
                .map_err(|_| "a text message must be UTF-8".to_owned())?
                .into(),
        ),
        WebsocketOpcode::Binary => Message::Binary(bytes.into()),
        WebsocketOpcode::Ping => Message::Ping(bytes.into()),
        WebsocketOpcode::Pong => Message::Pong(bytes.into()),
    })
}

fn payload_of(message: Message) -> Option<(&'static str, Vec<u8>)> {
    match message {
        Message::Text(text) => Some(("text", text.as_bytes().to_vec())),
        Message::Binary(bytes) => Some(("binary", bytes.to_vec())),
        Message::Ping(bytes) => Some(("ping", bytes.to_vec())),
        Message::Pong(bytes) => Some(("pong", bytes.to_vec())),
        Message::Close(_) | Message::Frame(_) => None,
    }
}
