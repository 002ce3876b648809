//! The socket task: the single owner of the websocket and of all client state.
//!
//! It reacts to four things: commands from [`PhoenixClient`](super::PhoenixClient)
//! handles, frames from Kandan, the outcome of a connection attempt, and the earliest
//! due timer (heartbeat, reconnect, join and push deadlines, rejoin). Keeping all of it
//! in one task means no locks, and an order of events that tests can reason about.
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use tracing::{debug, info, warn};

use super::channel::{Channel, ChannelMessage, FirstJoin, JoinPhase, PayloadFn};
use super::client::Lifecycle;
use super::config::ClientConfig;
use super::error::{ConnectError, JoinError, PushError};
use super::frame::{Frame, PHOENIX_TOPIC, Reply, ReplyStatus, encode, events};
use super::pushes::{Push, PushId, PushRegistry, PushResult};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Connecting = Pin<Box<dyn Future<Output = Result<Ws, ConnectError>> + Send>>;

/// How many queued commands are written before the socket is flushed, so a burst of
/// pushes costs one flush rather than one each.
const COMMAND_BATCH: usize = 256;
/// The hard cap tungstenite enforces (it drops the connection beyond it); frames between
/// `max_frame_bytes` and this are read, then dropped with a log line.
const HARD_LIMIT_FACTOR: usize = 4;

pub enum Command {
    Join {
        topic: String,
        payload: PayloadFn,
        timeout: Duration,
        messages: mpsc::UnboundedSender<ChannelMessage>,
        reply: oneshot::Sender<Result<Value, JoinError>>,
    },
    Push {
        topic: String,
        event: String,
        payload: Box<RawValue>,
        timeout: Duration,
        reply: oneshot::Sender<PushResult>,
    },
    Leave {
        topic: String,
        reply: oneshot::Sender<()>,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
}

pub struct SocketTask {
    config: ClientConfig,
    connector: Option<Connector>,
    commands: mpsc::UnboundedReceiver<Command>,
    lifecycle: broadcast::Sender<Lifecycle>,
    first_connect: Option<oneshot::Sender<Result<(), ConnectError>>>,
    conn: Option<Ws>,
    connecting: Option<Connecting>,
    reconnect_at: Option<Instant>,
    reconnect_tries: u32,
    generation: u64,
    next_ref: u64,
    heartbeat_due: Option<Instant>,
    pending_heartbeat: Option<String>,
    channels: HashMap<String, Channel>,
    pushes: PushRegistry,
    reconnect_outcomes_owed: usize,
    needs_flush: bool,
    closed: bool,
}

impl SocketTask {
    pub fn new(
        config: ClientConfig,
        commands: mpsc::UnboundedReceiver<Command>,
        lifecycle: broadcast::Sender<Lifecycle>,
        first_connect: oneshot::Sender<Result<(), ConnectError>>,
    ) -> Result<SocketTask, ConnectError> {
        let connector = if config.url.scheme() == "wss" {
            let tls = match &config.tls {
                Some(tls) => tls.clone(),
                None => {
                    crate::tls::client_config_from_env().map_err(|error| ConnectError::Tls {
                        url: config.display_url(),
                        reason: error.to_string(),
                    })?
                }
            };
            Some(Connector::Rustls(tls))
        } else {
            None
        };
        Ok(SocketTask {
            config,
            connector,
            commands,
            lifecycle,
            first_connect: Some(first_connect),
            conn: None,
            connecting: None,
            reconnect_at: None,
            reconnect_tries: 0,
            generation: 0,
            next_ref: 0,
            heartbeat_due: None,
            pending_heartbeat: None,
            channels: HashMap::new(),
            pushes: PushRegistry::default(),
            reconnect_outcomes_owed: 0,
            needs_flush: false,
            closed: false,
        })
    }

    pub async fn run(mut self) {
        self.start_connecting();
        let timer = tokio::time::sleep_until(far_future());
        tokio::pin!(timer);
        while !self.closed {
            let wake = self.next_deadline().unwrap_or_else(far_future);
            if timer.deadline() != wake {
                timer.as_mut().reset(wake);
            }
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => {
                        self.on_command(command).await;
                        self.drain_commands().await;
                    }
                    // Every handle is gone: nobody can use the connection any more.
                    None => self.shutdown().await,
                },
                message = next_message(&mut self.conn), if self.conn.is_some() => {
                    self.on_message(message).await;
                }
                result = finish_connecting(&mut self.connecting), if self.connecting.is_some() => {
                    self.connecting = None;
                    self.on_connect_result(result).await;
                }
                () = &mut timer => self.on_timers().await,
            }
            self.flush().await;
        }
    }

    async fn drain_commands(&mut self) {
        for _ in 0..COMMAND_BATCH {
            match self.commands.try_recv() {
                Ok(command) => self.on_command(command).await,
                Err(_) => break,
            }
        }
    }

    // ---- commands -------------------------------------------------------------------

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Join {
                topic,
                payload,
                timeout,
                messages,
                reply,
            } => self.on_join(topic, payload, timeout, messages, reply).await,
            Command::Push {
                topic,
                event,
                payload,
                timeout,
                reply,
            } => self.on_push(topic, event, payload, timeout, reply).await,
            Command::Leave { topic, reply } => {
                self.on_leave(&topic).await;
                let _ = reply.send(());
            }
            Command::Close { reply } => {
                self.shutdown().await;
                let _ = reply.send(());
            }
        }
    }

    async fn on_join(
        &mut self,
        topic: String,
        payload: PayloadFn,
        timeout: Duration,
        messages: mpsc::UnboundedSender<ChannelMessage>,
        reply: oneshot::Sender<Result<Value, JoinError>>,
    ) {
        if self.channels.contains_key(&topic) {
            let _ = reply.send(Err(JoinError::AlreadyJoined { topic }));
            return;
        }
        let first = FirstJoin {
            reply,
            deadline: Instant::now() + timeout,
            timeout,
        };
        self.channels.insert(
            topic.clone(),
            Channel::new(topic.clone(), payload, messages, first),
        );
        if self.conn.is_some() {
            self.send_join(&topic).await;
        }
    }

    async fn on_push(
        &mut self,
        topic: String,
        event: String,
        payload: Box<RawValue>,
        timeout: Duration,
        reply: oneshot::Sender<PushResult>,
    ) {
        let size = payload.get().len() + topic.len() + event.len();
        if size > self.config.max_frame_bytes {
            let _ = reply.send(Err(PushError::TooLarge {
                topic,
                event,
                size,
                limit: self.config.max_frame_bytes,
            }));
            return;
        }
        let Some(channel) = self.channels.get_mut(&topic) else {
            let _ = reply.send(Err(PushError::NotJoined { topic, event }));
            return;
        };
        let now = Instant::now();
        let id = self.pushes.insert(Push {
            topic,
            event,
            payload,
            deadline: now + timeout,
            issued_at: now,
            reply,
        });
        if channel.is_joined() && self.conn.is_some() {
            self.send_push(id).await;
        } else {
            channel.buffer.push_back(id);
        }
    }

    async fn on_leave(&mut self, topic: &str) {
        let Some(channel) = self.channels.remove(topic) else {
            return;
        };
        if channel.phase != (JoinPhase::Waiting { retry_at: None }) && self.conn.is_some() {
            let leave_ref = self.make_ref();
            let frame = encode(
                channel.join_ref.as_deref(),
                Some(&leave_ref),
                topic,
                events::LEAVE,
                &json!({}),
            );
            self.write(frame).await;
        }
        if let Some(first) = channel.first_join {
            let _ = first.reply.send(Err(JoinError::Closed));
        }
        for id in channel.buffer {
            if let Some(push) = self.pushes.take(id) {
                let _ = push.reply.send(Err(PushError::Left {
                    topic: push.topic,
                    event: push.event,
                }));
            }
        }
        for push in self.pushes.take_sent(Some(topic)) {
            let _ = push.reply.send(Err(PushError::Left {
                topic: push.topic,
                event: push.event,
            }));
        }
    }

    async fn shutdown(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        if let Some(mut ws) = self.conn.take() {
            let close = ws.close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "client closed".into(),
            }));
            let _ = tokio::time::timeout(Duration::from_millis(250), close).await;
        }
        self.connecting = None;
        for push in self.pushes.take_all() {
            let _ = push.reply.send(Err(PushError::Closed));
        }
        for (_, channel) in self.channels.drain() {
            if let Some(first) = channel.first_join {
                let _ = first.reply.send(Err(JoinError::Closed));
            }
        }
        if let Some(first) = self.first_connect.take() {
            let _ = first.send(Err(ConnectError::Unreachable {
                url: self.config.display_url(),
                reason: "the client was closed while connecting".into(),
            }));
        }
        self.emit(Lifecycle::Closed);
    }

    // ---- connection -----------------------------------------------------------------

    fn start_connecting(&mut self) {
        self.reconnect_at = None;
        let url = self.config.url.clone();
        let shown_url = self.config.display_url();
        let connector = self.connector.clone();
        let hard_limit = self
            .config
            .max_frame_bytes
            .saturating_mul(HARD_LIMIT_FACTOR);
        let timeout = self.config.connect_timeout;
        debug!(url = %shown_url, "connecting to Kandan");
        self.connecting = Some(Box::pin(async move {
            let ws_config = WebSocketConfig::default()
                .max_message_size(Some(hard_limit))
                .max_frame_size(Some(hard_limit));
            let attempt = tokio_tungstenite::connect_async_tls_with_config(
                url.as_str(),
                Some(ws_config),
                true,
                connector,
            );
            match tokio::time::timeout(timeout, attempt).await {
                Ok(Ok((ws, _response))) => Ok(ws),
                Ok(Err(error)) => Err(connect_error(&shown_url, error)),
                Err(_) => Err(ConnectError::Unreachable {
                    url: shown_url,
                    reason: format!("no answer within {timeout:?}"),
                }),
            }
        }));
    }

    async fn on_connect_result(&mut self, result: Result<Ws, ConnectError>) {
        let ws = match result {
            Ok(ws) => ws,
            Err(error) => {
                if let Some(first) = self.first_connect.take() {
                    // Nothing has been joined yet; the caller decides what to do.
                    let _ = first.send(Err(error));
                    self.closed = true;
                    return;
                }
                if error.is_unauthorized() {
                    warn!(%error, "Kandan no longer accepts the token; not reconnecting");
                    self.emit(Lifecycle::Unauthorized {
                        reason: error.to_string(),
                    });
                    self.shutdown().await;
                    return;
                }
                warn!(%error, "reconnect to Kandan failed");
                self.emit(Lifecycle::Disconnected {
                    reason: error.to_string(),
                });
                self.schedule_reconnect();
                return;
            }
        };
        self.conn = Some(ws);
        self.generation += 1;
        self.reconnect_tries = 0;
        self.pending_heartbeat = None;
        self.heartbeat_due = Some(Instant::now() + self.config.heartbeat_interval);
        info!(
            url = %self.config.display_url(),
            generation = self.generation,
            "connected to Kandan"
        );
        self.emit(Lifecycle::Connected {
            generation: self.generation,
        });
        if let Some(first) = self.first_connect.take() {
            let _ = first.send(Ok(()));
        }
        let reconnect = self.generation > 1;
        let topics: Vec<String> = self.channels.keys().cloned().collect();
        self.reconnect_outcomes_owed = if reconnect { topics.len() } else { 0 };
        for topic in &topics {
            if let Some(channel) = self.channels.get_mut(topic) {
                channel.owes_reconnect_outcome = reconnect;
                channel.rejoin_tries = 0;
            }
            self.send_join(topic).await;
        }
        if reconnect && topics.is_empty() {
            self.emit(Lifecycle::Reconnected {
                generation: self.generation,
            });
        }
    }

    /// The socket is gone: fail what can no longer be answered, keep what can still be
    /// sent, and schedule the reconnect.
    fn on_disconnect(&mut self, reason: String) {
        if self.conn.take().is_none() {
            return;
        }
        warn!(%reason, "lost the connection to Kandan");
        self.heartbeat_due = None;
        self.pending_heartbeat = None;
        self.needs_flush = false;
        for push in self.pushes.take_sent(None) {
            let _ = push.reply.send(Err(PushError::Disconnected {
                topic: push.topic,
                event: push.event,
            }));
        }
        for channel in self.channels.values_mut() {
            channel.phase = JoinPhase::Waiting { retry_at: None };
            channel.owes_reconnect_outcome = false;
        }
        self.reconnect_outcomes_owed = 0;
        self.emit(Lifecycle::Disconnected { reason });
        self.schedule_reconnect();
    }

    fn schedule_reconnect(&mut self) {
        self.reconnect_tries += 1;
        let delay = self.config.reconnect.delay(self.reconnect_tries);
        debug!(?delay, tries = self.reconnect_tries, "reconnect scheduled");
        self.reconnect_at = Some(Instant::now() + delay);
    }

    // ---- frames from Kandan ---------------------------------------------------------

    async fn on_message(&mut self, message: Option<Result<Message, WsError>>) {
        match message {
            Some(Ok(Message::Text(text))) => self.on_text(text.as_str()).await,
            Some(Ok(Message::Binary(bytes))) => {
                warn!(
                    bytes = bytes.len(),
                    "dropped a binary frame from Kandan: the runner protocol is JSON text only"
                );
            }
            // tungstenite queues the pong itself; a flush sends it.
            Some(Ok(Message::Ping(_))) => self.needs_flush = true,
            Some(Ok(Message::Pong(_) | Message::Frame(_))) => {}
            Some(Ok(Message::Close(frame))) => {
                let reason = match frame {
                    Some(frame) => format!(
                        "Kandan closed the connection (code {}: {})",
                        u16::from(frame.code),
                        frame.reason
                    ),
                    None => "Kandan closed the connection".into(),
                };
                self.on_disconnect(reason);
            }
            Some(Err(error)) => self.on_disconnect(format!("websocket error: {error}")),
            None => self.on_disconnect("the connection to Kandan ended".into()),
        }
    }

    async fn on_text(&mut self, text: &str) {
        let frame = match Frame::decode(text, self.config.max_frame_bytes) {
            Ok(frame) => frame,
            Err(error) => {
                let preview: String = text.chars().take(120).collect();
                warn!(%error, %preview, "dropped a malformed frame from Kandan");
                return;
            }
        };
        if frame.event == events::REPLY {
            self.on_reply(frame).await;
            return;
        }
        let Some(channel) = self.channels.get(&frame.topic) else {
            debug!(topic = %frame.topic, event = %frame.event, "message for a topic not joined");
            return;
        };
        if !channel.is_current(frame.join_ref.as_deref()) {
            debug!(topic = %frame.topic, event = %frame.event, "dropped an outdated message");
            return;
        }
        match frame.event.as_str() {
            events::ERROR | events::CLOSE => {
                let reason = if frame.event == events::ERROR {
                    "the channel crashed on the server"
                } else {
                    "the server closed the channel"
                };
                self.on_channel_failure(&frame.topic, reason.into()).await;
            }
            _ => {
                // A dropped receiver only means nobody listens to this topic any more.
                let _ = channel.messages.send(ChannelMessage {
                    event: frame.event,
                    payload: frame.payload,
                });
            }
        }
    }

    async fn on_reply(&mut self, frame: Frame) {
        let Some(wire_ref) = frame.msg_ref else {
            warn!(topic = %frame.topic, "dropped a reply without a ref");
            return;
        };
        if frame.topic == PHOENIX_TOPIC && self.pending_heartbeat.as_deref() == Some(&wire_ref) {
            self.pending_heartbeat = None;
            return;
        }
        let answers_join = self.channels.get(&frame.topic).is_some_and(|channel| {
            matches!(channel.phase, JoinPhase::Joining { .. })
                && channel.join_ref.as_deref() == Some(wire_ref.as_str())
        });
        if answers_join {
            match Reply::from_payload(frame.payload) {
                Ok(Reply {
                    status: ReplyStatus::Ok,
                    response,
                }) => self.on_joined(&frame.topic, response).await,
                Ok(Reply { response, .. }) => {
                    self.on_join_failed(&frame.topic, JoinFailure::Rejected(response))
                }
                Err(error) => self.on_join_failed(
                    &frame.topic,
                    JoinFailure::Rejected(json!({"reason": error.to_string()})),
                ),
            }
            return;
        }
        let Some(push) = self.pushes.take_by_ref(&wire_ref) else {
            debug!(topic = %frame.topic, %wire_ref, "reply to an unknown or expired push");
            return;
        };
        let outcome = match Reply::from_payload(frame.payload) {
            Ok(Reply {
                status: ReplyStatus::Ok,
                response,
            }) => Ok(response),
            Ok(Reply { response, .. }) => Err(PushError::Rejected {
                topic: push.topic,
                event: push.event,
                response,
            }),
            Err(error) => Err(PushError::Rejected {
                topic: push.topic,
                event: push.event,
                response: json!({"reason": error.to_string()}),
            }),
        };
        let _ = push.reply.send(outcome);
    }

    // ---- channels -------------------------------------------------------------------

    async fn send_join(&mut self, topic: &str) {
        let join_ref = self.make_ref();
        let Some(channel) = self.channels.get_mut(topic) else {
            return;
        };
        let timeout = channel
            .first_join
            .as_ref()
            .map_or(self.config.push_timeout, |first| first.timeout);
        channel.join_ref = Some(join_ref.clone());
        channel.phase = JoinPhase::Joining {
            deadline: Instant::now() + timeout,
        };
        let payload = (channel.payload)();
        let frame = encode(
            Some(&join_ref),
            Some(&join_ref),
            topic,
            events::JOIN,
            &payload,
        );
        self.write(frame).await;
    }

    async fn on_joined(&mut self, topic: &str, response: Value) {
        let Some(channel) = self.channels.get_mut(topic) else {
            return;
        };
        channel.phase = JoinPhase::Joined;
        channel.rejoin_tries = 0;
        let buffered: Vec<PushId> = channel.buffer.drain(..).collect();
        match channel.first_join.take() {
            Some(first) => {
                let _ = first.reply.send(Ok(response));
            }
            None => {
                debug!(%topic, "rejoined");
                self.emit(Lifecycle::ChannelRejoined {
                    topic: topic.to_owned(),
                });
            }
        }
        self.settle_reconnect_outcome(topic);
        for id in buffered {
            // Ids of pushes that expired while buffered are no longer in the registry.
            if self.pushes.get(id).is_some() {
                self.send_push(id).await;
            }
        }
    }

    fn on_join_failed(&mut self, topic: &str, failure: JoinFailure) {
        let Some(channel) = self.channels.get_mut(topic) else {
            return;
        };
        if let Some(first) = channel.first_join.take() {
            let error = match failure {
                JoinFailure::Rejected(response) => JoinError::Rejected {
                    topic: topic.to_owned(),
                    response,
                },
                JoinFailure::Timeout => JoinError::Timeout {
                    topic: topic.to_owned(),
                    after: first.timeout,
                },
            };
            warn!(%error, "join failed");
            let _ = first.reply.send(Err(error));
            self.settle_reconnect_outcome(topic);
            if let Some(channel) = self.channels.remove(topic) {
                self.fail_buffered(channel.buffer.into_iter().collect());
            }
            return;
        }
        channel.rejoin_tries += 1;
        let delay = self.config.rejoin.delay(channel.rejoin_tries);
        channel.phase = JoinPhase::Waiting {
            retry_at: Some(Instant::now() + delay),
        };
        let reason = match failure {
            JoinFailure::Rejected(response) => format!("rejoin refused: {response}"),
            JoinFailure::Timeout => "rejoin timed out".to_owned(),
        };
        warn!(%topic, %reason, ?delay, "rejoin failed; retrying");
        self.emit(Lifecycle::ChannelErrored {
            topic: topic.to_owned(),
            reason,
        });
        self.settle_reconnect_outcome(topic);
    }

    /// `phx_error` or `phx_close` from the server: replies in flight on this channel
    /// will not come, and the channel must be rejoined.
    async fn on_channel_failure(&mut self, topic: &str, reason: String) {
        for push in self.pushes.take_sent(Some(topic)) {
            let _ = push.reply.send(Err(PushError::ChannelErrored {
                topic: push.topic,
                event: push.event,
            }));
        }
        let Some(channel) = self.channels.get_mut(topic) else {
            return;
        };
        if channel.first_join.is_some() {
            self.on_join_failed(topic, JoinFailure::Rejected(json!({ "reason": reason })));
            return;
        }
        channel.rejoin_tries += 1;
        let delay = self.config.rejoin.delay(channel.rejoin_tries);
        channel.phase = JoinPhase::Waiting {
            retry_at: Some(Instant::now() + delay),
        };
        warn!(%topic, %reason, ?delay, "channel failed; rejoining");
        self.emit(Lifecycle::ChannelErrored {
            topic: topic.to_owned(),
            reason,
        });
    }

    fn settle_reconnect_outcome(&mut self, topic: &str) {
        let owed = self
            .channels
            .get_mut(topic)
            .is_some_and(|channel| std::mem::take(&mut channel.owes_reconnect_outcome));
        if owed {
            self.reconnect_outcomes_owed = self.reconnect_outcomes_owed.saturating_sub(1);
            if self.reconnect_outcomes_owed == 0 {
                self.emit(Lifecycle::Reconnected {
                    generation: self.generation,
                });
            }
        }
    }

    fn fail_buffered(&mut self, ids: Vec<PushId>) {
        for id in ids {
            if let Some(push) = self.pushes.take(id) {
                let _ = push.reply.send(Err(PushError::NotJoined {
                    topic: push.topic,
                    event: push.event,
                }));
            }
        }
    }

    // ---- pushes ---------------------------------------------------------------------

    async fn send_push(&mut self, id: PushId) {
        let wire_ref = self.make_ref();
        let Some(push) = self.pushes.get(id) else {
            return;
        };
        let join_ref = self
            .channels
            .get(&push.topic)
            .and_then(|channel| channel.join_ref.clone());
        let frame = encode(
            join_ref.as_deref(),
            Some(&wire_ref),
            &push.topic,
            &push.event,
            &push.payload,
        );
        self.pushes.mark_sent(id, wire_ref);
        self.write(frame).await;
    }

    // ---- timers ---------------------------------------------------------------------

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.heartbeat_due,
            self.reconnect_at,
            self.pushes.next_deadline(),
        ]
        .into_iter()
        .chain(self.channels.values().map(Channel::next_deadline))
        .flatten()
        .min()
    }

    async fn on_timers(&mut self) {
        let now = Instant::now();
        if self.heartbeat_due.is_some_and(|due| due <= now) {
            self.on_heartbeat_due().await;
        }
        if self.reconnect_at.is_some_and(|at| at <= now) && self.connecting.is_none() {
            self.start_connecting();
        }
        for (_, push, sent) in self.pushes.take_expired(now) {
            let after = now.saturating_duration_since(push.issued_at);
            let error = if sent {
                PushError::NoReply {
                    topic: push.topic,
                    event: push.event,
                    after,
                }
            } else {
                PushError::NotDelivered {
                    topic: push.topic,
                    event: push.event,
                    after,
                }
            };
            let _ = push.reply.send(Err(error));
        }
        let due: Vec<String> = self
            .channels
            .values()
            .filter(|channel| channel.next_deadline().is_some_and(|at| at <= now))
            .map(|channel| channel.topic.clone())
            .collect();
        for topic in due {
            self.on_channel_due(&topic, now).await;
        }
    }

    async fn on_channel_due(&mut self, topic: &str, now: Instant) {
        let Some(channel) = self.channels.get(topic) else {
            return;
        };
        match channel.phase {
            JoinPhase::Joining { deadline } if deadline <= now => {
                // As phoenix.js does: tell the server to drop the half-made join.
                let join_ref = channel.join_ref.clone();
                if self.conn.is_some() {
                    let leave_ref = self.make_ref();
                    let frame = encode(
                        join_ref.as_deref(),
                        Some(&leave_ref),
                        topic,
                        events::LEAVE,
                        &json!({}),
                    );
                    self.write(frame).await;
                }
                self.on_join_failed(topic, JoinFailure::Timeout);
            }
            JoinPhase::Waiting { retry_at: Some(at) } if at <= now => {
                if self.conn.is_some() {
                    self.send_join(topic).await;
                } else if let Some(channel) = self.channels.get_mut(topic) {
                    // The reconnect will rejoin it.
                    channel.phase = JoinPhase::Waiting { retry_at: None };
                }
            }
            _ => {
                // The first join is still waiting for a connection and ran out of time.
                if channel
                    .first_join
                    .as_ref()
                    .is_some_and(|first| first.deadline <= now)
                {
                    self.on_join_failed(topic, JoinFailure::Timeout);
                }
            }
        }
    }

    async fn on_heartbeat_due(&mut self) {
        if self.pending_heartbeat.is_some() {
            // The previous heartbeat was never answered: the connection is dead even if
            // TCP has not noticed. Close it the way phoenix.js does and reconnect.
            if let Some(ws) = self.conn.as_mut() {
                let close = ws.close(Some(CloseFrame {
                    code: CloseCode::Normal,
                    reason: "heartbeat timeout".into(),
                }));
                let _ = tokio::time::timeout(Duration::from_millis(100), close).await;
            }
            self.on_disconnect(format!(
                "heartbeat timeout: Kandan did not answer within {:?}",
                self.config.heartbeat_interval
            ));
            return;
        }
        let heartbeat_ref = self.make_ref();
        let frame = encode(
            None,
            Some(&heartbeat_ref),
            PHOENIX_TOPIC,
            events::HEARTBEAT,
            &json!({}),
        );
        self.pending_heartbeat = Some(heartbeat_ref);
        self.heartbeat_due = Some(Instant::now() + self.config.heartbeat_interval);
        self.write(frame).await;
    }

    // ---- plumbing -------------------------------------------------------------------

    fn make_ref(&mut self) -> String {
        self.next_ref += 1;
        self.next_ref.to_string()
    }

    async fn write(&mut self, text: String) {
        let Some(ws) = self.conn.as_mut() else {
            return;
        };
        match ws.feed(Message::Text(text.into())).await {
            Ok(()) => self.needs_flush = true,
            Err(error) => self.on_disconnect(format!("write to Kandan failed: {error}")),
        }
    }

    async fn flush(&mut self) {
        if !std::mem::take(&mut self.needs_flush) {
            return;
        }
        if let Some(ws) = self.conn.as_mut()
            && let Err(error) = ws.flush().await
        {
            self.on_disconnect(format!("write to Kandan failed: {error}"));
        }
    }

    fn emit(&self, event: Lifecycle) {
        // No subscriber is fine: lifecycle events are advisory.
        let _ = self.lifecycle.send(event);
    }
}

enum JoinFailure {
    Rejected(Value),
    Timeout,
}

async fn next_message(conn: &mut Option<Ws>) -> Option<Result<Message, WsError>> {
    match conn {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}

async fn finish_connecting(connecting: &mut Option<Connecting>) -> Result<Ws, ConnectError> {
    match connecting {
        Some(attempt) => attempt.await,
        None => std::future::pending().await,
    }
}

fn connect_error(url: &str, error: WsError) -> ConnectError {
    match error {
        WsError::Http(response) => {
            let status = response.status().as_u16();
            let hint = match status {
                401 | 403 => "the token is invalid, expired or revoked; sign in again",
                404 => "there is no Phoenix socket at this URL; check --kandan-url",
                _ => "unexpected answer to the websocket upgrade",
            };
            ConnectError::Refused {
                url: url.to_owned(),
                status,
                hint,
            }
        }
        WsError::Tls(error) => ConnectError::Tls {
            url: url.to_owned(),
            reason: error.to_string(),
        },
        // rustls reports handshake failures (an unknown issuer, a wrong host name) as
        // io errors wrapping a rustls::Error.
        WsError::Io(error)
            if error
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>()) =>
        {
            ConnectError::Tls {
                url: url.to_owned(),
                reason: error.to_string(),
            }
        }
        WsError::Io(error) => ConnectError::Unreachable {
            url: url.to_owned(),
            reason: error.to_string(),
        },
        other => ConnectError::Unreachable {
            url: url.to_owned(),
            reason: other.to_string(),
        },
    }
}

/// A deadline that never comes, for the idle timer (tokio caps it internally).
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}
