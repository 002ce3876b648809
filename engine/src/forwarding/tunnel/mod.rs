//! The streaming forward tunnel (protocol §6.4): a second WebSocket to Kandan that
//! carries many HTTP and WebSocket streams to local ports at once, with flow control.
//!
//! One task owns the connection: it reads frames, hands each stream's frames to that
//! stream's task, and writes what the stream tasks send through one writer. Streams
//! ([`streams`]) pass every request through the same guard as the control path. When the
//! connection drops, its streams end and the tunnel reconnects with backoff.
pub mod frame;
mod streams;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use url::Url;

use self::frame::{
    Frame, FrameError, INITIAL_WINDOW, Kind, MAX_FRAME, MAX_JSON, MAX_STREAMS, Open, OpenKind,
};
use super::local_http::LocalHttp;
use super::routes::Routes;
use crate::phoenix::Backoff;

/// The subprotocol that names this framing.
pub const SUBPROTOCOL: &str = "linzumi-forward-tunnel.v1";
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(45);
/// tungstenite's read buffer for the tunnel.
const READ_BUFFER: usize = 16 * 1024;
/// The most send credit a stream holds at once.
const MAX_CREDIT: usize = 64 * 1024 * 1024;

/// The ports forwarding may reach right now, and where each is dialled.
pub type AllowedPorts = Arc<dyn Fn() -> Routes + Send + Sync>;

#[derive(Clone)]
pub struct TunnelConfig {
    /// `ws(s)://…/api/v2/local-codex-runner/forward-tunnel?runner_id=…`
    pub url: Url,
    pub token: String,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub reconnect: Backoff,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
}

impl TunnelConfig {
    pub fn new(url: Url, token: String, tls: Option<Arc<rustls::ClientConfig>>) -> TunnelConfig {
        TunnelConfig {
            url,
            token,
            tls,
            reconnect: Backoff::reconnect(),
            ping_interval: PING_INTERVAL,
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelStatus {
    Connecting,
    Connected { generation: u64 },
    Disconnected { reason: String },
}

pub struct ForwardTunnel {
    status: watch::Receiver<TunnelStatus>,
    stop: Option<oneshot::Sender<()>>,
}

impl ForwardTunnel {
    pub fn start(config: TunnelConfig, ports: AllowedPorts, local: LocalHttp) -> ForwardTunnel {
        let (status_tx, status) = watch::channel(TunnelStatus::Connecting);
        let (stop_tx, stop) = oneshot::channel();
        tokio::spawn(keep_connected(config, ports, local, status_tx, stop));
        ForwardTunnel {
            status,
            stop: Some(stop_tx),
        }
    }

    pub fn status(&self) -> watch::Receiver<TunnelStatus> {
        self.status.clone()
    }

    pub fn close(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for ForwardTunnel {
    fn drop(&mut self) {
        self.close();
    }
}

async fn keep_connected(
    config: TunnelConfig,
    ports: AllowedPorts,
    local: LocalHttp,
    status: watch::Sender<TunnelStatus>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut tries = 0;
    let mut generation = 0;
    loop {
        let attempt = tokio::select! {
            attempt = connect(&config) => attempt,
            _ = &mut stop => return,
        };
        match attempt {
            Ok(ws) => {
                tries = 0;
                generation += 1;
                info!(generation, "forward tunnel connected");
                status.send_replace(TunnelStatus::Connected { generation });
                let reason = tokio::select! {
                    reason = run(ws, &config, ports.clone(), local.clone()) => reason,
                    _ = &mut stop => return,
                };
                warn!(%reason, "forward tunnel lost; reconnecting");
                status.send_replace(TunnelStatus::Disconnected { reason });
            }
            Err(reason) => {
                if tries == 0 {
                    warn!(%reason, "forward tunnel could not connect; retrying");
                }
                status.send_replace(TunnelStatus::Disconnected { reason });
            }
        }
        tries += 1;
        tokio::select! {
            () = tokio::time::sleep(config.reconnect.delay(tries)) => {}
            _ = &mut stop => return,
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(config: &TunnelConfig) -> Result<Ws, String> {
    let mut request = config
        .url
        .as_str()
        .into_client_request()
        .map_err(|error| error.to_string())?;
    let headers = request.headers_mut();
    let bearer = format!("Bearer {}", config.token);
    headers.insert(
        http::header::AUTHORIZATION,
        http::HeaderValue::from_str(&bearer)
            .map_err(|_| "the token is not a valid header".to_owned())?,
    );
    headers.insert(
        http::header::SEC_WEBSOCKET_PROTOCOL,
        http::HeaderValue::from_static(SUBPROTOCOL),
    );
    let connector = config
        .tls
        .clone()
        .filter(|_| config.url.scheme() == "wss")
        .map(tokio_tungstenite::Connector::Rustls);
    // tungstenite zeroes its whole read buffer before every read; what the runner reads
    // is mostly small (OPEN, END, WINDOW), so a small buffer saves that work.
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(MAX_FRAME))
        .max_frame_size(Some(MAX_FRAME));
    let attempt =
        tokio_tungstenite::connect_async_tls_with_config(request, Some(ws_config), true, connector);
    match tokio::time::timeout(Duration::from_secs(10), attempt).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => Err(format!(
            "Kandan refused the forward tunnel (HTTP {})",
            response.status().as_u16()
        )),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("no answer within 10s".into()),
    }
}

/// What a stream task gets from the connection.
#[derive(Debug)]
pub(crate) enum StreamInput {
    Data(Bytes),
    /// Kandan's side is done; for a WebSocket, with the browser's close code and reason.
    End(Option<(u16, String)>),
}

/// The connection's side of one stream.
struct StreamEntry {
    input: mpsc::UnboundedSender<StreamInput>,
    /// What this side may still send; `WINDOW` frames add to it.
    credit: Arc<Semaphore>,
    received: u64,
    /// What this side has let Kandan send so far (grown by the stream as it consumes).
    granted: Arc<AtomicU64>,
    /// Kandan sent `END`: any further `DATA` is a protocol error.
    ended: bool,
    cancel: CancellationToken,
}

/// What a stream task uses to talk back.
pub(crate) struct StreamContext {
    pub id: u32,
    /// Frames as they go on the wire.
    pub out: mpsc::UnboundedSender<Bytes>,
    pub input: mpsc::UnboundedReceiver<StreamInput>,
    pub credit: Arc<Semaphore>,
    pub granted: Arc<AtomicU64>,
    pub cancel: CancellationToken,
}

/// Runs one connection until it ends; returns why.
async fn run(ws: Ws, config: &TunnelConfig, ports: AllowedPorts, local: LocalHttp) -> String {
    let (mut sink, mut incoming) = ws.split();
    let (out, mut outgoing) = mpsc::unbounded_channel::<Bytes>();
    let writer = tokio::spawn(async move {
        while let Some(frame) = outgoing.recv().await {
            if sink.feed(Message::Binary(frame)).await.is_err() {
                return;
            }
            // Let the streams that woke with this one queue their frames too (a response's
            // HEAD, DATA and END), so one write carries them all.
            tokio::task::yield_now().await;
            while let Ok(frame) = outgoing.try_recv() {
                if sink.feed(Message::Binary(frame)).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    let (done_tx, done) = mpsc::unbounded_channel::<u32>();
    let mut streams = Streams {
        open: HashMap::new(),
        highest: 0,
        out: out.clone(),
        done: done_tx,
        ports,
        local,
    };
    let mut done = done;
    let mut ping = tokio::time::interval(config.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_seen = Instant::now();
    let reason = loop {
        let idle_at = last_seen + config.idle_timeout;
        tokio::select! {
            message = incoming.next() => {
                last_seen = Instant::now();
                match message {
                    Some(Ok(Message::Binary(bytes))) => match Frame::decode(bytes) {
                        Ok(frame) => streams.on_frame(frame),
                        Err(FrameError::UnknownType { kind, stream }) => {
                            streams.protocol_error(stream, &format!("unknown frame type {kind}"));
                        }
                        Err(error) => warn!(%error, "dropped a malformed tunnel frame"),
                    },
                    Some(Ok(Message::Close(_))) | None => break "Kandan closed the tunnel".to_owned(),
                    Some(Ok(_)) => {}
                    Some(Err(error)) => break format!("tunnel error: {error}"),
                }
            }
            Some(id) = done.recv() => { streams.open.remove(&id); }
            _ = ping.tick() => {
                let _ = out.send(Frame::new(Kind::Ping, 0, Bytes::from_static(b"linzumi!")).encode());
            }
            () = tokio::time::sleep_until(idle_at) => {
                break format!("no frame from Kandan for {:?}", config.idle_timeout);
            }
        }
        if writer.is_finished() {
            break "writing to the tunnel failed".to_owned();
        }
    };
    for (_, stream) in streams.open.drain() {
        stream.cancel.cancel();
    }
    writer.abort();
    reason
}

/// The streams of one connection, and what opening more needs.
struct Streams {
    open: HashMap<u32, StreamEntry>,
    /// The highest id Kandan has opened: frames for lower ids not open any more are late,
    /// not wrong (protocol §6.4).
    highest: u32,
    out: mpsc::UnboundedSender<Bytes>,
    done: mpsc::UnboundedSender<u32>,
    ports: AllowedPorts,
    local: LocalHttp,
}

impl Streams {
    fn send(&self, frame: Frame) {
        // The writer is gone only when the connection is; run() notices that.
        let _ = self.out.send(frame.encode());
    }

    /// Resets a stream Kandan misused; frames that cross a finished stream are ignored.
    fn protocol_error(&mut self, id: u32, message: &str) {
        if id == 0 {
            warn!(message, "ignored a malformed frame on stream 0");
            return;
        }
        if let Some(stream) = self.open.remove(&id) {
            stream.cancel.cancel();
        } else if id <= self.highest {
            return;
        }
        warn!(stream = id, message, "tunnel protocol error");
        self.send(Frame::reset(id, "protocol_error", message));
    }

    fn on_frame(&mut self, frame: Frame) {
        let id = frame.stream;
        match frame.kind {
            Kind::Ping => self.send(Frame::new(Kind::Pong, id, frame.payload)),
            Kind::Pong => {}
            Kind::Open => self.on_open(id, &frame.payload),
            Kind::Data => {
                let Some(stream) = self.open.get_mut(&id) else {
                    return self.unknown(id, "DATA");
                };
                stream.received += frame.payload.len() as u64;
                if stream.ended {
                    return self.protocol_error(id, "DATA after END");
                }
                if stream.received > stream.granted.load(Ordering::Acquire) {
                    return self.protocol_error(id, "DATA beyond the granted window");
                }
                let _ = stream.input.send(StreamInput::Data(frame.payload));
            }
            Kind::End => {
                let Some(stream) = self.open.get_mut(&id) else {
                    return self.unknown(id, "END");
                };
                if stream.ended {
                    return self.protocol_error(id, "a second END");
                }
                stream.ended = true;
                let close = frame.close_of_end();
                let _ = stream.input.send(StreamInput::End(close));
            }
            Kind::Reset => {
                // Never answered with a RESET, whatever the stream.
                if let Some(stream) = self.open.remove(&id) {
                    stream.cancel.cancel();
                }
            }
            Kind::Window => {
                let Some(stream) = self.open.get(&id) else {
                    return self.unknown(id, "WINDOW");
                };
                let Some(credit) = frame.window_credit() else {
                    return self.protocol_error(id, "a WINDOW payload is 4 bytes");
                };
                // Never more than MAX_CREDIT outstanding, whatever a peer grants.
                let room = MAX_CREDIT.saturating_sub(stream.credit.available_permits());
                stream.credit.add_permits((credit as usize).min(room));
            }
            Kind::Head => self.protocol_error(id, "Kandan does not send HEAD"),
        }
    }

    /// A frame for a stream that is not open: late if Kandan opened it before.
    fn unknown(&mut self, id: u32, kind: &str) {
        if id > self.highest {
            self.protocol_error(id, &format!("{kind} for a stream that was never opened"));
        }
    }

    fn on_open(&mut self, id: u32, payload: &[u8]) {
        if id == 0 || id <= self.highest {
            return self.send(Frame::reset(
                id,
                "bad_open",
                "stream ids only grow and are never reused",
            ));
        }
        self.highest = id;
        if self.open.len() >= MAX_STREAMS {
            return self.send(Frame::reset(
                id,
                "too_many_streams",
                &format!("at most {MAX_STREAMS} streams at once"),
            ));
        }
        if payload.len() > MAX_JSON {
            return self.send(Frame::reset(id, "bad_open", "an OPEN payload over 256 KiB"));
        }
        let open: Open = match serde_json::from_slice(payload) {
            Ok(open) => open,
            Err(error) => return self.send(Frame::reset(id, "bad_open", &error.to_string())),
        };
        let (input_tx, input) = mpsc::unbounded_channel();
        let entry = StreamEntry {
            input: input_tx,
            credit: Arc::new(Semaphore::new(INITIAL_WINDOW as usize)),
            received: 0,
            granted: Arc::new(AtomicU64::new(u64::from(INITIAL_WINDOW))),
            ended: false,
            cancel: CancellationToken::new(),
        };
        let context = StreamContext {
            id,
            out: self.out.clone(),
            input,
            credit: entry.credit.clone(),
            granted: entry.granted.clone(),
            cancel: entry.cancel.clone(),
        };
        self.open.insert(id, entry);
        let allowed = (self.ports)();
        let local = self.local.clone();
        let done = self.done.clone();
        debug!(stream = id, port = open.port, kind = ?open.kind, "tunnel stream opened");
        // Boxed: the stream's future is large, and tokio moves an unboxed one several times.
        tokio::spawn(Box::pin(async move {
            match open.kind {
                OpenKind::Http => streams::http(context, open, &allowed, &local).await,
                OpenKind::Websocket => streams::websocket(context, open, &allowed).await,
            }
            let _ = done.send(id);
        }));
    }
}
