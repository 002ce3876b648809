#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The forward tunnel and port previews (protocol §6.4) over real sockets: a stand-in runner
//! written here from the spec, a local axum "dev server", and HTTP and WebSocket clients going
//! through the preview host and path.

mod common;

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::{Message as AxumMessage, WebSocket as AxumWebSocket, WebSocketUpgrade};
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use futures_util::{SinkExt, StreamExt};
use kandan_test_server::{KandanTestServer, ServerConfig};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{RwLock, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const TUNNEL_PATH: &str = "/api/v2/local-codex-runner/forward-tunnel";
const SUBPROTOCOL: &str = "linzumi-forward-tunnel.v1";
/// How long anything that should happen may take.
const WAIT: Duration = Duration::from_secs(10);
/// How long to listen to conclude that nothing is coming.
const SILENCE: Duration = Duration::from_millis(300);

const OPEN: u8 = 1;
const HEAD: u8 = 2;
const DATA: u8 = 3;
const END: u8 = 4;
const RESET: u8 = 5;
const WINDOW: u8 = 6;
const PING: u8 = 7;
const PONG: u8 = 8;
const INITIAL_WINDOW: u64 = 256 * 1024;
const MAX_DATA: usize = 64 * 1024;
const MAX_WEBSOCKET_MESSAGE: usize = 8 * 1024 * 1024;
/// The flag byte of a websocket `DATA`: `FIN | opcode`.
const FIN: u8 = 0x80;
const TEXT: u8 = 1;
const BINARY: u8 = 2;
const PING_OPCODE: u8 = 9;
const PONG_OPCODE: u8 = 10;

/// Every test shares the process with the others; the memory test needs it to itself.
static SERIAL: RwLock<()> = RwLock::const_new(());

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

// ---------------------------------------------------------------------------------------------
// The wire format, written from §6.4.

fn frame(kind: u8, stream: u32, payload: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(5 + payload.len());
    bytes.push(kind);
    bytes.extend_from_slice(&stream.to_be_bytes());
    bytes.extend_from_slice(payload);
    Message::binary(bytes)
}

fn json_frame(kind: u8, stream: u32, payload: &Value) -> Message {
    frame(kind, stream, payload.to_string().as_bytes())
}

/// A websocket `END` payload: nothing, or the close code then the reason.
fn close_payload(close: Option<(u16, &str)>) -> Vec<u8> {
    close.map_or_else(Vec::new, |(code, reason)| {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        payload
    })
}

/// A `DATA` payload for a websocket stream: the flag byte, then the bytes.
fn ws_data(flags: u8, bytes: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(1 + bytes.len());
    payload.push(flags);
    payload.extend_from_slice(bytes);
    payload
}

fn parse(bytes: &Bytes) -> (u8, u32, Bytes) {
    assert!(bytes.len() >= 5, "a frame shorter than its header");
    let stream = u32::from_be_bytes(bytes[1..5].try_into().expect("4 bytes"));
    (bytes[0], stream, bytes.slice(5..))
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn tunnel_request(
    server: &KandanTestServer,
    token: Option<&str>,
    runner_id: &str,
    subprotocol: bool,
) -> tungstenite::handshake::client::Request {
    let url = format!("{}{TUNNEL_PATH}?runner_id={runner_id}", server.ws_url());
    let mut request = url.into_client_request().expect("request");
    if let Some(token) = token {
        let bearer = format!("Bearer {token}").parse().expect("header");
        request.headers_mut().insert("authorization", bearer);
    }
    if subprotocol {
        let protocol = SUBPROTOCOL.parse().expect("header");
        request
            .headers_mut()
            .insert("sec-websocket-protocol", protocol);
    }
    request
}

async fn connect_tunnel(server: &KandanTestServer, user: &str, runner_id: &str) -> Socket {
    let token = server.issue_token(user, None);
    let request = tunnel_request(server, Some(&token), runner_id, true);
    let (socket, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the tunnel connects");
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        SUBPROTOCOL,
        "the subprotocol is echoed"
    );
    socket
}

/// The status a refused tunnel upgrade got.
async fn refused_status(request: tungstenite::handshake::client::Request) -> (u16, String) {
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => panic!("the tunnel was accepted"),
        Err(tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_ref()
                .map(|body| String::from_utf8_lossy(body).into_owned())
                .unwrap_or_default();
            (response.status().as_u16(), body)
        }
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
    }
}

/// A bare tunnel connection that shows the wire: tests send and expect frames by hand.
struct RawTunnel {
    socket: Socket,
}

impl RawTunnel {
    async fn connect(server: &KandanTestServer, runner_id: &str) -> RawTunnel {
        let socket = connect_tunnel(server, "tester", runner_id).await;
        server
            .wait_for_tunnel(runner_id, WAIT)
            .await
            .expect("registered");
        RawTunnel { socket }
    }

    async fn send(&mut self, message: Message) {
        self.socket.send(message).await.expect("send");
    }

    /// The next frame as `(type, stream, payload)`.
    async fn recv(&mut self) -> (u8, u32, Bytes) {
        loop {
            match within("a tunnel frame", self.socket.next()).await {
                Some(Ok(Message::Binary(bytes))) => return parse(&bytes),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a binary frame, got {other:?}"),
            }
        }
    }

    /// The next frame, which must be `OPEN`; returns its stream and JSON.
    async fn recv_open(&mut self) -> (u32, Value) {
        let (kind, stream, payload) = self.recv().await;
        assert_eq!(kind, OPEN, "expected OPEN");
        (
            stream,
            serde_json::from_slice(&payload).expect("OPEN is JSON"),
        )
    }

    async fn expect_silence(&mut self) {
        if let Ok(next) = tokio::time::timeout(SILENCE, self.socket.next()).await {
            panic!("expected silence, got {next:?}");
        }
    }

    /// Waits for the connection to end: `Some(code)` for a close frame, `None` for plain EOF.
    async fn wait_closed(&mut self) -> Option<u16> {
        loop {
            match within("the tunnel closes", self.socket.next()).await {
                None | Some(Err(_)) => return None,
                Some(Ok(Message::Close(close))) => return close.map(|close| close.code.into()),
                Some(Ok(_)) => continue,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A stand-in runner: serves http and websocket streams from 127.0.0.1, honoring the windows,
// and counts any DATA it receives beyond what it granted.

#[derive(Default)]
struct Stats {
    /// DATA frames that went beyond the window the stand-in had granted.
    window_violations: AtomicUsize,
    largest_data: AtomicUsize,
    data_received: AtomicU64,
    windows_granted: AtomicUsize,
    /// Websocket `DATA` fragments received, and how many broke the framing of §6.4.
    fragments_received: AtomicUsize,
    bad_fragments: AtomicUsize,
    /// The close code of every websocket `END` Kandan sent (`None` for an empty one).
    ends_received: Mutex<Vec<Option<u16>>>,
}

enum Inbound {
    Data(Bytes),
    End(Bytes),
}

struct Slot {
    inbound: mpsc::UnboundedSender<Inbound>,
    /// Everything Kandan allowed us to send (initial window + its WINDOWs).
    send_window: watch::Sender<u64>,
    /// Everything we allowed Kandan to send.
    granted: Arc<AtomicU64>,
    received: u64,
}

struct Shared {
    out: mpsc::UnboundedSender<Message>,
    stats: Stats,
    streams: Mutex<HashMap<u32, Slot>>,
    opens: Mutex<Vec<Value>>,
    http: reqwest::Client,
}

impl Shared {
    fn send(&self, message: Message) {
        let _ = self.out.send(message);
    }

    /// Grants `len` more bytes: counted before the WINDOW leaves, so a fast sender is never
    /// mistaken for a violator.
    fn grant(&self, stream: u32, len: usize) {
        if len == 0 {
            return;
        }
        if let Some(slot) = self.streams.lock().unwrap().get(&stream) {
            slot.granted.fetch_add(len as u64, Ordering::SeqCst);
        }
        self.stats.windows_granted.fetch_add(1, Ordering::SeqCst);
        self.send(frame(WINDOW, stream, &(len as u32).to_be_bytes()));
    }

    /// Waits until Kandan's window has room for `need` more bytes; returns the room.
    async fn room(window: &mut watch::Receiver<u64>, sent: u64, need: u64) -> Result<usize, ()> {
        let granted = *window
            .wait_for(|granted| granted - sent >= need)
            .await
            .map_err(|_| ())?;
        Ok((granted - sent) as usize)
    }

    /// Sends `payload` as DATA frames within Kandan's window.
    async fn send_data(
        &self,
        stream: u32,
        window: &mut watch::Receiver<u64>,
        sent: &mut u64,
        mut payload: Bytes,
    ) -> Result<(), ()> {
        while !payload.is_empty() {
            let room = Self::room(window, *sent, 1).await?;
            let len = payload.len().min(room).min(MAX_DATA);
            self.send(frame(DATA, stream, &payload.split_to(len)));
            *sent += len as u64;
        }
        Ok(())
    }

    /// Sends one WebSocket message as fragments of whatever size the window allows (at most
    /// one DATA payload), the flag byte counted.
    async fn send_message(
        &self,
        stream: u32,
        window: &mut watch::Receiver<u64>,
        sent: &mut u64,
        opcode: u8,
        mut bytes: Bytes,
    ) -> Result<(), ()> {
        let mut first = true;
        loop {
            let need = bytes.len().min(1) as u64 + 1;
            let room = Self::room(window, *sent, need).await?;
            let chunk = bytes.split_to(bytes.len().min(room - 1).min(MAX_DATA - 1));
            let mut flags = if first { opcode } else { 0 };
            if bytes.is_empty() {
                flags |= FIN;
            }
            let payload = ws_data(flags, &chunk);
            *sent += payload.len() as u64;
            self.send(frame(DATA, stream, &payload));
            first = false;
            if bytes.is_empty() {
                return Ok(());
            }
        }
    }
}

struct StandIn {
    shared: Arc<Shared>,
    closed: watch::Receiver<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "origin",
];

impl StandIn {
    async fn start(server: &KandanTestServer, runner_id: &str) -> StandIn {
        let socket = connect_tunnel(server, "tester", runner_id).await;
        let (mut sink, mut stream) = socket.split();
        let (out, mut queue) = mpsc::unbounded_channel::<Message>();
        let http = reqwest_client().build().expect("client");
        let shared = Arc::new(Shared {
            out,
            stats: Stats::default(),
            streams: Mutex::new(HashMap::new()),
            opens: Mutex::new(Vec::new()),
            http,
        });
        let (closed_tx, closed) = watch::channel(false);
        let writer = tokio::spawn(async move {
            while let Some(message) = queue.recv().await {
                if sink.send(message).await.is_err() {
                    return;
                }
            }
        });
        let reader_shared = Arc::clone(&shared);
        let reader = tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                if let Message::Binary(bytes) = message {
                    reader_shared.handle(parse(&bytes));
                }
            }
            reader_shared.streams.lock().unwrap().clear();
            closed_tx.send_replace(true);
        });
        server
            .wait_for_tunnel(runner_id, WAIT)
            .await
            .expect("registered");
        StandIn {
            shared,
            closed,
            tasks: vec![writer, reader],
        }
    }

    fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    fn opens(&self) -> Vec<Value> {
        self.shared.opens.lock().unwrap().clone()
    }

    async fn wait_closed(&mut self) {
        within("the stand-in's tunnel closes", self.closed.wait_for(|c| *c))
            .await
            .expect("watch");
    }
}

impl Shared {
    fn handle(self: &Arc<Self>, (kind, stream, payload): (u8, u32, Bytes)) {
        match kind {
            OPEN => {
                let open: Value = serde_json::from_slice(&payload).expect("OPEN is JSON");
                self.opens.lock().unwrap().push(open.clone());
                let (inbound, inbound_rx) = mpsc::unbounded_channel();
                let send_window = watch::Sender::new(INITIAL_WINDOW);
                let window = send_window.subscribe();
                let slot = Slot {
                    inbound,
                    send_window,
                    granted: Arc::new(AtomicU64::new(INITIAL_WINDOW)),
                    received: 0,
                };
                self.streams.lock().unwrap().insert(stream, slot);
                let shared = Arc::clone(self);
                tokio::spawn(async move {
                    match open["kind"].as_str() {
                        Some("http") => shared.serve_http(stream, open, inbound_rx, window).await,
                        Some("websocket") => {
                            shared
                                .serve_websocket(stream, open, inbound_rx, window)
                                .await
                        }
                        other => panic!("unknown stream kind {other:?}"),
                    }
                });
            }
            DATA => {
                let stats = &self.stats;
                let mut streams = self.streams.lock().unwrap();
                let Some(slot) = streams.get_mut(&stream) else {
                    return;
                };
                slot.received += payload.len() as u64;
                if slot.received > slot.granted.load(Ordering::SeqCst) {
                    stats.window_violations.fetch_add(1, Ordering::SeqCst);
                }
                stats
                    .largest_data
                    .fetch_max(payload.len(), Ordering::SeqCst);
                stats
                    .data_received
                    .fetch_add(payload.len() as u64, Ordering::SeqCst);
                let _ = slot.inbound.send(Inbound::Data(payload));
            }
            END => {
                if let Some(slot) = self.streams.lock().unwrap().get(&stream) {
                    let _ = slot.inbound.send(Inbound::End(payload));
                }
            }
            // Dropping the slot ends the stream's task (its channels close).
            RESET => drop(self.streams.lock().unwrap().remove(&stream)),
            WINDOW => {
                let increment = u32::from_be_bytes(payload[..].try_into().expect("u32"));
                if let Some(slot) = self.streams.lock().unwrap().get(&stream) {
                    slot.send_window
                        .send_modify(|granted| *granted += u64::from(increment));
                }
            }
            PING => self.send(frame(PONG, stream, &payload)),
            PONG => {}
            other => panic!("unexpected frame type {other}"),
        }
    }

    fn reset(&self, stream: u32, code: &str, message: &str) {
        self.streams.lock().unwrap().remove(&stream);
        self.send(json_frame(
            RESET,
            stream,
            &json!({"code": code, "message": message}),
        ));
    }

    async fn serve_http(
        self: Arc<Self>,
        stream: u32,
        open: Value,
        inbound: mpsc::UnboundedReceiver<Inbound>,
        mut window: watch::Receiver<u64>,
    ) {
        let mut url = format!(
            "http://127.0.0.1:{}{}",
            open["port"],
            open["path"].as_str().expect("path")
        );
        if let Some(query) = open["query"].as_str() {
            url = format!("{url}?{query}");
        }
        let method = reqwest::Method::from_bytes(open["method"].as_str().expect("m").as_bytes())
            .expect("method");
        // The request body: granted back as reqwest takes it.
        let shared = Arc::clone(&self);
        let body = futures_util::stream::unfold(inbound, move |mut inbound| {
            let shared = Arc::clone(&shared);
            async move {
                match inbound.recv().await {
                    Some(Inbound::Data(data)) => {
                        shared.grant(stream, data.len());
                        Some((Ok::<Bytes, io::Error>(data), inbound))
                    }
                    Some(Inbound::End(_)) => None,
                    None => Some((Err(io::Error::other("reset")), inbound)),
                }
            }
        });
        let mut request = self
            .http
            .request(method, url)
            .body(reqwest::Body::wrap_stream(body));
        for pair in open["headers"].as_array().expect("headers") {
            let (name, value) = (pair[0].as_str().expect("n"), pair[1].as_str().expect("v"));
            if !HOP_BY_HOP.contains(&name) {
                request = request.header(name, value);
            }
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => {
                let message = format!("127.0.0.1:{}: {err}", open["port"]);
                return self.reset(stream, "connect_failed", &message);
            }
        };
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .filter(|(name, _)| !HOP_BY_HOP.contains(&name.as_str()))
            .map(|(name, value)| {
                let value = value.to_str().expect("ascii").to_owned();
                (name.as_str().to_owned(), value)
            })
            .collect();
        let head = json!({"status": response.status().as_u16(), "headers": headers});
        self.send(json_frame(HEAD, stream, &head));
        let mut body = response.bytes_stream();
        let mut sent = 0;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(chunk) => {
                    let delivered = self.send_data(stream, &mut window, &mut sent, chunk).await;
                    if delivered.is_err() {
                        return;
                    }
                }
                Err(err) => return self.reset(stream, "upstream_error", &err.to_string()),
            }
        }
        self.send(frame(END, stream, &[]));
    }

    async fn serve_websocket(
        self: Arc<Self>,
        stream: u32,
        open: Value,
        mut inbound: mpsc::UnboundedReceiver<Inbound>,
        mut window: watch::Receiver<u64>,
    ) {
        let url = format!(
            "ws://127.0.0.1:{}{}",
            open["port"],
            open["path"].as_str().expect("path")
        );
        let mut request = url.into_client_request().expect("request");
        for pair in open["headers"].as_array().expect("headers") {
            if pair[0] == "sec-websocket-protocol" {
                let value = pair[1].as_str().expect("v").parse().expect("value");
                request
                    .headers_mut()
                    .insert("sec-websocket-protocol", value);
            }
        }
        let (local, response) = match tokio_tungstenite::connect_async(request).await {
            Ok(connected) => connected,
            Err(err) => return self.reset(stream, "connect_failed", &err.to_string()),
        };
        let protocol = response
            .headers()
            .get("sec-websocket-protocol")
            .map(|value| value.to_str().expect("ascii").to_owned());
        self.send(json_frame(HEAD, stream, &json!({"protocol": protocol})));
        let (mut local_sink, mut local_stream) = local.split();
        let mut sent = 0;
        // A message from Kandan whose last fragment has not come yet.
        let mut partial: Option<(u8, Vec<u8>)> = None;
        loop {
            tokio::select! {
                message = local_stream.next() => {
                    let (opcode, bytes) = match message {
                        Some(Ok(Message::Text(text))) => (TEXT, Bytes::from(text)),
                        Some(Ok(Message::Binary(bytes))) => (BINARY, bytes),
                        Some(Ok(Message::Ping(bytes))) => (PING_OPCODE, bytes),
                        Some(Ok(Message::Pong(bytes))) => (PONG_OPCODE, bytes),
                        Some(Ok(Message::Frame(_))) => continue,
                        Some(Ok(Message::Close(close))) => {
                            let close = close.as_ref().map(|c| (u16::from(c.code), c.reason.as_str()));
                            self.send(frame(END, stream, &close_payload(close)));
                            return;
                        }
                        Some(Err(_)) | None => {
                            let gone = close_payload(Some((1011, "the local server went away")));
                            self.send(frame(END, stream, &gone));
                            return;
                        }
                    };
                    let delivered = self
                        .send_message(stream, &mut window, &mut sent, opcode, bytes)
                        .await;
                    if delivered.is_err() {
                        return;
                    }
                }
                inbound = inbound.recv() => match inbound {
                    Some(Inbound::Data(data)) => {
                        let len = data.len();
                        self.stats.fragments_received.fetch_add(1, Ordering::SeqCst);
                        let Some(message) = self.reassemble(&mut partial, &data) else {
                            self.grant(stream, len);
                            continue;
                        };
                        if local_sink.send(message).await.is_err() {
                            return self.reset(stream, "upstream_error", "local socket gone");
                        }
                        self.grant(stream, len);
                    }
                    Some(Inbound::End(payload)) => {
                        let close = (payload.len() >= 2).then(|| {
                            let code = u16::from_be_bytes([payload[0], payload[1]]);
                            let reason = String::from_utf8(payload[2..].to_vec()).expect("utf-8");
                            (code, reason)
                        });
                        self.stats.ends_received.lock().unwrap().push(close.as_ref().map(|c| c.0));
                        let frame_out = close.as_ref().map(|(code, reason)| CloseFrame {
                            code: (*code).into(),
                            reason: reason.as_str().into(),
                        });
                        let _ = local_sink.send(Message::Close(frame_out)).await;
                        let echo = close.as_ref().map(|(code, reason)| (*code, reason.as_str()));
                        self.send(frame(END, stream, &close_payload(echo)));
                        return;
                    }
                    None => return,
                },
            }
        }
    }

    /// Adds one websocket `DATA` from Kandan to `partial`; returns the message once whole.
    /// Framing errors are counted, not panicked on (this runs in a spawned task).
    fn reassemble(&self, partial: &mut Option<(u8, Vec<u8>)>, data: &[u8]) -> Option<Message> {
        let bad = || {
            self.stats.bad_fragments.fetch_add(1, Ordering::SeqCst);
            None
        };
        let Some((&flags, bytes)) = data.split_first() else {
            return bad();
        };
        let (fin, opcode) = (flags & FIN != 0, flags & 0x7f);
        let (opcode, mut message) = match (opcode, partial.take()) {
            (0, Some(started)) => started,
            (TEXT | BINARY, None) => (opcode, Vec::new()),
            (PING_OPCODE | PONG_OPCODE, None) if fin => (opcode, Vec::new()),
            _ => return bad(),
        };
        message.extend_from_slice(bytes);
        if !fin {
            *partial = Some((opcode, message));
            return None;
        }
        Some(match opcode {
            TEXT => Message::text(String::from_utf8(message).expect("utf-8")),
            BINARY => Message::binary(message),
            PING_OPCODE => Message::Ping(message.into()),
            _ => Message::Pong(message.into()),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The local "dev server" the stand-in forwards to.

struct DevServer {
    port: u16,
    /// What its WebSocket route saw: "client closed <code> <reason>".
    events: mpsc::UnboundedReceiver<String>,
    _task: JoinHandle<()>,
}

async fn start_dev_server() -> DevServer {
    let (events_tx, events) = mpsc::unbounded_channel();
    let app = Router::new()
        .route("/hello", get(hello))
        .route("/big", get(big))
        .route("/ws", get(websocket))
        .fallback(any(echo))
        .with_state(events_tx);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("dev server");
    });
    DevServer {
        port,
        events,
        _task: task,
    }
}

async fn hello() -> Response {
    (
        [("x-dev", "yes"), ("content-type", "text/plain")],
        "hello from dev",
    )
        .into_response()
}

/// FNV-1a, to check that a body arrived whole and in order.
fn fnv(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x100_0000_01b3)
    })
}
const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// Any other path: says what arrived (the body is hashed as it streams, not buffered).
async fn echo(request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let mut chunks = body.into_data_stream();
    let (mut len, mut hash) = (0, FNV_START);
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.expect("request body");
        len += chunk.len();
        hash = fnv(hash, &chunk);
    }
    let header = |name: &str| parts.headers.get(name).map(|v| v.to_str().expect("ascii"));
    axum::Json(json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "x_test": header("x-test"),
        "body_len": len,
        "body_hash": hash,
    }))
    .into_response()
}

/// `?bytes=N` bytes of `i % 251`, generated on the fly.
async fn big(Query(query): Query<HashMap<String, usize>>) -> Response {
    let total = query["bytes"];
    let chunks = futures_util::stream::unfold(0usize, move |offset| async move {
        (offset < total).then(|| {
            let len = MAX_DATA.min(total - offset);
            let chunk: Vec<u8> = (offset..offset + len).map(|i| (i % 251) as u8).collect();
            (Ok::<Bytes, io::Error>(Bytes::from(chunk)), offset + len)
        })
    });
    Body::from_stream(chunks).into_response()
}

async fn websocket(
    State(events): State<mpsc::UnboundedSender<String>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .protocols(["chat"])
        .on_upgrade(move |socket| echo_socket(socket, events))
}

/// Echoes text and binary; closes itself on "close-me"; reports the client's close.
async fn echo_socket(mut socket: AxumWebSocket, events: mpsc::UnboundedSender<String>) {
    while let Some(Ok(message)) = socket.recv().await {
        match message {
            AxumMessage::Text(text) if text.as_str() == "close-me" => {
                let close = axum::extract::ws::CloseFrame {
                    code: 4001,
                    reason: "bye".into(),
                };
                let _ = socket.send(AxumMessage::Close(Some(close))).await;
                return;
            }
            AxumMessage::Text(text) => {
                let reply = format!("echo: {}", text.as_str());
                let _ = socket.send(AxumMessage::Text(reply.into())).await;
            }
            AxumMessage::Binary(bytes) => {
                let _ = socket.send(AxumMessage::Binary(bytes)).await;
            }
            AxumMessage::Close(close) => {
                let event = match close {
                    Some(close) => {
                        format!("client closed {} {}", close.code, close.reason.as_str())
                    }
                    None => "client closed without a status".to_owned(),
                };
                let _ = events.send(event);
                return;
            }
            AxumMessage::Ping(_) | AxumMessage::Pong(_) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Clients.

fn reqwest_client() -> reqwest::ClientBuilder {
    // reqwest is built without a rustls crypto provider and insists on one even for plain HTTP.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
}

/// A client that resolves the preview host of `(runner_id, port)` to the server.
fn preview_client(server: &KandanTestServer, runner_id: &str, port: u16) -> reqwest::Client {
    reqwest_client()
        .resolve(&preview_host(runner_id, port), server.addr())
        .build()
        .expect("client")
}

fn preview_host(runner_id: &str, port: u16) -> String {
    format!("p{port}-{runner_id}.preview.localhost")
}

/// A WebSocket to the preview host (resolved by hand: `*.localhost` is the browser's job).
async fn preview_websocket(
    server: &KandanTestServer,
    url: &str,
    protocols: &str,
) -> Result<(Socket, tungstenite::handshake::client::Response), tungstenite::Error> {
    let mut request = url.into_client_request().expect("request");
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocols.parse().expect("value"));
    request
        .headers_mut()
        .insert("origin", "http://example.test".parse().expect("value"));
    let tcp = TcpStream::connect(server.addr()).await.expect("tcp");
    tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(tcp)).await
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .expect("VmRSS");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|kib| kib.parse().ok())
        .expect("a number");
    kib * 1024
}

async fn start_server() -> KandanTestServer {
    KandanTestServer::start(ServerConfig::default())
        .await
        .expect("server starts")
}

/// A port nobody listens on.
async fn dead_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Receives `DATA` on `stream` until `until` bytes arrived in all; never more.
async fn recv_data(tunnel: &mut RawTunnel, stream: u32, received: &mut u64, until: u64) {
    while *received < until {
        let (kind, id, payload) = tunnel.recv().await;
        assert_eq!((kind, id), (DATA, stream));
        assert!(payload.len() <= MAX_DATA, "{} bytes", payload.len());
        *received += payload.len() as u64;
    }
    assert_eq!(*received, until, "no more than the window");
}

/// A GET through the preview path of `runner_id` whose `OPEN` (and request `END`) the raw
/// runner took; returns the stream and the pending response.
async fn open_http(
    server: &KandanTestServer,
    tunnel: &mut RawTunnel,
    runner_id: &str,
) -> (u32, JoinHandle<reqwest::Result<reqwest::Response>>) {
    let client = reqwest_client().build().expect("client");
    let url = format!("{}x", server.preview_path_url(runner_id, 3000));
    let request = tokio::spawn(client.get(url).send());
    let (stream, open) = tunnel.recv_open().await;
    assert_eq!(open["kind"], json!("http"));
    assert_eq!(tunnel.recv().await, (END, stream, Bytes::new()), "no body");
    (stream, request)
}

/// The text of the 502 a pending preview request got.
async fn bad_gateway(request: JoinHandle<reqwest::Result<reqwest::Response>>) -> String {
    let response = within("the response", request)
        .await
        .expect("task")
        .expect("response");
    assert_eq!(response.status(), 502);
    response.text().await.expect("body")
}

/// A WebSocket through the preview path of `runner_id`, accepted by the raw runner with `HEAD`.
async fn open_websocket(
    server: &KandanTestServer,
    tunnel: &mut RawTunnel,
    runner_id: &str,
) -> (Socket, u32) {
    let url = format!("ws://{}/preview/{runner_id}/9/", server.addr());
    let connecting = tokio::spawn(tokio_tungstenite::connect_async(url));
    let (stream, open) = tunnel.recv_open().await;
    assert_eq!(open["kind"], json!("websocket"));
    tunnel.send(json_frame(HEAD, stream, &json!({}))).await;
    let (socket, _) = within("the upgrade", connecting)
        .await
        .expect("task")
        .expect("upgraded");
    (socket, stream)
}

/// Reads the client's socket up to the server's close frame: `Some((code, reason))`, or `None`
/// for a close frame without a status.
async fn recv_close(socket: &mut Socket) -> Option<(u16, String)> {
    loop {
        match within("a close frame", socket.next()).await {
            Some(Ok(Message::Close(close))) => {
                return close.map(|close| (close.code.into(), close.reason.to_string()));
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// `bytes` as websocket `DATA` payloads of at most `size` bytes after the flag byte.
fn ws_fragments(opcode: u8, bytes: &[u8], size: usize) -> Vec<Vec<u8>> {
    let chunks: Vec<&[u8]> = match bytes.is_empty() {
        true => vec![&[]],
        false => bytes.chunks(size).collect(),
    };
    let last = chunks.len() - 1;
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let mut flags = if i == 0 { opcode } else { 0 };
            if i == last {
                flags |= FIN;
            }
            ws_data(flags, chunk)
        })
        .collect()
}

impl RawTunnel {
    /// Sends frames in one write, so that the server reads them back to back.
    async fn send_together(&mut self, messages: Vec<Message>) {
        for message in messages {
            self.socket.feed(message).await.expect("feed");
        }
        self.socket.flush().await.expect("flush");
    }

    /// Takes a WINDOW on `stream` into `window`.
    async fn recv_window(&mut self, stream: u32, window: &mut u64) {
        let (kind, id, payload) = self.recv().await;
        assert_eq!((kind, id), (WINDOW, stream), "expected a WINDOW");
        *window += u64::from(u32::from_be_bytes(payload[..].try_into().expect("u32")));
    }

    /// Sends `DATA` payloads on `stream` within Kandan's window, taking the WINDOWs it sends
    /// meanwhile.
    async fn send_within_window(&mut self, stream: u32, payloads: Vec<Vec<u8>>, window: &mut u64) {
        for payload in payloads {
            while *window < payload.len() as u64 {
                self.recv_window(stream, window).await;
            }
            *window -= payload.len() as u64;
            self.send(frame(DATA, stream, &payload)).await;
        }
    }

    /// Receives one websocket message's `DATA` on `stream` like a runner that grants each
    /// fragment back once it has it; checks each stays within the window. Returns every
    /// fragment's flag byte, and the message.
    async fn recv_message(&mut self, stream: u32, window: &mut u64) -> (Vec<u8>, Vec<u8>) {
        let (mut flags, mut message) = (Vec::new(), Vec::new());
        loop {
            let (kind, id, payload) = self.recv().await;
            assert_eq!((kind, id), (DATA, stream), "expected DATA");
            assert!(payload.len() <= MAX_DATA, "{} bytes", payload.len());
            assert!(payload.len() as u64 <= *window, "DATA beyond the window");
            *window -= payload.len() as u64;
            flags.push(payload[0]);
            message.extend_from_slice(&payload[1..]);
            let len = payload.len() as u32;
            self.send(frame(WINDOW, stream, &len.to_be_bytes())).await;
            *window += u64::from(len);
            if payload[0] & FIN != 0 {
                return (flags, message);
            }
        }
    }

    /// The next frame but `WINDOW`s on `stream`, which must be a `RESET` of it: its code and
    /// message.
    async fn recv_reset(&mut self, stream: u32) -> (String, String) {
        loop {
            match self.recv().await {
                (WINDOW, id, _) if id == stream => continue,
                (RESET, id, payload) => {
                    assert_eq!(id, stream, "RESET of the wrong stream");
                    let reset: Value = serde_json::from_slice(&payload).expect("RESET is JSON");
                    let text = |key: &str| reset[key].as_str().expect("a string").to_owned();
                    return (text("code"), text("message"));
                }
                other => panic!("expected RESET of {stream}, got {other:?}"),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[tokio::test]
async fn get_through_the_subdomain_and_the_path_preview() {
    let _shared = SERIAL.read().await;
    let server = start_server().await;
    let dev = start_dev_server().await;
    let runner = StandIn::start(&server, "runner-a1").await;
    let client = preview_client(&server, "runner-a1", dev.port);

    let url = format!("{}hello", server.preview_url("runner-a1", dev.port));
    assert_eq!(
        url,
        format!(
            "http://p{}-runner-a1.preview.localhost:{}/hello",
            dev.port,
            server.addr().port()
        )
    );
    let response = client.get(&url).send().await.expect("subdomain preview");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-dev"], "yes");
    assert_eq!(response.headers()["content-type"], "text/plain");
    assert_eq!(response.text().await.expect("body"), "hello from dev");

    let open = &runner.opens()[0];
    assert_eq!(open["kind"], json!("http"));
    assert_eq!(open["port"], json!(dev.port));
    assert_eq!(
        (&open["method"], &open["path"]),
        (&json!("GET"), &json!("/hello"))
    );
    assert!(open.get("query").is_none(), "no query: {open}");
    let host = json!([
        "host",
        format!(
            "{}:{}",
            preview_host("runner-a1", dev.port),
            server.addr().port()
        )
    ]);
    assert!(
        open["headers"].as_array().expect("list").contains(&host),
        "headers pass as received: {open}"
    );

    // The path form: the rest after the port is the path, the query travels separately.
    let base = server.preview_path_url("runner-a1", dev.port);
    assert_eq!(
        base,
        format!("{}/preview/runner-a1/{}/", server.http_url(), dev.port)
    );
    let echoed: Value = client
        .delete(format!("{base}api/items/7?sort=asc&x=%20"))
        .header("x-test", "through the path")
        .send()
        .await
        .expect("path preview")
        .json()
        .await
        .expect("json");
    assert_eq!(
        echoed,
        json!({"method": "DELETE", "path": "/api/items/7", "query": "sort=asc&x=%20",
               "x_test": "through the path", "body_len": 0, "body_hash": FNV_START})
    );
    assert_eq!(runner.opens()[1]["query"], json!("sort=asc&x=%20"));
    assert_eq!(runner.opens().len(), 2);

    // Without the slash after the port, relative links would break: redirected.
    let bare = client
        .get(format!(
            "{}/preview/runner-a1/{}?a=1",
            server.http_url(),
            dev.port
        ))
        .send()
        .await
        .expect("bare path");
    assert_eq!(bare.status(), 308);
    assert_eq!(
        bare.headers()["location"],
        format!("/preview/runner-a1/{}/?a=1", dev.port).as_str()
    );
}

#[tokio::test]
async fn preview_hosts_never_reach_the_servers_own_routes() {
    let _shared = SERIAL.read().await;
    let server = start_server().await;
    let dev = start_dev_server().await;
    let _runner = StandIn::start(&server, "r-routes").await;
    let client = preview_client(&server, "r-routes", dev.port);
    let base = server.preview_url("r-routes", dev.port);
    // A GET-only route, an admin route and the socket all belong to the dev server here.
    for (method, path) in [
        (
            reqwest::Method::POST,
            "api/v2/local-codex-runner/oauth/validate",
        ),
        (reqwest::Method::GET, "__admin/events"),
        (reqwest::Method::PUT, "socket/websocket"),
    ] {
        let echoed: Value = client
            .request(method.clone(), format!("{base}{path}"))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("the dev server answered");
        assert_eq!(echoed["path"], json!(format!("/{path}")));
        assert_eq!(echoed["method"], json!(method.as_str()));
    }
    // A name under the preview domain that is not p<port>-<runner> is nobody's preview.
    let stray = reqwest_client()
        .resolve("x.preview.localhost", server.addr())
        .build()
        .expect("client")
        .get(format!(
            "http://x.preview.localhost:{}/demo",
            server.addr().port()
        ))
        .send()
        .await
        .expect("response");
    assert_eq!(stray.status(), 404);
    assert!(
        stray
            .text()
            .await
            .expect("body")
            .contains("not a preview host")
    );
}

#[tokio::test]
async fn a_post_body_of_several_megabytes_respects_the_windows() {
    let _shared = SERIAL.read().await;
    let server = start_server().await;
    let dev = start_dev_server().await;
    let runner = StandIn::start(&server, "r-post").await;
    let client = preview_client(&server, "r-post", dev.port);
    let body: Vec<u8> = (0..6 * 1024 * 1024 + 17)
        .map(|i| (i * 7 % 256) as u8)
        .collect();
    let expected_hash = fnv(FNV_START, &body);

    let echoed: Value = within(
        "the upload",
        client
            .post(format!("{}upload", server.preview_url("r-post", dev.port)))
            .body(body.clone())
            .send(),
    )
    .await
    .expect("post")
    .json()
    .await
    .expect("json");
    assert_eq!(echoed["body_len"], json!(body.len()));
    assert_eq!(echoed["body_hash"], json!(expected_hash));

    let stats = runner.stats();
    assert_eq!(stats.window_violations.load(Ordering::SeqCst), 0);
    assert_eq!(
        stats.data_received.load(Ordering::SeqCst),
        body.len() as u64
    );
    assert!(stats.largest_data.load(Ordering::SeqCst) <= MAX_DATA);
    assert!(
        stats.windows_granted.load(Ordering::SeqCst) > 20,
        "the body needed many WINDOW grants"
    );
}

#[tokio::test]
async fn kandan_stops_at_the_window_until_the_runner_grants_more() {
    let _shared = SERIAL.read().await;
    let server = start_server().await;
    let mut tunnel = RawTunnel::connect(&server, "r-window").await;
    let client = preview_client(&server, "r-window", 4000);
    let body = vec![5u8; 1024 * 1024];
    let url = server.preview_url("r-window", 4000);
    let request = tokio::spawn(client.put(url).body(body.clone()).send());

    let (stream, open) = tunnel.recv_open().await;
    assert_eq!((stream, &open["method"]), (1, &json!("PUT")));
    let mut received = 0;
    recv_data(&mut tunnel, stream, &mut received, INITIAL_WINDOW).await;
    tunnel.expect_silence().await;
    tunnel
        .send(frame(WINDOW, stream, &100_000u32.to_be_bytes()))
        .await;
    recv_data(&mut tunnel, stream, &mut received, INITIAL_WINDOW + 100_000).await;
    tunnel.expect_silence().await;
    tunnel
        .send(frame(WINDOW, stream, &(1024u32 * 1024).to_be_bytes()))
        .await;
    recv_data(&mut tunnel, stream, &mut received, body.len() as u64).await;
    assert_eq!(tunnel.recv().await.0, END);

    tunnel
        .send(json_frame(
            HEAD,
            stream,
            &json!({"status": 201, "headers": [["x-a", "1"]]}),
        ))
        .await;
    tunnel.send(frame(DATA, stream, b"created")).await;
    tunnel.send(frame(END, stream, &[])).await;
    let response = within("the response", request)
        .await
        .expect("task")
        .expect("response");
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-a"], "1");
    assert_eq!(response.text().await.expect("body"), "created");
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_large_response_streams_with_bounded_memory() {
    // Alone in the process, so the RSS measured is this transfer's.
    let _alone = SERIAL.write().await;
    let server = start_server().await;
    let dev = start_dev_server().await;
    let runner = StandIn::start(&server, "r-big").await;
    let client = preview_client(&server, "r-big", dev.port);
    let url = |bytes: usize| format!("{}big?bytes={bytes}", server.preview_url("r-big", dev.port));

    // Warm up every buffer and allocator arena on the way first.
    let warm = client.get(url(4 << 20)).send().await.expect("warm-up");
    assert_eq!(warm.bytes().await.expect("body").len(), 4 << 20);
    let baseline = rss_bytes();

    const TOTAL: usize = 50 * 1024 * 1024;
    let response = client.get(url(TOTAL)).send().await.expect("response");
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let (mut received, mut peak) = (0usize, baseline);
    let mut next_sample = 0;
    let transfer = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.expect("chunk");
            assert_eq!(chunk[0], (received % 251) as u8, "bytes arrive in order");
            received += chunk.len();
            if received >= next_sample {
                peak = peak.max(rss_bytes());
                next_sample += 1 << 20;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(120), transfer)
        .await
        .expect("the transfer finishes");
    assert_eq!(received, TOTAL);
    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "RSS: baseline {} MiB, peak {} MiB",
        baseline >> 20,
        peak >> 20
    );
    assert!(
        growth < 30 * 1024 * 1024,
        "RSS grew by {} MiB while {} MiB streamed",
        growth >> 20,
        TOTAL >> 20
    );
    assert_eq!(runner.stats().window_violations.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_reset_before_head_is_a_502_naming_the_code() {
    let _shared = SERIAL.read().await;
    let server = start_server().await;
    let _runner = StandIn::start(&server, "r-reset").await;
    let port = dead_port().await;
    let client = preview_client(&server, "r-reset", port);
    for url in [
        server.preview_url("r-reset", port),
        format!("{}x", server.preview_path_url("r-reset", port)),
    ] {
        let response = client.get(url).send().await.expect("response");
        assert_eq!(response.status(), 502);
        let text = response.text().await.expect("body");
        assert!(text.contains("connect_failed"), "{text}");
        assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    }
}

#[tokio::test]
async fn a_reset_after_head_aborts_the_body() {
    let _shared = SERIAL.read().await;
    let server = start_server().await;
    let mut tunnel = RawTunnel::connect(&server, "r-broken").await;
    let client = preview_client(&server, "r-broken", 3000);
    let request = tokio::spawn(client.get(server.preview_url("r-broken", 3000)).send());
    let (stream, _) = tunnel.recv_open().await;
    assert_eq!(tunnel.recv().await.0, END, "no request body");
    tunnel
        .send(json_frame(
            HEAD,
            stream,
            &json!({"status": 200, "headers": [["content-length", "100"]]}),
        ))
        .await;
    tunnel.send(frame(DATA, stream, b"partial")).await;
    let mut response = within("HEAD", request).await.expect("task").expect("ok");
    assert_eq!(response.status(), 200);
    assert_eq!(
        within("a chunk", response.chunk()).await.expect("chunk"),
        Some(Bytes::from_static(b"partial"))
    );
    let reset = json!({"code": "upstream_error", "message": "dev server crashed"});
    tunnel.send(json_frame(RESET, stream, &reset)).await;
    let rest = within("the body fails", response.chunk()).await;
    assert!(
        rest.is_err(),
        "the client must see the truncation: {rest:?}"
    );
    // The tunnel itself is fine.
    tunnel.send(frame(PING, 0, b"12345678")).await;
    loop {
        match tunnel.recv().await {
            (PONG, 0, _) => break,
            (WINDOW, id, _) => assert_eq!(id, stream),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn without_a_tunnel_previews_answer_502() {
    let _shared = SERIAL.read().await;
    let server = start_server().await;
    let client = preview_client(&server, "r-nobody", 3000);
    for url in [
        server.preview_url("r-nobody", 3000),
        server.preview_path_url("r-nobody", 3000),
    ] {
        let response = client.get(url).send().await.expect("response");
        assert_eq!(response.status(), 502);
        let text = response.text().await.expect("body");
        assert!(text.contains("runner not connected"), "{text}");
    }
}

#[tokio::test]
async fn a_dropped_tunnel_fails_every_open_stream() {
    let _shared = SERIAL.read().await;
    let server = start_server().await;
    let mut tunnel = RawTunnel::connect(&server, "r-drop").await;
    let client = preview_client(&server, "r-drop", 3000);
    let url = server.preview_url("r-drop", 3000);

    let streaming = tokio::spawn(client.get(format!("{url}a")).send());
    let (first, _) = tunnel.recv_open().await;
    assert_eq!(tunnel.recv().await.0, END);
    tunnel
        .send(json_frame(
            HEAD,
            first,
            &json!({"status": 200, "headers": []}),
        ))
        .await;
    tunnel.send(frame(DATA, first, b"some of it")).await;
    let mut response = within("HEAD", streaming).await.expect("task").expect("ok");
    assert_eq!(
        within("a chunk", response.chunk()).await.expect("chunk"),
        Some(Bytes::from_static(b"some of it"))
    );
    let waiting = tokio::spawn(client.get(format!("{url}b")).send());
    // The chunk the client took is granted back first.
    let second = loop {
        match tunnel.recv().await {
            (OPEN, id, _) => break id,
            (WINDOW, id, payload) => {
                assert_eq!((id, payload.as_ref()), (first, &10u32.to_be_bytes()[..]))
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(second, 3, "stream ids are odd and increasing");

    server.drop_tunnels().await;
    assert!(!server.tunnel_connected("r-drop"));
    assert_eq!(tunnel.wait_closed().await, None, "no close frame");
    assert!(within("the body fails", response.chunk()).await.is_err());
    let waiting = within("the waiting request", waiting)
        .await
        .expect("task")
        .expect("an answer");
    assert_eq!(waiting.status(), 502);
    let text = waiting.text().await.expect("body");
    assert!(text.contains("runner not connected"), "{text}");
}

#[tokio::test]
async fn websockets_relay_both_ways_and_close() {
    let _shared = SERIAL.read().await;
    let server = start_server().await;
    let mut dev = start_dev_server().await;
    let runner = StandIn::start(&server, "r-ws").await;
    let url = format!(
        "ws://{}:{}/ws?room=1",
        preview_host("r-ws", dev.port),
        server.addr().port()
    );
    let (mut socket, response) = preview_websocket(&server, &url, "chat, other")
        .await
        .expect("upgraded");
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat");

    let open = runner.opens()[0].clone();
    assert_eq!(
        (
            &open["kind"],
            &open["method"],
            &open["path"],
            &open["query"]
        ),
        (
            &json!("websocket"),
            &json!("GET"),
            &json!("/ws"),
            &json!("room=1")
        )
    );
    let headers = open["headers"].as_array().expect("headers");
    assert!(
        headers.contains(&json!(["sec-websocket-protocol", "chat, other"])),
        "{open}"
    );
    assert!(
        headers.contains(&json!(["origin", "http://example.test"])),
        "{open}"
    );

    socket.send(Message::text("hi")).await.expect("send");
    let reply = within("text echo", socket.next())
        .await
        .expect("open")
        .expect("ok");
    assert_eq!(reply, Message::text("echo: hi"));
    let binary = vec![0u8, 1, 2, 255];
    socket
        .send(Message::binary(binary.clone()))
        .await
        .expect("send");
    let reply = within("binary echo", socket.next())
        .await
        .expect("open")
        .expect("ok");
    assert_eq!(reply, Message::binary(binary));
    // The dev server closes: the client gets its close code and reason.
    socket.send(Message::text("close-me")).await.expect("send");
    assert_eq!(recv_close(&mut socket).await, Some((4001, "bye".into())));

    // The client closes: the dev server sees it.
    let (mut socket, _) = preview_websocket(&server, &url, "chat")
        .await
        .expect("upgraded");
    socket.send(Message::text("x")).await.expect("send");
    within("echo", socket.next())
        .await
        .expect("open")
        .expect("ok");
    let bye = CloseFrame {
        code: 4002.into(),
        reason: "see you".into(),
    };
    socket.close(Some(bye)).await.expect("close");
    let event = within("the dev server sees the close", dev.events.recv()).await;
    assert_eq!(event.as_deref(), Some("client closed 4002 see you"));
    assert_eq!(runner.stats().window_violations.load(Ordering::SeqCst), 0);

    // Through the path form, and refused with 502 when the runner cannot connect.
    let path_url = format!("ws://{}/preview/r-ws/{}/ws", server.addr(), dev.port);
    let (mut socket, _) = preview_websocket(&server, &path_url, "chat")
        .await
        .expect("upgraded");
    socket.send(Message::text("path")).await.expect("send");
    let reply = within("echo", socket.next())
        .await
        .expect("open")
        .expect("ok");
    assert_eq!(reply, Message::text("echo: path"));
    // A close without a status stays one.
    socket.close(None).await.expect("close");
    let event = within("the dev server sees the close", dev.events.recv()).await;
    assert_eq!(event.as_deref(), Some("client closed without a status"));
    assert_eq!(
        *runner.stats().ends_received.lock().unwrap(),
        vec![Some(4002), None],
        "the ENDs Kandan sent"
    );
    let dead = format!(
        "ws://{}/preview/r-ws/{}/ws",
        server.addr(),
        dead_port().await
    );
    match preview_websocket(&server, &dead, "chat").await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 502),
        other => panic!(
            "expected 502, got {:?}",
            other.map(|(_, response)| response)
        ),
    }
}

#[tokio::test]
async fn websocket_messages_wait_for_the_window() {
    let _shared = SERIAL.read().await;
    let server = start_server().await;
    let mut tunnel = RawTunnel::connect(&server, "r-wswin").await;
    let url = format!("ws://{}/preview/r-wswin/9/", server.addr());
    let connecting = tokio::spawn(async move {
        let mut request = url.into_client_request().expect("request");
        request
            .headers_mut()
            .insert("sec-websocket-protocol", "p1".parse().expect("value"));
        tokio_tungstenite::connect_async(request).await
    });
    let (stream, open) = tunnel.recv_open().await;
    assert_eq!(open["kind"], json!("websocket"));
    tunnel
        .send(json_frame(HEAD, stream, &json!({"protocol": "p1"})))
        .await;
    let (mut socket, response) = within("upgrade", connecting)
        .await
        .expect("task")
        .expect("upgraded");
    assert_eq!(response.headers()["sec-websocket-protocol"], "p1");

    // Five 60 000-byte messages: four fit the 256 KiB window, the fifth waits for a WINDOW.
    for _ in 0..5 {
        socket
            .send(Message::binary(vec![7u8; 60_000]))
            .await
            .expect("send");
    }
    for _ in 0..4 {
        let (kind, id, payload) = tunnel.recv().await;
        assert_eq!(
            (kind, id, payload.len(), payload[0]),
            (DATA, stream, 60_001, FIN | BINARY)
        );
    }
    tunnel.expect_silence().await;
    tunnel
        .send(frame(WINDOW, stream, &60_001u32.to_be_bytes()))
        .await;
    assert_eq!(tunnel.recv().await.2.len(), 60_001);

    // The runner's messages reach the client; its END closes the client's socket.
    tunnel
        .send(frame(DATA, stream, b"\x81from the runner"))
        .await;
    let message = within("a message", socket.next())
        .await
        .expect("open")
        .expect("ok");
    assert_eq!(message, Message::text("from the runner"));
    let (kind, id, payload) = tunnel.recv().await;
    assert_eq!(
        (kind, id, payload.as_ref()),
        (WINDOW, stream, &16u32.to_be_bytes()[..])
    );
    tunnel.send(frame(END, stream, &[])).await;
    assert_eq!(
        recv_close(&mut socket).await,
        None,
        "no status, as END had none"
    );
    assert_eq!(
        tunnel.recv().await,
        (END, stream, Bytes::new()),
        "Kandan ends its side too"
    );
}

#[tokio::test]
async fn tunnels_need_a_token_the_runner_id_and_the_subprotocol() {
    let _shared = SERIAL.read().await;
    let server = start_server().await;
    let alice = server.issue_token("alice", None);
    let bob = server.issue_token("bob", None);

    let (status, _) = refused_status(tunnel_request(&server, None, "r1", true)).await;
    assert_eq!(status, 401);
    let (status, _) = refused_status(tunnel_request(&server, Some("bogus"), "r1", true)).await;
    assert_eq!(status, 401);
    let revoked = server.issue_token("alice", None);
    server.revoke_token(&revoked);
    let (status, _) = refused_status(tunnel_request(&server, Some(&revoked), "r1", true)).await;
    assert_eq!(status, 401);
    let (status, body) = refused_status(tunnel_request(&server, Some(&alice), "r1", false)).await;
    assert_eq!(status, 400);
    assert!(body.contains(SUBPROTOCOL), "{body}");
    let (status, _) = refused_status(tunnel_request(&server, Some(&alice), "", true)).await;
    assert_eq!(status, 400);

    // Alice's runner: the first to open its tunnel owns the id.
    let (_socket, _) =
        tokio_tungstenite::connect_async(tunnel_request(&server, Some(&alice), "r1", true))
            .await
            .expect("alice's tunnel");
    let (status, body) = refused_status(tunnel_request(&server, Some(&bob), "r1", true)).await;
    assert_eq!(status, 403, "{body}");
    // ...or the first to join its topic.
    let _topic = common::Runner::join_with_token(&server, &alice, "r2").await;
    let (status, _) = refused_status(tunnel_request(&server, Some(&bob), "r2", true)).await;
    assert_eq!(status, 403);
    assert_eq!(server.tunnel_connections("r2"), 0);
}

#[tokio::test]
async fn pings_are_answered() {
    let _shared = SERIAL.read().await;
    let server = start_server().await;
    let mut tunnel = RawTunnel::connect(&server, "r-ping").await;
    tunnel.send(frame(PING, 0, b"12345678")).await;
    let (kind, stream, payload) = tunnel.recv().await;
    assert_eq!(
        (kind, stream, payload.as_ref()),
        (PONG, 0, &b"12345678"[..])
    );
    // A frame for a stream Kandan never opened is reset; the connection stays up.
    tunnel.send(frame(DATA, 42, b"?")).await;
    assert_eq!(tunnel.recv_reset(42).await.0, "protocol_error");
    tunnel.send(frame(PING, 0, b"abcdefgh")).await;
    assert_eq!(tunnel.recv().await.0, PONG);
    // A frame too short to name a stream, or a text message, is dropped; the tunnel stays up.
    tunnel.send(Message::binary(vec![7, 0])).await;
    tunnel.send(Message::binary(Vec::new())).await;
    tunnel.send(Message::text("\u{7}\0\0\0\0")).await;
    tunnel.expect_silence().await;
    tunnel.send(frame(PING, 0, b"still up")).await;
    assert_eq!(
        tunnel.recv().await,
        (PONG, 0, Bytes::from_static(b"still up"))
    );
    assert!(server.tunnel_connected("r-ping"));
}

#[tokio::test]
async fn kandan_pings_and_drops_silent_tunnels() {
    let _shared = SERIAL.read().await;
    let config = ServerConfig {
        tunnel_ping_interval: Duration::from_millis(50),
        tunnel_idle_timeout: Duration::from_millis(400),
        ..ServerConfig::default()
    };
    let server = KandanTestServer::start(config).await.expect("server");
    let mut tunnel = RawTunnel::connect(&server, "r-idle").await;
    // Answering keeps it up well past the idle timeout: 20 pings take about a second.
    let mut counters = Vec::new();
    for _ in 0..20 {
        let (kind, stream, payload) = tunnel.recv().await;
        assert_eq!((kind, stream, payload.len()), (PING, 0, 8));
        counters.push(u64::from_be_bytes(payload[..].try_into().expect("8 bytes")));
        tunnel.send(frame(PONG, 0, &payload)).await;
    }
    assert!(counters.windows(2).all(|pair| pair[0] != pair[1]));
    assert!(server.tunnel_connected("r-idle"));
    // Silence: dropped, without a close frame.
    assert_eq!(tunnel.wait_closed().await, None);
    assert!(!server.tunnel_connected("r-idle"));
}

#[tokio::test]
async fn after_drop_tunnels_the_runner_reconnects() {
    let _shared = SERIAL.read().await;
    let server = start_server().await;
    let dev = start_dev_server().await;
    let mut runner = StandIn::start(&server, "r-again").await;
    let client = preview_client(&server, "r-again", dev.port);
    let url = format!("{}hello", server.preview_url("r-again", dev.port));
    assert_eq!(client.get(&url).send().await.expect("ok").status(), 200);
    assert_eq!(server.tunnel_connections("r-again"), 1);

    server.drop_tunnels().await;
    runner.wait_closed().await;
    assert!(!server.tunnel_connected("r-again"));
    assert_eq!(client.get(&url).send().await.expect("ok").status(), 502);

    let _runner = StandIn::start(&server, "r-again").await;
    assert!(server.tunnel_connected("r-again"));
    assert_eq!(server.tunnel_connections("r-again"), 2);
    let response = client.get(&url).send().await.expect("ok");
    assert_eq!(response.text().await.expect("body"), "hello from dev");

    // drop_connections and restart take tunnels down too.
    server.drop_connections().await;
    assert!(!server.tunnel_connected("r-again"));
    let _runner = StandIn::start(&server, "r-again").await;
    server.restart(Duration::from_millis(10)).await;
    assert!(!server.tunnel_connected("r-again"));
}

#[tokio::test]
async fn a_newer_tunnel_replaces_the_old_one() {
    let _shared = SERIAL.read().await;
    let server = start_server().await;
    let mut old = RawTunnel::connect(&server, "r-twice").await;
    let mut new = RawTunnel::connect(&server, "r-twice").await;
    assert_eq!(old.wait_closed().await, Some(1000));
    assert!(server.tunnel_connected("r-twice"));
    assert_eq!(server.tunnel_connections("r-twice"), 2);
    new.send(frame(PING, 0, b"still up")).await;
    assert_eq!(new.recv().await.0, PONG);
}

#[tokio::test]
async fn the_preview_link_redirects_to_the_preview_origin() {
    let _shared = SERIAL.read().await;
    let server = start_server().await;
    let client = reqwest_client().build().expect("client");
    let response = client
        .get(format!(
            "{}/local-runners/runner-9/ports/5173/preview",
            server.http_url()
        ))
        .send()
        .await
        .expect("response");
    assert_eq!(response.status(), 302);
    assert_eq!(
        response.headers()["location"],
        server.preview_url("runner-9", 5173).as_str()
    );
    let bad = client
        .get(format!(
            "{}/local-runners/r/ports/0/preview",
            server.http_url()
        ))
        .send()
        .await
        .expect("response");
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn large_websocket_messages_travel_as_fragments_within_the_window() {
    let _shared = SERIAL.read().await;
    let server = start_server().await;
    let mut tunnel = RawTunnel::connect(&server, "r-frag").await;
    let (mut socket, stream) = open_websocket(&server, &mut tunnel, "r-frag").await;

    // A 300 KiB binary message: fragments of one full DATA payload each, flag byte included,
    // until the initial window is used up; nothing more until the runner grants.
    let binary: Vec<u8> = (0..300 * 1024).map(|i| (i % 253) as u8).collect();
    socket
        .send(Message::binary(binary.clone()))
        .await
        .expect("send");
    let (mut flags, mut received) = (Vec::new(), Vec::new());
    let mut used = 0;
    while let Ok(next) = tokio::time::timeout(SILENCE, tunnel.recv()).await {
        let (kind, id, payload) = next;
        assert_eq!((kind, id), (DATA, stream));
        assert!(payload.len() <= MAX_DATA, "{} bytes", payload.len());
        used += payload.len() as u64;
        assert!(used <= INITIAL_WINDOW, "DATA beyond the window");
        flags.push(payload[0]);
        received.extend_from_slice(&payload[1..]);
    }
    assert_eq!(used, INITIAL_WINDOW, "stopped at the window");
    assert_eq!(flags, vec![BINARY, 0, 0, 0], "no FIN yet");
    // Granting what was used lets the rest through.
    tunnel
        .send(frame(WINDOW, stream, &(used as u32).to_be_bytes()))
        .await;
    let mut window = INITIAL_WINDOW;
    let (rest_flags, rest) = tunnel.recv_message(stream, &mut window).await;
    assert_eq!(rest_flags, vec![FIN]);
    received.extend_from_slice(&rest);
    assert!(
        received == binary,
        "the fragments reassemble to the message"
    );

    // A text message whose fragments split characters.
    let text = "€".repeat(100 * 1024);
    socket
        .send(Message::text(text.clone()))
        .await
        .expect("send");
    let (flags, received) = tunnel.recv_message(stream, &mut window).await;
    assert_eq!(flags, vec![TEXT, 0, 0, 0, FIN]);
    assert!(received == text.as_bytes());

    // The other way: the runner's fragments (50 000 bytes, splitting characters), with a ping
    // between two of them, reach the client as the ping and then one whole message.
    let mut payloads = ws_fragments(TEXT, text.as_bytes(), 50_000);
    assert_eq!(payloads.len(), 7);
    payloads.insert(3, ws_data(FIN | PING_OPCODE, b"between"));
    let sent: u64 = payloads.iter().map(|payload| payload.len() as u64).sum();
    assert!(sent > INITIAL_WINDOW, "needs WINDOWs from Kandan");
    let mut window = INITIAL_WINDOW;
    tunnel
        .send_within_window(stream, payloads, &mut window)
        .await;
    let ping = within("the ping", socket.next())
        .await
        .expect("open")
        .expect("ok");
    assert_eq!(ping, Message::Ping(Bytes::from_static(b"between")));
    let message = within("the message", socket.next())
        .await
        .expect("open")
        .expect("ok");
    assert!(
        message == Message::text(text),
        "the client gets the message whole"
    );
    // Kandan grants everything back once the client has it; the client's automatic pong comes
    // back too.
    let mut pong = None;
    while window < INITIAL_WINDOW || pong.is_none() {
        match tunnel.recv().await {
            (WINDOW, id, payload) if id == stream => {
                window += u64::from(u32::from_be_bytes(payload[..].try_into().expect("u32")));
            }
            (DATA, id, payload) if id == stream => pong = Some(payload),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(window, INITIAL_WINDOW);
    assert_eq!(
        pong,
        Some(Bytes::from(ws_data(FIN | PONG_OPCODE, b"between")))
    );
    tunnel.expect_silence().await;
}

#[tokio::test]
async fn a_300_kib_message_goes_through_the_stand_in_both_ways() {
    let _shared = SERIAL.read().await;
    let server = start_server().await;
    let dev = start_dev_server().await;
    let runner = StandIn::start(&server, "r-ws-big").await;
    let url = format!("ws://{}/preview/r-ws-big/{}/ws", server.addr(), dev.port);
    let (mut socket, _) = preview_websocket(&server, &url, "chat")
        .await
        .expect("upgraded");
    let binary: Vec<u8> = (0..300 * 1024).map(|i| (i * 31 % 256) as u8).collect();
    socket
        .send(Message::binary(binary.clone()))
        .await
        .expect("send");
    let echo = within("the binary echo", socket.next())
        .await
        .expect("open")
        .expect("ok");
    assert!(echo == Message::binary(binary), "the echo arrives whole");
    let text = "ü".repeat(150 * 1024 + 1);
    socket
        .send(Message::text(text.clone()))
        .await
        .expect("send");
    let echo = within("the text echo", socket.next())
        .await
        .expect("open")
        .expect("ok");
    assert!(echo == Message::text(format!("echo: {text}")));

    let stats = runner.stats();
    assert_eq!(stats.window_violations.load(Ordering::SeqCst), 0);
    assert_eq!(stats.bad_fragments.load(Ordering::SeqCst), 0);
    assert!(stats.largest_data.load(Ordering::SeqCst) <= MAX_DATA);
    assert!(
        stats.fragments_received.load(Ordering::SeqCst) >= 10,
        "each message took several fragments"
    );
}

#[tokio::test]
async fn websocket_messages_over_8_mib_are_refused_both_ways() {
    let _shared = SERIAL.read().await;
    let server = start_server().await;
    let mut tunnel = RawTunnel::connect(&server, "r-8mib").await;
    let exactly: Vec<u8> = (0..MAX_WEBSOCKET_MESSAGE)
        .map(|i| (i % 249) as u8)
        .collect();

    // From the client: 8 MiB pass, one byte more is refused with 1009 and message_too_big.
    let (mut socket, stream) = open_websocket(&server, &mut tunnel, "r-8mib").await;
    socket
        .send(Message::binary(exactly.clone()))
        .await
        .expect("send");
    let mut window = INITIAL_WINDOW;
    let (flags, received) = tunnel.recv_message(stream, &mut window).await;
    assert_eq!(flags.len(), MAX_WEBSOCKET_MESSAGE / (MAX_DATA - 1) + 1);
    assert!(received == exactly);
    let mut over = exactly.clone();
    over.push(0);
    socket.send(Message::binary(over)).await.expect("send");
    assert_eq!(
        recv_close(&mut socket).await,
        Some((1009, "message too big".into()))
    );
    let (code, _) = tunnel.recv_reset(stream).await;
    assert_eq!(code, "message_too_big");

    // From the runner: the same.
    let (mut socket, stream) = open_websocket(&server, &mut tunnel, "r-8mib").await;
    let mut window = INITIAL_WINDOW;
    let payloads = ws_fragments(BINARY, &exactly, MAX_DATA - 1);
    tunnel
        .send_within_window(stream, payloads, &mut window)
        .await;
    let message = within("8 MiB", socket.next())
        .await
        .expect("open")
        .expect("ok");
    assert!(message == Message::binary(exactly.clone()));
    let mut over = exactly;
    over.push(0);
    let payloads = ws_fragments(BINARY, &over, MAX_DATA - 1);
    tunnel
        .send_within_window(stream, payloads, &mut window)
        .await;
    let (code, _) = tunnel.recv_reset(stream).await;
    assert_eq!(code, "message_too_big");
    assert_eq!(
        recv_close(&mut socket).await,
        Some((1009, "message too big".into()))
    );
}

#[tokio::test]
async fn close_codes_travel_in_end_both_ways() {
    let _shared = SERIAL.read().await;
    let server = start_server().await;
    let mut tunnel = RawTunnel::connect(&server, "r-close").await;
    let bye = close_payload(Some((4001, "bye")));

    // The client's code and reason go to the runner; a close without status is an empty END.
    let (mut socket, stream) = open_websocket(&server, &mut tunnel, "r-close").await;
    let close = CloseFrame {
        code: 4001.into(),
        reason: "bye".into(),
    };
    socket.close(Some(close)).await.expect("close");
    assert_eq!(tunnel.recv().await, (END, stream, Bytes::from(bye.clone())));
    tunnel.send(frame(END, stream, &bye)).await;
    let (mut socket, stream) = open_websocket(&server, &mut tunnel, "r-close").await;
    socket.close(None).await.expect("close");
    assert_eq!(tunnel.recv().await, (END, stream, Bytes::new()));
    tunnel.send(frame(END, stream, &[])).await;

    // The runner's END closes the client with its code and reason (Kandan's END echoes it);
    // codes that may not appear in a close frame never do.
    for (end, shown) in [
        (Some((4001, "bye")), Some((4001, "bye"))),
        (Some((1000, "")), Some((1000, ""))),
        (None, None),
        (Some((1005, "")), None),
        (Some((1006, "gone")), Some((1011, "gone"))),
        (Some((1015, "")), Some((1011, ""))),
    ] {
        let (mut socket, stream) = open_websocket(&server, &mut tunnel, "r-close").await;
        tunnel.send(frame(END, stream, &close_payload(end))).await;
        let expected = shown.map(|(code, reason)| (code, reason.to_owned()));
        assert_eq!(recv_close(&mut socket).await, expected, "END {end:?}");
        let echo = close_payload(shown);
        assert_eq!(tunnel.recv().await, (END, stream, Bytes::from(echo)));
    }

    // A RESET, a protocol violation or a dropped tunnel: 1011, with no answer on the tunnel.
    let (mut socket, stream) = open_websocket(&server, &mut tunnel, "r-close").await;
    let reset = json!({"code": "upstream_error", "message": "the dev server crashed"});
    tunnel.send(json_frame(RESET, stream, &reset)).await;
    let (code, _) = recv_close(&mut socket).await.expect("a status");
    assert_eq!(code, 1011);
    tunnel.expect_silence().await;
    let (mut socket, stream) = open_websocket(&server, &mut tunnel, "r-close").await;
    tunnel.send(frame(DATA, stream, &ws_data(FIN, b"?"))).await;
    assert_eq!(tunnel.recv_reset(stream).await.0, "protocol_error");
    assert_eq!(recv_close(&mut socket).await.expect("a status").0, 1011);
    let (mut socket, _) = open_websocket(&server, &mut tunnel, "r-close").await;
    server.drop_tunnels().await;
    assert_eq!(recv_close(&mut socket).await.expect("a status").0, 1011);
}

#[tokio::test]
async fn protocol_violations_reset_the_stream_with_protocol_error() {
    let _shared = SERIAL.read().await;
    let server = start_server().await;
    let runner_id = "r-rules";
    let mut tunnel = RawTunnel::connect(&server, runner_id).await;
    let ok_head = json!({"status": 200, "headers": []});
    let mut huge_head = br#"{"status":200,"headers":[["x",""#.to_vec();
    huge_head.extend(vec![b'a'; 256 * 1024]);
    huge_head.extend(br#""]]}"#);

    // Before HEAD: the client gets 502 naming the problem.
    let cases: Vec<(Vec<Message>, &str)> = vec![
        (vec![frame(DATA, 0, b"x")], "DATA before HEAD"),
        (vec![frame(END, 0, &[])], "END before HEAD"),
        (vec![frame(HEAD, 0, b"not json")], "bad HEAD payload"),
        (
            vec![frame(HEAD, 0, &huge_head)],
            "over the 262144-byte limit",
        ),
        (
            vec![frame(DATA, 0, &vec![0; MAX_DATA + 1])],
            "over the 65536-byte limit",
        ),
        (vec![frame(9, 0, b"")], "unknown frame type 9"),
        (vec![frame(WINDOW, 0, b"\0\0\x01")], "bad WINDOW payload"),
        (
            vec![json_frame(HEAD, 0, &json!({"status": 103, "headers": []}))],
            "no valid final status",
        ),
        (
            vec![json_frame(HEAD, 0, &json!({"status": 101, "headers": []}))],
            "no valid final status",
        ),
        (
            vec![json_frame(
                OPEN,
                0,
                &json!({"kind": "http", "port": 1, "method": "GET", "path": "/", "headers": []}),
            )],
            "an unexpected OPEN",
        ),
    ];
    for (frames, problem) in cases {
        let (stream, request) = open_http(&server, &mut tunnel, runner_id).await;
        for message in frames {
            tunnel.send(on_stream(message, stream)).await;
        }
        let (code, message) = tunnel.recv_reset(stream).await;
        assert_eq!(code, "protocol_error", "{problem}");
        assert!(message.contains(problem), "{problem}: {message}");
        let text = bad_gateway(request).await;
        assert!(text.contains(problem), "{problem}: {text}");
        // Late frames for the stream are ignored, a RESET among them.
        tunnel.send(frame(DATA, stream, b"late")).await;
        tunnel.send(json_frame(HEAD, stream, &ok_head)).await;
        tunnel
            .send(json_frame(RESET, stream, &json!({"code": "cancelled"})))
            .await;
        tunnel.expect_silence().await;
    }

    // After HEAD: the client's body is cut short.
    let closing = close_payload(Some((1000, "")));
    for (frames, problem) in [
        (vec![json_frame(HEAD, 0, &ok_head)], "a second HEAD"),
        (
            vec![frame(END, 0, &closing)],
            "close code on an http stream",
        ),
    ] {
        let (stream, request) = open_http(&server, &mut tunnel, runner_id).await;
        tunnel.send(json_frame(HEAD, stream, &ok_head)).await;
        let mut response = within("HEAD", request).await.expect("task").expect("ok");
        assert_eq!(response.status(), 200);
        for message in frames {
            tunnel.send(on_stream(message, stream)).await;
        }
        let (code, message) = tunnel.recv_reset(stream).await;
        assert_eq!(code, "protocol_error", "{problem}");
        assert!(message.contains(problem), "{problem}: {message}");
        assert!(
            within("the body", response.chunk()).await.is_err(),
            "{problem}"
        );
    }

    // Websocket streams: frames after END, DATA beyond the window, bad fragments.
    let (_socket, stream) = open_websocket(&server, &mut tunnel, runner_id).await;
    tunnel
        .send_together(vec![
            frame(END, stream, &[]),
            frame(DATA, stream, &ws_data(0x82, b"x")),
        ])
        .await;
    let (code, message) = tunnel.recv_reset(stream).await;
    assert_eq!(
        (code.as_str(), message.as_str()),
        ("protocol_error", "DATA after END")
    );
    // Once the client closed, Kandan grants nothing more: the initial window is all there is.
    let (mut socket, stream) = open_websocket(&server, &mut tunnel, runner_id).await;
    socket.close(None).await.expect("close");
    assert_eq!(tunnel.recv().await, (END, stream, Bytes::new()));
    for payload in ws_fragments(BINARY, &vec![0; INITIAL_WINDOW as usize - 4], MAX_DATA - 1) {
        tunnel.send(frame(DATA, stream, &payload)).await;
    }
    tunnel
        .send(frame(DATA, stream, &ws_data(FIN | BINARY, b"")))
        .await;
    let (code, message) = tunnel.recv_reset(stream).await;
    assert_eq!(code, "protocol_error");
    assert!(message.contains("beyond the window"), "{message}");
    for (payloads, problem) in [
        (vec![ws_data(FIN, b"x")], "no message to continue"),
        (
            vec![ws_data(TEXT, b"a"), ws_data(FIN | BINARY, b"b")],
            "a new message",
        ),
        (vec![ws_data(FIN | 3, b"x")], "unknown websocket opcode 3"),
        (vec![ws_data(PING_OPCODE, b"x")], "a fragmented ping"),
        (
            vec![ws_data(TEXT, b"\xe2\x82"), ws_data(FIN, b"\xff")],
            "not UTF-8",
        ),
        (vec![Vec::new()], "no flag byte"),
    ] {
        let (mut socket, stream) = open_websocket(&server, &mut tunnel, runner_id).await;
        for payload in payloads {
            tunnel.send(frame(DATA, stream, &payload)).await;
        }
        let (code, message) = tunnel.recv_reset(stream).await;
        assert_eq!(code, "protocol_error", "{problem}");
        assert!(message.contains(problem), "{problem}: {message}");
        assert_eq!(recv_close(&mut socket).await.expect("a status").0, 1011);
    }

    // Ids Kandan never opened; a RESET for one is not answered.
    tunnel.send(frame(DATA, 99, b"?")).await;
    let (code, message) = tunnel.recv_reset(99).await;
    assert_eq!(code, "protocol_error");
    assert!(message.contains("never opened"), "{message}");
    tunnel.send(frame(WINDOW, 2, &1u32.to_be_bytes())).await;
    assert_eq!(tunnel.recv_reset(2).await.0, "protocol_error");
    tunnel.send(frame(HEAD, 101, b"garbage")).await;
    assert_eq!(tunnel.recv_reset(101).await.0, "protocol_error");
    tunnel
        .send(json_frame(RESET, 77, &json!({"code": "cancelled"})))
        .await;
    tunnel.send(frame(RESET, 79, b"not json")).await;
    tunnel.expect_silence().await;

    // An unreadable RESET still abandons its stream, and is not answered either.
    let (stream, request) = open_http(&server, &mut tunnel, runner_id).await;
    tunnel.send(frame(RESET, stream, b"{oops")).await;
    let text = bad_gateway(request).await;
    assert!(text.contains("an unreadable RESET"), "{text}");
    tunnel.expect_silence().await;
    assert!(
        server.tunnel_connected(runner_id),
        "the tunnel survives it all"
    );
}

/// `message`, a frame built for stream 0, readdressed to `stream`.
fn on_stream(message: Message, stream: u32) -> Message {
    let Message::Binary(bytes) = message else {
        panic!("frames are binary");
    };
    let mut bytes = bytes.to_vec();
    bytes[1..5].copy_from_slice(&stream.to_be_bytes());
    Message::binary(bytes)
}

#[tokio::test]
async fn hop_by_hop_headers_are_dropped_both_ways() {
    let _shared = SERIAL.read().await;
    let server = start_server().await;
    let mut tunnel = RawTunnel::connect(&server, "r-hop").await;
    let client = reqwest_client().build().expect("client");
    let request = client
        .get(format!("{}x", server.preview_path_url("r-hop", 3000)))
        .header("connection", "keep-alive, x-drop")
        .header("x-drop", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("te", "trailers")
        .header("trailer", "x-sum")
        .header("x-keep", "1")
        .send();
    let request = tokio::spawn(request);
    let (stream, open) = tunnel.recv_open().await;
    let names: Vec<&str> = open["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .map(|pair| pair[0].as_str().expect("name"))
        .collect();
    assert!(names.contains(&"x-keep"), "{names:?}");
    for hop in [
        "connection",
        "x-drop",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
    ] {
        assert!(!names.contains(&hop), "{hop} in {names:?}");
    }
    assert_eq!(tunnel.recv().await.0, END);

    let head = json!({"status": 200, "headers": [
        ["content-type", "text/plain"],
        ["Connection", "close, X-Hop"],
        ["x-hop", "1"],
        ["keep-alive", "timeout=5"],
        ["transfer-encoding", "chunked"],
        ["proxy-connection", "keep-alive"],
        ["te", "trailers"],
        ["trailer", "x-sum"],
        ["upgrade", "h2c"],
        ["proxy-authenticate", "Basic"],
        ["x-kept", "yes"],
    ]});
    tunnel.send(json_frame(HEAD, stream, &head)).await;
    tunnel.send(frame(DATA, stream, b"ok")).await;
    tunnel.send(frame(END, stream, &[])).await;
    let response = within("the response", request)
        .await
        .expect("task")
        .expect("ok");
    let headers = response.headers();
    assert_eq!(headers["content-type"], "text/plain");
    assert_eq!(headers["x-kept"], "yes");
    assert_eq!(
        headers["proxy-authenticate"], "Basic",
        "not hop-by-hop in §6.4"
    );
    for hop in [
        "x-hop",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    ] {
        assert!(headers.get(hop).is_none(), "{hop} in {headers:?}");
    }
    assert_ne!(
        headers.get("connection").map(|value| value.as_bytes()),
        Some(&b"close, X-Hop"[..])
    );
    assert_eq!(response.text().await.expect("body"), "ok");
}

#[tokio::test]
async fn the_257th_stream_is_refused_with_503() {
    // 257 connections at once: alone, so other tests' sockets do not count.
    let _alone = SERIAL.write().await;
    let server = start_server().await;
    let mut tunnel = RawTunnel::connect(&server, "r-many").await;
    let client = preview_client(&server, "r-many", 3000);
    let url = server.preview_url("r-many", 3000);
    let pending: Vec<_> = (0..256)
        .map(|_| tokio::spawn(client.get(url.clone()).send()))
        .collect();
    let (mut opened, mut ended) = (0, 0);
    while opened < 256 || ended < 256 {
        match tunnel.recv().await {
            (OPEN, _, _) => opened += 1,
            (END, _, _) => ended += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    let refused = within("the 257th request", client.get(url.clone()).send())
        .await
        .expect("response");
    assert_eq!(refused.status(), 503);
    tunnel.expect_silence().await;
    server.drop_tunnels().await;
    for request in pending {
        let response = within("a pending request", request)
            .await
            .expect("task")
            .expect("ok");
        assert_eq!(response.status(), 502);
    }
}

#[tokio::test]
async fn pings_on_a_stream_are_answered_on_it_and_messages_over_1_mib_close_the_tunnel() {
    let _shared = SERIAL.read().await;
    let server = start_server().await;
    let mut tunnel = RawTunnel::connect(&server, "r-cap").await;
    tunnel.send(frame(PING, 5, b"stream 5")).await;
    assert_eq!(
        tunnel.recv().await,
        (PONG, 5, Bytes::from_static(b"stream 5"))
    );
    // A message of exactly 1 MiB is a frame (too big for DATA: its stream is reset)...
    tunnel
        .send(frame(DATA, 1001, &vec![0; 1024 * 1024 - 5]))
        .await;
    let (code, message) = tunnel.recv_reset(1001).await;
    assert_eq!(code, "protocol_error");
    assert!(message.contains("over the 65536-byte limit"), "{message}");
    // ...one byte more closes the tunnel.
    tunnel
        .send(frame(DATA, 1003, &vec![0; 1024 * 1024 - 4]))
        .await;
    assert_eq!(tunnel.wait_closed().await, Some(1009));
}
