//! `forward_websocket_open/send/close` (protocol §6.2): one local WebSocket per
//! `socketId`, relayed over runner-topic events. The runner answers with
//! `forward:websocket_opened`, then `forward:websocket_message` for every message from
//! the local server, and `forward:websocket_closed` when either side closes.
//!
//! Memory is bounded both ways (protocol §6.2.1). Towards Kandan, a socket has at most
//! [`IN_FLIGHT_BYTES`] of messages that Kandan has not acknowledged; past that the relay
//! stops reading the local server, whose sends then stall in TCP. Towards the local
//! server nothing can be slowed (controls arrive on the shared runner topic), so a socket
//! with more than [`QUEUED_BYTES`] waiting for a local server that does not read is
//! closed with a reason that says so.
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::AbortHandle;
use tokio_tungstenite::tungstenite::Message;

use super::routes::Routes;
use super::{guard, local_ws};
use crate::protocol::controls::{
    ForwardWebsocketClose, ForwardWebsocketOpen, ForwardWebsocketSend, WebsocketOpcode,
};

pub const OPENED: &str = "forward:websocket_opened";
pub const MESSAGE: &str = "forward:websocket_message";
pub const CLOSED: &str = "forward:websocket_closed";
/// At most this many relayed sockets at once.
pub const MAX_SOCKETS: usize = 64;
/// Bytes of one socket's local messages pushed to Kandan and not yet acknowledged.
pub const IN_FLIGHT_BYTES: usize = 1024 * 1024;
/// Bytes of one socket's messages from Kandan waiting for the local server to read them.
pub const QUEUED_BYTES: usize = 4 * 1024 * 1024;

/// Where runner events go: the runner pushes them to Kandan in order. An event sent
/// with [`Emit::holding`] keeps its permit until Kandan acknowledged it (or it was
/// reported undeliverable), which is how a relay knows what is still in flight.
#[derive(Clone)]
pub struct Emit(Arc<dyn Fn(&'static str, Value, Option<OwnedSemaphorePermit>) + Send + Sync>);

impl Emit {
    pub fn new(
        emit: impl Fn(&'static str, Value, Option<OwnedSemaphorePermit>) + Send + Sync + 'static,
    ) -> Emit {
        Emit(Arc::new(emit))
    }

    pub fn event(&self, event: &'static str, payload: Value) {
        (self.0)(event, payload, None);
    }

    pub fn holding(&self, event: &'static str, payload: Value, permit: OwnedSemaphorePermit) {
        (self.0)(event, payload, Some(permit));
    }
}

struct Socket {
    outgoing: mpsc::UnboundedSender<Message>,
    /// Bytes in `outgoing` and in the local write not yet finished.
    queued: Arc<AtomicUsize>,
    task: AbortHandle,
}

#[derive(Clone, Default)]
pub struct WebSocketRelays {
    sockets: Arc<Mutex<HashMap<String, Socket>>>,
}

impl WebSocketRelays {
    pub fn open(&self, emit: &Emit, allowed: &Routes, control: ForwardWebsocketOpen) {
        let socket_id = control.socket_id.clone();
        let refuse = |error: String| {
            emit.event(
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
        let (outgoing, receiver) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        // Held while spawning, so the task cannot forget the socket before it is known.
        let Ok(mut sockets) = self.sockets.lock() else {
            return refuse("the relay is shutting down".into());
        };
        let relays = self.clone();
        let emit = emit.clone();
        let ends = Ends {
            outgoing: receiver,
            queued: queued.clone(),
        };
        let task = tokio::spawn(async move {
            relay(&emit, &socket_id, target, ends).await;
            relays.forget(&socket_id);
        });
        sockets.insert(
            control.socket_id,
            Socket {
                outgoing,
                queued,
                task: task.abort_handle(),
            },
        );
    }

    /// Queues a message for the local server. A message that cannot be relayed (bad
    /// base64, text that is not UTF-8, or one too many for a server that does not read)
    /// ends its socket, with the reason in `forward:websocket_closed`.
    pub fn send(&self, emit: &Emit, control: ForwardWebsocketSend) {
        let closed = |reason: String| {
            emit.event(
                CLOSED,
                json!({"socketId": control.socket_id, "reason": reason}),
            );
        };
        let Ok(mut sockets) = self.sockets.lock() else {
            return closed("the relay is shutting down".into());
        };
        let Some(socket) = sockets.get(&control.socket_id) else {
            return closed("unknown socket".into());
        };
        let refusal = match BASE64
            .decode(&control.body_base64)
            .map_err(|error| format!("bodyBase64 is not base64: {error}"))
            .and_then(|bytes| message_for(control.opcode, bytes))
        {
            Ok(message) if socket.queued.load(Ordering::SeqCst) + message.len() <= QUEUED_BYTES => {
                socket.queued.fetch_add(message.len(), Ordering::SeqCst);
                let _ = socket.outgoing.send(message);
                return;
            }
            Ok(_) => format!(
                "the local server is not reading: more than {} MiB waiting for it",
                QUEUED_BYTES / (1024 * 1024)
            ),
            Err(error) => error,
        };
        if let Some(socket) = sockets.remove(&control.socket_id) {
            socket.task.abort();
        }
        closed(refusal);
    }

    pub fn close(&self, control: ForwardWebsocketClose) {
        let socket = self
            .sockets
            .lock()
            .ok()
            .and_then(|mut sockets| sockets.remove(&control.socket_id));
        if let Some(socket) = socket {
            let _ = socket.outgoing.send(Message::Close(None));
        }
    }

    /// Closes every relayed socket (the runner is stopping).
    pub fn close_all(&self) {
        if let Ok(mut sockets) = self.sockets.lock() {
            for (_, socket) in sockets.drain() {
                let _ = socket.outgoing.send(Message::Close(None));
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

/// The relay task's side of a [`Socket`].
struct Ends {
    outgoing: mpsc::UnboundedReceiver<Message>,
    queued: Arc<AtomicUsize>,
}

async fn relay(emit: &Emit, socket_id: &str, target: guard::LocalTarget, ends: Ends) {
    let (socket, protocol) = match local_ws::connect(&target).await {
        Ok(connected) => connected,
        Err(error) => {
            emit.event(
                OPENED,
                json!({"socketId": socket_id, "ok": false, "error": format!("connect_failed: {error}")}),
            );
            return;
        }
    };
    emit.event(
        OPENED,
        json!({"socketId": socket_id, "ok": true, "protocol": protocol}),
    );
    let (mut sink, mut stream) = socket.split();
    let Ends {
        mut outgoing,
        queued,
    } = ends;
    // Two halves, so a local server that is slow to read does not hold up its messages
    // to Kandan, nor Kandan's unacknowledged pushes the messages to the local server.
    let to_local = async {
        loop {
            match outgoing.recv().await {
                Some(Message::Close(_)) | None => {
                    let _ = sink.send(Message::Close(None)).await;
                    return json!({"socketId": socket_id, "reason": "closed by Kandan"});
                }
                Some(message) => {
                    let size = message.len();
                    let sent = sink.send(message).await;
                    queued.fetch_sub(size, Ordering::SeqCst);
                    if let Err(error) = sent {
                        return json!({"socketId": socket_id, "reason": error.to_string()});
                    }
                }
            }
        }
    };
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT_BYTES));
    let from_local = async {
        loop {
            match stream.next().await {
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|frame| (Some(u16::from(frame.code)), frame.reason.to_string()))
                        .unwrap_or((None, String::new()));
                    return json!({"socketId": socket_id, "code": code, "reason": reason});
                }
                Some(Ok(message)) => {
                    let Some((opcode, bytes)) = payload_of(message) else {
                        continue;
                    };
                    // A message larger than the budget waits for the whole budget.
                    let cost = bytes.len().clamp(1, IN_FLIGHT_BYTES) as u32;
                    let Ok(permit) = in_flight.clone().acquire_many_owned(cost).await else {
                        return json!({"socketId": socket_id, "reason": "the relay stopped"});
                    };
                    emit.holding(
                        MESSAGE,
                        json!({"socketId": socket_id, "opcode": opcode,
                            "bodyBase64": BASE64.encode(bytes)}),
                        permit,
                    );
                }
                Some(Err(error)) => {
                    return json!({"socketId": socket_id, "reason": error.to_string()});
                }
                None => {
                    return json!({"socketId": socket_id, "reason": "the local server went away"});
                }
            }
        }
    };
    let closed = tokio::select! {
        closed = to_local => closed,
        closed = from_local => closed,
    };
    emit.event(CLOSED, closed);
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
