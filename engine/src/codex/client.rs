//! A JSON-RPC client for the Codex app-server's WebSocket listener.
//!
//! One task owns the socket. Requests are correlated by id with a timeout each;
//! notifications and the server's own requests (approvals) come out of one ordered
//! stream, because their order matters (an approval request follows its item's
//! `item/started`). When the socket ends, every waiting request fails and the stream
//! ends with [`CodexEvent::Closed`].
//!
//! An app-server that stops answering is not waited for forever: the client pings it
//! every [`PING_INTERVAL`], and one that has sent nothing at all (not even the pong) by
//! the next ping is taken as hung and its connection is ended. So is one whose socket
//! still answers pings while a request has waited [`STALL_PINGS`] intervals (every
//! request the runner makes is answered at once; the work they start reports through
//! notifications). A message that is not JSON-RPC ends the connection too: the
//! app-server is broken, and whatever it says next cannot be trusted. Either way the
//! supervisor restarts it.
use std::collections::HashMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::AUTHORIZATION;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::{debug, warn};

use super::address::AppServerAddress;
use super::jsonrpc::{self, Incoming, RpcError};

/// How long a request may wait for its response unless the call says otherwise.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the app-server is pinged; one silent for a whole interval after a ping is
/// taken as hung.
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
/// How many ping intervals a request may wait before the app-server is taken as hung
/// (45 s with the default interval: before the request's own timeout).
pub const STALL_PINGS: u32 = 3;
/// The app-server's messages are JSON; thread histories can be large.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Who the runner says it is in `initialize`.
#[derive(Debug, Clone, Serialize)]
pub struct ClientInfo {
    pub name: String,
    pub title: String,
    pub version: String,
}

impl Default for ClientInfo {
    fn default() -> Self {
        ClientInfo {
            name: "linzumi".into(),
            title: "Linzumi runner".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum CodexEvent {
    Notification {
        method: String,
        params: Value,
    },
    /// A request from the app-server that the runner must answer with
    /// [`CodexClient::respond`] or [`CodexClient::respond_error`].
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    /// The connection ended; no further events follow.
    Closed {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CodexError {
    #[error("could not connect to the Codex app-server at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("Codex app-server rejected {method}: {error}")]
    Rpc { method: String, error: RpcError },
    #[error("Codex app-server did not answer {method} within {after:?}")]
    Timeout { method: String, after: Duration },
    #[error("the Codex app-server connection is closed ({reason})")]
    Closed { reason: String },
    #[error("Codex app-server answered {method} with an unexpected shape: {reason}")]
    Decode { method: String, reason: String },
}

enum Command {
    Request {
        method: String,
        params: Value,
        timeout: Duration,
        reply: oneshot::Sender<Result<Value, CodexError>>,
    },
    Send(String),
    Close,
}

#[derive(Clone)]
pub struct CodexClient {
    commands: mpsc::UnboundedSender<Command>,
    url: String,
}

impl CodexClient {
    /// Connects to `address` (`ws://127.0.0.1:PORT`, with its capability token when it
    /// asks for one), performs `initialize`/`initialized`,
    /// and returns the client with its event stream. The app-server is pinged every
    /// `ping_interval` ([`PING_INTERVAL`] unless a test wants it sooner; see the module
    /// documentation).
    pub async fn connect(
        address: &AppServerAddress,
        info: ClientInfo,
        ping_interval: Duration,
    ) -> Result<(CodexClient, mpsc::UnboundedReceiver<CodexEvent>), CodexError> {
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE_BYTES))
            .max_frame_size(Some(MAX_MESSAGE_BYTES));
        let url = address.url.as_str();
        let connect_error = |reason: String| CodexError::Connect {
            url: url.to_owned(),
            reason,
        };
        let mut request = url
            .into_client_request()
            .map_err(|error| connect_error(error.to_string()))?;
        if let Some(token) = &address.token {
            let bearer = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .map_err(|_| connect_error("the capability token is not a header value".into()))?;
            request.headers_mut().insert(AUTHORIZATION, bearer);
        }
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async_with_config(request, Some(config), true),
        )
        .await
        .map_err(|_| connect_error("no answer within 10s".into()))?
        .map_err(|error| connect_error(error.to_string()))?;
        let (commands, receiver) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::unbounded_channel();
        tokio::spawn(
            Connection {
                ws,
                commands: receiver,
                events: events_tx,
                pending: HashMap::new(),
                next_id: 0,
                ping_interval,
            }
            .run(),
        );
        let client = CodexClient {
            commands,
            url: url.to_owned(),
        };
        client
            .request_value(
                "initialize",
                json!({"clientInfo": info, "capabilities": {"experimentalApi": false}}),
                Duration::from_secs(30),
            )
            .await?;
        client.notify("initialized", None)?;
        Ok((client, events))
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends a request with typed params and decodes the typed result.
    pub async fn call<P: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        params: &P,
    ) -> Result<R, CodexError> {
        let params = serde_json::to_value(params).map_err(|error| CodexError::Decode {
            method: method.into(),
            reason: error.to_string(),
        })?;
        let result = self.request_value(method, params, REQUEST_TIMEOUT).await?;
        serde_json::from_value(result).map_err(|error| CodexError::Decode {
            method: method.into(),
            reason: error.to_string(),
        })
    }

    /// Sends a request and returns the raw result.
    pub async fn request_value(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, CodexError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Request {
                method: method.into(),
                params,
                timeout,
                reply,
            })
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    pub fn notify(&self, method: &str, params: Option<&Value>) -> Result<(), CodexError> {
        self.send(jsonrpc::notification(method, params))
    }

    /// Answers a request the app-server sent (an approval, for example).
    pub fn respond(&self, id: &Value, result: &Value) -> Result<(), CodexError> {
        self.send(jsonrpc::response(id, result))
    }

    pub fn respond_error(&self, id: &Value, error: &RpcError) -> Result<(), CodexError> {
        self.send(jsonrpc::error_response(id, error))
    }

    pub fn close(&self) {
        let _ = self.commands.send(Command::Close);
    }

    fn send(&self, text: String) -> Result<(), CodexError> {
        self.commands
            .send(Command::Send(text))
            .map_err(|_| closed())
    }
}

fn closed() -> CodexError {
    CodexError::Closed {
        reason: "the client task has stopped".into(),
    }
}

struct Pending {
    method: String,
    timeout: Duration,
    sent_at: tokio::time::Instant,
    reply: oneshot::Sender<Result<Value, CodexError>>,
}

struct Connection {
    ws: Ws,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<CodexEvent>,
    pending: HashMap<u64, Pending>,
    next_id: u64,
    ping_interval: Duration,
}

impl Connection {
    async fn run(mut self) {
        let (timeouts_tx, mut timeouts) = mpsc::unbounded_channel::<u64>();
        let start = tokio::time::Instant::now() + self.ping_interval;
        let mut ping = tokio::time::interval_at(start, self.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Whether anything came from the app-server since the last ping.
        let mut heard = true;
        let reason = loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Request { method, params, timeout, reply }) => {
                        self.next_id += 1;
                        let id = self.next_id;
                        let text = jsonrpc::request(id, &method, &params);
                        let sent_at = tokio::time::Instant::now();
                        self.pending.insert(id, Pending { method, timeout, sent_at, reply });
                        let timeouts = timeouts_tx.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(timeout).await;
                            let _ = timeouts.send(id);
                        });
                        if let Err(error) = self.ws.send(Message::Text(text.into())).await {
                            break format!("write failed: {error}");
                        }
                    }
                    Some(Command::Send(text)) => {
                        if let Err(error) = self.ws.send(Message::Text(text.into())).await {
                            break format!("write failed: {error}");
                        }
                    }
                    Some(Command::Close) | None => {
                        let _ = self.ws.close(None).await;
                        break "closed by the runner".into();
                    }
                },
                Some(id) = timeouts.recv() => {
                    if let Some(pending) = self.pending.remove(&id) {
                        let _ = pending.reply.send(Err(CodexError::Timeout {
                            method: pending.method,
                            after: pending.timeout,
                        }));
                    }
                }
                _ = ping.tick() => {
                    if !heard {
                        break format!(
                            "the app-server stopped answering (nothing, not even a pong, for {:?})",
                            self.ping_interval
                        );
                    }
                    if let Some(stalled) = self.stalled() {
                        break stalled;
                    }
                    heard = false;
                    if let Err(error) = self.ws.send(Message::Ping(Vec::new().into())).await {
                        break format!("write failed: {error}");
                    }
                }
                message = self.ws.next() => {
                    heard = true;
                    match message {
                        Some(Ok(Message::Text(text))) => {
                            if let Err(error) = self.on_text(text.as_str()) {
                                break error;
                            }
                        }
                        Some(Ok(Message::Close(_))) | None => break "the app-server closed the connection".into(),
                        Some(Ok(_)) => {}
                        Some(Err(error)) => break format!("connection error: {error}"),
                    }
                }
            }
        };
        debug!(%reason, "Codex app-server connection ended");
        for (_, pending) in self.pending.drain() {
            let _ = pending.reply.send(Err(CodexError::Closed {
                reason: reason.clone(),
            }));
        }
        let _ = self.events.send(CodexEvent::Closed { reason });
    }

    /// Why the app-server is taken as hung though it answers pings: a request has waited
    /// [`STALL_PINGS`] ping intervals.
    fn stalled(&self) -> Option<String> {
        let oldest = self
            .pending
            .values()
            .min_by_key(|pending| pending.sent_at)?;
        let waited = oldest.sent_at.elapsed();
        (waited >= self.ping_interval * STALL_PINGS).then(|| {
            format!(
                "the app-server answers pings but not requests (`{}` unanswered for {:.1}s)",
                oldest.method,
                waited.as_secs_f64()
            )
        })
    }

    /// Handles one message; an error (the message is not JSON-RPC) ends the connection.
    fn on_text(&mut self, text: &str) -> Result<(), String> {
        match Incoming::parse(text) {
            Ok(Incoming::Response { id, outcome }) => {
                let Some(pending) = id.as_u64().and_then(|id| self.pending.remove(&id)) else {
                    debug!(%id, "response to an unknown or expired request");
                    return Ok(());
                };
                let method = pending.method;
                let result = outcome.map_err(|error| CodexError::Rpc { method, error });
                let _ = pending.reply.send(result);
            }
            Ok(Incoming::Notification { method, params }) => {
                let _ = self
                    .events
                    .send(CodexEvent::Notification { method, params });
            }
            Ok(Incoming::Request { id, method, params }) => {
                let _ = self.events.send(CodexEvent::Request { id, method, params });
            }
            Err(error) => {
                warn!(%error, "the Codex app-server sent a message that is not JSON-RPC");
                return Err(error.to_string());
            }
        }
        Ok(())
    }
}
