//! Soak and load (issue 8): the real `linzumi connect` in a process of its own, against the
//! Kandan test server, for minutes rather than milliseconds.
//!
//! - **soak**: continuous chat turns through the real codex (`codex app-server`, answering
//!   from the project's mock model API: per turn a streamed reasoning summary and a streamed
//!   answer of 150 deltas, every 4th turn a command first; a turn starts every second, or
//!   every `secs / 1200` seconds in soaks longer than 20 minutes, see [`MAX_TURNS`]), while
//!   preview traffic flows through Kandan's proxy, the forward tunnel and the runner to the
//!   Node dev server of `testing/dev-server` (HTTP requests, 128 KiB bodies, a WebSocket
//!   echo, new connections now and then). The runner's resident memory and open file
//!   descriptors are read from /proc every second. After a warm-up (a quarter of the run,
//!   10 to 60 s) the slope of each is the figure, least squares and Theil–Sen (the median
//!   of the slopes between every two samples): a leak shows as a slope that stays up
//!   however long the run, in both. A few steps late in a run (the allocator taking a new
//!   arena after a burst) lift the least-squares slope a lot and the Theil–Sen one little,
//!   so the limits apply to Theil–Sen. Fails (non-zero exit) when
//!     - the memory slope is above the larger of [`RSS_GROWTH_BUDGET`] KiB spread over the
//!       measured window and [`RSS_SLOPE_FLOOR`] KiB/min: the fitted line may rise at most
//!       1 MiB across the window, and a long soak at most 128 KiB/min (7.5 MiB an hour).
//!       The allocator's growth is not a line but steps (about 0.6 MiB over the first two
//!       minutes on this machine, then rarer); 1 MiB leaves room for those in a short
//!       run, and a 10-minute soak measures 9 minutes at 128 KiB/min, where a leak of
//!       3 KiB per turn (a turn a second) already shows (a 10-minute soak here measured
//!       about 45 KiB/min Theil–Sen, with 2 MiB steps at 7.5 and 9 minutes that lifted
//!       least squares to 184),
//!     - the descriptor slope is above [`FD_SLOPE_LIMIT`] per minute, or the runner holds
//!       more than [`FD_REST_SLACK`] descriptors more at rest after the run than at rest
//!       before it (a leaked socket per minute would show in either),
//!     - any turn is not `processed`, or any of its items (command, reasoning, answer) is
//!       missing, duplicated, still streaming or not exactly what the model sent,
//!     - any forwarded request or WebSocket message fails or comes back wrong.
//!
//!   Duration: `LINZUMI_SOAK_SECS` (default 60, as CI runs it; 600 for a real soak).
//! - **load**: 50 concurrent preview clients through one runner (40 HTTP keep-alive
//!   connections, 10 WebSockets echoing), the same clients against the dev server directly
//!   for comparison: throughput, latency p50/p95/p99, errors (must be 0) and the runner's
//!   resident memory peak. `LINZUMI_LOAD_SECS` (default 20), `LINZUMI_LOAD_CLIENTS`
//!   (default 50; a fifth of them WebSockets). The Kandan side, the clients and the dev
//!   server share this machine's cores with the runner.
//!
//! Run: `cargo bench -p linzumi-cli --bench soak` (both), `… --bench soak -- soak` or
//! `… -- load` (one). `LINZUMI_BENCH_JSON=path` appends the figures as JSON lines.
// A benchmark that cannot set up should stop loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod fake_codex;
mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fake_codex::FakeCodex;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use kandan_test_server::{ChatMessage, KandanTestServer};
use mock_model_api::{CodexHome, CodexHomeOptions, MockModelApi};
use serde_json::{Value, json};
use support::{
    CHANNEL, Linzumi, Scratch, WAIT, WORKSPACE, bound_thread, connect_args, cpu_seconds,
    distribution, emit, fd_count, kandan, metric, npm_ci, percentile, rss_kib, target,
    with_fake_codex, with_session,
};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// KiB the fitted resident-memory line may rise across the window after the warm-up.
const RSS_GROWTH_BUDGET: f64 = 1024.0;
/// KiB per minute of resident-memory growth that always passes (long soaks).
const RSS_SLOPE_FLOOR: f64 = 128.0;
/// Open descriptors per minute after the warm-up above which the soak fails.
const FD_SLOPE_LIMIT: f64 = 6.0;
/// Descriptors the runner may hold at rest after the run beyond what it held at rest before.
const FD_REST_SLACK: u64 = 4;
/// How long one turn may take before it counts as lost.
const TURN_TIMEOUT: Duration = Duration::from_secs(120);
/// Deltas of each turn's streamed answer.
const ANSWER_DELTAS: usize = 150;
/// Every this many turns, one runs a command first.
const COMMAND_EVERY: u64 = 4;
/// Turns start at most once a second, and a soak runs at most this many (longer soaks
/// space them out): every turn makes codex's requests to the mock model ~1 KiB longer, and
/// the mock refuses requests over 2 MiB (about 2,000 turns).
const MAX_TURNS: u64 = 1200;
const SOAK_RUNNER: &str = "soak";
const LOAD_RUNNER: &str = "load";

fn main() {
    let modes: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    let wants = |mode: &str| modes.is_empty() || modes.iter().any(|m| m == mode);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut failures = Vec::new();
    runtime.block_on(async {
        if wants("soak") {
            failures.extend(soak().await);
        }
        if wants("load") {
            failures.extend(load().await);
        }
    });
    drop(runtime);
    if !failures.is_empty() {
        println!("\nFAILED:");
        for failure in &failures {
            println!("  {failure}");
        }
        std::process::exit(1);
    }
}

fn env_secs(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .filter(|secs| *secs > 0)
        .unwrap_or(default)
}

// ---- the dev server ---------------------------------------------------------------------

/// `testing/dev-server` (Node, the `ws` package), started by the benchmark itself.
struct DevServer {
    child: Child,
    port: u16,
}

impl DevServer {
    fn start() -> DevServer {
        let dir = npm_ci("testing/dev-server", "node_modules/ws");
        let mut child = Command::new("node")
            .arg(dir.join("server.mjs"))
            .args(["--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the dev server's first line");
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("the dev server said {line:?}"));
        DevServer { child, port }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- clients ----------------------------------------------------------------------------

/// Where a client connects and the Host it asks for: the dev server directly, or its
/// preview origin on Kandan.
#[derive(Clone)]
struct Route {
    name: &'static str,
    addr: SocketAddr,
    host: String,
}

impl Route {
    fn direct(dev: &DevServer) -> Route {
        Route {
            name: "direct",
            addr: dev.addr(),
            host: dev.addr().to_string(),
        }
    }

    fn preview(server: &KandanTestServer, runner: &str, dev: &DevServer) -> Route {
        Route {
            name: "tunnel",
            addr: server.addr(),
            host: format!(
                "p{}-{runner}.preview.localhost:{}",
                dev.port,
                server.addr().port()
            ),
        }
    }
}

async fn http_connect(addr: SocketAddr) -> Result<SendRequest<Empty<Bytes>>, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(connection);
    Ok(sender)
}

/// One GET that must answer 200; returns the body.
async fn http_get(
    sender: &mut SendRequest<Empty<Bytes>>,
    host: &str,
    path: &str,
) -> Result<Bytes, String> {
    sender
        .ready()
        .await
        .map_err(|e| format!("GET {path}: connection: {e}"))?;
    let request = Request::get(path)
        .header("host", host)
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("GET {path}: body: {e}"))?
        .to_bytes();
    if status != 200 {
        return Err(format!(
            "GET {path}: {status} {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ));
    }
    Ok(body)
}

fn check_hello(body: &Bytes) -> Result<(), String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("/api/hello: not JSON: {e}"))?;
    if value["hello"] == "world" {
        Ok(())
    } else {
        Err(format!("/api/hello answered {value}"))
    }
}

type WebSocket = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn ws_connect(route: &Route) -> Result<WebSocket, String> {
    let stream = TcpStream::connect(route.addr)
        .await
        .map_err(|e| format!("ws connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let url = format!("ws://{}/ws", route.host);
    let (ws, _) = tokio_tungstenite::client_async(url.as_str(), stream)
        .await
        .map_err(|e| format!("ws upgrade: {e}"))?;
    Ok(ws)
}

/// Sends `text` and waits for the dev server's `echo: text`.
async fn ws_echo(ws: &mut WebSocket, text: String) -> Result<(), String> {
    let expected = format!("echo: {text}");
    ws.send(Message::Text(text.into()))
        .await
        .map_err(|e| format!("ws send: {e}"))?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(reply))) if reply.as_str() == expected => return Ok(()),
            Some(Ok(Message::Text(reply))) => {
                return Err(format!("ws: expected {expected:?}, got {reply:?}"));
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(other)) => return Err(format!("ws: unexpected {other:?}")),
            Some(Err(e)) => return Err(format!("ws receive: {e}")),
            None => return Err("ws: closed by the other side".into()),
        }
    }
}

/// What the clients did; errors keep their first few messages.
#[derive(Default)]
struct Tally {
    http: AtomicU64,
    http_bytes: AtomicU64,
    ws: AtomicU64,
    connections: AtomicU64,
    errors: AtomicU64,
    first_errors: Mutex<Vec<String>>,
}

impl Tally {
    fn error(&self, error: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_errors.lock().unwrap();
        if first.len() < 5 {
            first.push(error);
        }
    }
}

// ---- soak ---------------------------------------------------------------------------------

struct Sample {
    secs: f64,
    rss_kib: u64,
    fds: u64,
    cpu_secs: f64,
}

/// Least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let covariance: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let variance: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    if variance == 0.0 {
        0.0
    } else {
        covariance / variance
    }
}

/// Theil–Sen slope of `y` over `x`: the median of the slopes between every two points
/// (of at most 1,500 evenly spread points). Robust: a few steps or spikes (the allocator
/// taking a new arena late in the run) move it little, a steady climb moves it fully.
fn robust_slope(points: &[(f64, f64)]) -> f64 {
    let stride = points.len().div_ceil(1500).max(1);
    let points: Vec<(f64, f64)> = points.iter().step_by(stride).copied().collect();
    let mut slopes = Vec::with_capacity(points.len() * points.len() / 2);
    for (i, a) in points.iter().enumerate() {
        for b in &points[i + 1..] {
            if b.0 > a.0 {
                slopes.push((b.1 - a.1) / (b.0 - a.0));
            }
        }
    }
    if slopes.is_empty() {
        return 0.0;
    }
    slopes.sort_by(f64::total_cmp);
    percentile(&slopes, 0.5)
}

/// The prompt of soak turn `n`; the word its command echoes (every [`COMMAND_EVERY`]th
/// turn runs one); the answer the mock model will stream for it, one character a delta.
///
/// Turns are small on purpose: codex sends the whole conversation with every model request
/// and the mock model API refuses bodies over 2 MiB; each turn adds about 1 KiB to them.
fn soak_prompt(n: u64) -> (String, Option<String>, String) {
    let mut answer = format!("Turn {n}: ");
    let filler = "abcdefghijklmnopqrstuvwxyz";
    while answer.len() < ANSWER_DELTAS {
        let room = ANSWER_DELTAS - answer.len();
        answer.push_str(&filler[..room.min(filler.len())]);
    }
    let reply = json!([
        {"reasoning": format!("Thinking about turn {n}."), "deltas": 10},
        {"text": answer, "deltas": ANSWER_DELTAS, "delay_ms": 2},
    ]);
    let (script, word) = if n.is_multiple_of(COMMAND_EVERY) {
        let word = format!("soak-{n}");
        let command = json!({"exec": format!("echo {word}"), "yield_ms": 1000});
        (json!({"steps": [command, reply]}), Some(word))
    } else {
        (json!({"steps": [reply]}), None)
    };
    (mock_model_api::directive(&script), word, answer)
}

/// The runner rows that answer `seq`, each checked once the turn is processed.
fn turn_problem(
    rows: &[ChatMessage],
    seq: i64,
    word: Option<&str>,
    answer: &str,
) -> Option<String> {
    let of_kind = |kind: &str| -> Vec<&ChatMessage> {
        rows.iter()
            .filter(|row| {
                row.payload["reply_to_seq"] == seq && row.payload["structured"]["kind"] == kind
            })
            .collect()
    };
    let one = |kind: &str| -> Result<&ChatMessage, String> {
        match of_kind(kind).as_slice() {
            [row] if row.payload["structured"]["streaming"] == false => Ok(row),
            [row] => Err(format!("{kind} row {} is still streaming", row.seq)),
            [] => Err(format!("no {kind} row")),
            many => Err(format!("{} {kind} rows", many.len())),
        }
    };
    let check = || -> Result<(), String> {
        let message = one("codex_assistant_message")?;
        if message.payload["structured"]["text"] != answer {
            return Err(format!(
                "answer text differs ({} chars instead of {})",
                message.payload["structured"]["text"]
                    .as_str()
                    .map_or(0, str::len),
                answer.len()
            ));
        }
        let Some(word) = word else {
            return match of_kind("codex_command").len() {
                0 => one("codex_reasoning").map(|_| ()),
                n => Err(format!("{n} command rows for a turn without a command")),
            };
        };
        let command = one("codex_command")?;
        let output = command.payload["structured"]["output"]
            .as_str()
            .unwrap_or_default();
        // The shell's start-up may print its own lines first (a profile's warnings).
        if output.lines().last() != Some(word) || command.payload["structured"]["exit_code"] != 0 {
            return Err(format!(
                "command output {output:?}, exit {}",
                command.payload["structured"]["exit_code"]
            ));
        }
        one("codex_reasoning")?;
        Ok(())
    };
    check().err()
}

fn status_of(rows: &[ChatMessage], seq: i64) -> Option<String> {
    let row = rows.iter().find(|row| row.seq == seq)?;
    let status = row.state.as_ref()?["status"].as_str()?.to_owned();
    Some(status)
}

/// Posts turn `n` and waits for it; `Err` says how it was lost.
async fn soak_turn(server: &KandanTestServer, thread: &str, n: u64) -> Result<(), String> {
    let (prompt, word, answer) = soak_prompt(n);
    let message = server
        .post_user_message(WORKSPACE, CHANNEL, Some(thread), "tester", &prompt)
        .await
        .map_err(|e| format!("turn {n}: post: {e}"))?;
    let seq = message.seq;
    let rows = server
        .wait_for_thread(
            WORKSPACE,
            CHANNEL,
            |rows| {
                status_of(rows, seq)
                    .is_some_and(|status| ["processed", "failed", "ignored"].contains(&&*status))
            },
            TURN_TIMEOUT,
        )
        .await
        .map_err(|_| format!("turn {n} (seq {seq}): not finished within {TURN_TIMEOUT:?}"))?;
    let status = status_of(&rows, seq).unwrap_or_default();
    if status != "processed" {
        let state = rows
            .iter()
            .find(|row| row.seq == seq)
            .and_then(|row| row.state.clone());
        return Err(format!("turn {n} (seq {seq}): {status}: {state:?}"));
    }
    // The final writes of the items may still be on their way when the state arrives.
    match server
        .wait_for_thread(
            WORKSPACE,
            CHANNEL,
            |rows| turn_problem(rows, seq, word.as_deref(), &answer).is_none(),
            Duration::from_secs(10),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(_) => {
            let rows = server.chat_messages(WORKSPACE, CHANNEL);
            let problem = turn_problem(&rows, seq, word.as_deref(), &answer).unwrap_or_default();
            Err(format!("turn {n} (seq {seq}): {problem}"))
        }
    }
}

/// Preview traffic for the soak, paced so that turns keep most of the CPU: two HTTP
/// clients (a new connection every 50 requests; every 10th request a 128 KiB body) and
/// one WebSocket (reconnecting every 100 messages).
async fn soak_traffic(route: Route, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    const BODY: usize = 128 * 1024;
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (route, stop, tally) = (route.clone(), stop.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut sender = match http_connect(route.addr).await {
                    Ok(sender) => sender,
                    Err(e) => {
                        tally.error(e);
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                tally.connections.fetch_add(1, Ordering::Relaxed);
                for _ in 0..50 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    n += 1;
                    let result = if n.is_multiple_of(10) {
                        http_get(&mut sender, &route.host, &format!("/bytes?size={BODY}"))
                            .await
                            .and_then(|body| {
                                if body.len() == BODY {
                                    Ok(body)
                                } else {
                                    Err(format!("/bytes: {} bytes of {BODY}", body.len()))
                                }
                            })
                    } else {
                        http_get(&mut sender, &route.host, "/api/hello")
                            .await
                            .and_then(|body| check_hello(&body).map(|()| body))
                    };
                    match result {
                        Ok(body) => {
                            tally.http.fetch_add(1, Ordering::Relaxed);
                            tally
                                .http_bytes
                                .fetch_add(body.len() as u64, Ordering::Relaxed);
                        }
                        Err(e) => {
                            tally.error(e);
                            break;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    let ws_tally = tally.clone();
    tasks.push(tokio::spawn(async move {
        let tally = ws_tally;
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let mut ws = match ws_connect(&route).await {
                Ok(ws) => ws,
                Err(e) => {
                    tally.error(e);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            tally.connections.fetch_add(1, Ordering::Relaxed);
            for _ in 0..100 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                n += 1;
                match ws_echo(&mut ws, format!("soak message {n}")).await {
                    Ok(()) => {
                        tally.ws.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        tally.error(e);
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = ws.close(None).await;
        }
    }));
    for task in tasks {
        if let Err(e) = task.await {
            tally.error(format!("traffic task: {e}"));
        }
    }
}

/// Reads the runner every second until `stop`.
fn sampler(
    pid: u32,
    started: Instant,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<Sample>> {
    std::thread::spawn(move || {
        let mut samples = Vec::new();
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            samples.push(Sample {
                secs: started.elapsed().as_secs_f64(),
                rss_kib: rss_kib(pid),
                fds: fd_count(pid),
                cpu_secs: cpu_seconds(pid),
            });
            next += Duration::from_secs(1);
            while Instant::now() < next && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        samples
    })
}

/// The runner's open descriptors once nothing has happened for a while (the dev server
/// closes idle keep-alive connections after 5 s).
async fn fds_at_rest(pid: u32) -> u64 {
    tokio::time::sleep(Duration::from_secs(7)).await;
    fd_count(pid)
}

async fn soak() -> Vec<String> {
    let secs = env_secs("LINZUMI_SOAK_SECS", 60);
    let warmup = (secs / 4).clamp(10, 60);
    println!("soak: {secs} s of turns and preview traffic ({warmup} s warm-up)");
    let mut failures = Vec::new();

    let (server, token) = kandan().await;
    let model = MockModelApi::start().await.expect("mock model");
    let project = Scratch::new("soak");
    let home = CodexHome::create(
        &model,
        CodexHomeOptions {
            trusted_projects: vec![project.0.clone()],
            ..CodexHomeOptions::default()
        },
    )
    .expect("codex home");
    let dev = DevServer::start();
    let mut args = with_session(connect_args(&server, &token, SOAK_RUNNER));
    args.extend([
        "--forward-port".into(),
        dev.port.to_string(),
        "--approval-policy".into(),
        "never".into(),
        "--codex-bin".into(),
        mock_model_api::codex_bin()
            .expect("codex")
            .display()
            .to_string(),
    ]);
    let linzumi = Linzumi::spawn(&args, &home.env(), project);
    let pid = linzumi.pid();
    let thread = bound_thread(&server).await;
    server
        .wait_for_tunnel(SOAK_RUNNER, WAIT)
        .await
        .expect("the runner's forward tunnel");
    // One turn first, so codex is warm, then the descriptors at rest.
    if let Err(e) = soak_turn(&server, &thread, 0).await {
        failures.push(format!("soak: {e}"));
    }
    let fds_before = fds_at_rest(pid).await;

    let route = Route::preview(&server, SOAK_RUNNER, &dev);
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let sampling = sampler(pid, started, stop.clone());
    let traffic = tokio::spawn(soak_traffic(route, stop.clone(), tally.clone()));
    let deadline = started + Duration::from_secs(secs);
    let (mut turns, mut lost) = (0u64, 0u64);
    let mut turn_seconds = Vec::new();
    let interval = Duration::from_secs(1).max(Duration::from_secs(secs) / MAX_TURNS as u32);
    while Instant::now() < deadline {
        let turn_started = Instant::now();
        if turns % 50 == 49 {
            server.clear_events(); // the recorder would otherwise keep every row update
        }
        match soak_turn(&server, &thread, turns + 1).await {
            Ok(()) => turn_seconds.push(turn_started.elapsed().as_secs_f64()),
            Err(e) => {
                lost += 1;
                if failures.len() < 10 {
                    failures.push(format!("soak: {e}"));
                }
            }
        }
        turns += 1;
        let next = turn_started + interval;
        if next < deadline {
            tokio::time::sleep_until(next.into()).await;
        } else {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    if std::env::var_os("LINZUMI_SOAK_DEBUG").is_some() {
        let requests = model.requests();
        let sizes: Vec<usize> = requests.iter().map(|r| r.body.to_string().len()).collect();
        println!(
            "  model requests: {}, first {:?}, last {:?}",
            sizes.len(),
            sizes.first(),
            sizes.last()
        );
    }
    traffic.await.expect("traffic");
    let samples = sampling.join().expect("sampler");
    let elapsed = started.elapsed().as_secs_f64();
    let fds_after = fds_at_rest(pid).await;
    linzumi.stop();
    drop(home);
    model.shutdown().await;

    let after_warmup: Vec<&Sample> = samples.iter().filter(|s| s.secs >= warmup as f64).collect();
    let rss_points: Vec<(f64, f64)> = after_warmup
        .iter()
        .map(|s| (s.secs, s.rss_kib as f64))
        .collect();
    let fd_points: Vec<(f64, f64)> = after_warmup
        .iter()
        .map(|s| (s.secs, s.fds as f64))
        .collect();
    let (rss_slope, rss_robust) = (60.0 * slope(&rss_points), 60.0 * robust_slope(&rss_points));
    let (fd_slope, fd_robust) = (60.0 * slope(&fd_points), 60.0 * robust_slope(&fd_points));
    let window_minutes = (elapsed - warmup as f64).max(1.0) / 60.0;
    let rss_slope_limit = (RSS_GROWTH_BUDGET / window_minutes).max(RSS_SLOPE_FLOOR);
    let rss_max = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let rss_first = after_warmup.first().map_or(0, |s| s.rss_kib);
    let rss_last = samples.last().map_or(0, |s| s.rss_kib);
    let fds_max = samples.iter().map(|s| s.fds).max().unwrap_or(0);
    let cpu =
        samples.last().map_or(0.0, |s| s.cpu_secs) - samples.first().map_or(0.0, |s| s.cpu_secs);
    let http = tally.http.load(Ordering::Relaxed);
    let ws = tally.ws.load(Ordering::Relaxed);
    let errors = tally.errors.load(Ordering::Relaxed);
    turn_seconds.sort_by(f64::total_cmp);
    let turn_p50 = if turn_seconds.is_empty() {
        0.0
    } else {
        percentile(&turn_seconds, 0.5)
    };
    let completed = turns - lost;

    println!(
        "  turns: {completed} completed, {lost} lost, {:.2} s median per turn ({} deltas streamed)",
        turn_p50,
        completed * (ANSWER_DELTAS as u64 + 10)
    );
    println!(
        "  forwarded: {http} HTTP requests ({:.1} MB), {ws} WebSocket echoes, {} connections, {errors} errors",
        tally.http_bytes.load(Ordering::Relaxed) as f64 / 1e6,
        tally.connections.load(Ordering::Relaxed)
    );
    for error in tally.first_errors.lock().unwrap().iter() {
        println!("    error: {error}");
    }
    println!(
        "  runner memory: {:.1} MiB after warm-up, {:.1} MiB at the end, {:.1} MiB peak",
        rss_first as f64 / 1024.0,
        rss_last as f64 / 1024.0,
        rss_max as f64 / 1024.0
    );
    println!(
        "    slope {rss_slope:+.0} KiB/min (least squares), {rss_robust:+.0} KiB/min (Theil–Sen)  [limit {rss_slope_limit:.0} KiB/min, on Theil–Sen]"
    );
    if rss_slope > rss_slope_limit && rss_robust <= rss_slope_limit {
        println!(
            "    note: the least-squares slope is above the limit and the robust one is not: a few steps, not a steady climb"
        );
    }
    println!(
        "  runner descriptors: {fds_before} at rest before, {fds_after} at rest after, {fds_max} peak"
    );
    println!(
        "    slope {fd_slope:+.1} per min (least squares), {fd_robust:+.1} per min (Theil–Sen)  [limit {FD_SLOPE_LIMIT:.0}/min on Theil–Sen, +{FD_REST_SLACK} at rest]"
    );
    println!(
        "  runner CPU: {cpu:.1} s over {elapsed:.0} s ({:.0}% of one core)",
        100.0 * cpu / elapsed
    );

    if lost > 0 {
        failures.push(format!("soak: {lost} of {turns} turns lost"));
    }
    if errors > 0 {
        failures.push(format!("soak: {errors} forwarding errors"));
    }
    if rss_robust > rss_slope_limit {
        failures.push(format!(
            "soak: runner memory grows {rss_robust:.0} KiB/min (Theil–Sen; limit {rss_slope_limit:.0})"
        ));
    }
    if fd_robust > FD_SLOPE_LIMIT {
        failures.push(format!(
            "soak: runner descriptors grow {fd_robust:.1}/min (Theil–Sen; limit {FD_SLOPE_LIMIT:.0})"
        ));
    }
    if fds_after > fds_before + FD_REST_SLACK {
        failures.push(format!(
            "soak: runner holds {fds_after} descriptors at rest after the run, {fds_before} before"
        ));
    }

    let m = |name: &str, label: &str, value: f64, unit: &str, role: &str, t| {
        metric("soak", name, label, value, unit, role, t);
    };
    m("duration", "soak duration", elapsed, "s", "info", None);
    m(
        "rss_slope",
        "runner resident memory slope after warm-up (least squares)",
        rss_slope,
        "KiB/min",
        "measured",
        None,
    );
    m(
        "rss_slope_robust",
        "runner resident memory slope after warm-up (Theil–Sen)",
        rss_robust,
        "KiB/min",
        "measured",
        target(
            "<=",
            rss_slope_limit,
            format!("≤ {rss_slope_limit:.0} KiB/min (1 MiB over the window, ≥ 128/min)"),
        ),
    );
    m(
        "fd_slope",
        "runner open descriptors slope after warm-up (least squares)",
        fd_slope,
        "fds/min",
        "measured",
        None,
    );
    m(
        "fd_slope_robust",
        "runner open descriptors slope after warm-up (Theil–Sen)",
        fd_robust,
        "fds/min",
        "measured",
        target("<=", FD_SLOPE_LIMIT, "≤ 6 /min"),
    );
    m(
        "fds_rest_growth",
        "descriptors at rest after the run minus before",
        fds_after as f64 - fds_before as f64,
        "fds",
        "measured",
        target("<=", FD_REST_SLACK as f64, "≤ +4"),
    );
    m(
        "rss_peak",
        "runner resident memory peak",
        rss_max as f64 / 1024.0,
        "MiB",
        "info",
        None,
    );
    m(
        "rss_end",
        "runner resident memory at the end",
        rss_last as f64 / 1024.0,
        "MiB",
        "info",
        None,
    );
    m(
        "turns_completed",
        "turns completed",
        completed as f64,
        "turns",
        "measured",
        None,
    );
    m(
        "turns_lost",
        "turns or items lost",
        lost as f64,
        "turns",
        "measured",
        target("<=", 0.0, "0"),
    );
    m(
        "turn_seconds_p50",
        "median turn (streamed answer; every 4th turn runs a command first)",
        turn_p50,
        "s",
        "info",
        None,
    );
    m(
        "http_forwarded",
        "preview HTTP requests forwarded",
        http as f64,
        "requests",
        "measured",
        None,
    );
    m(
        "ws_forwarded",
        "preview WebSocket echoes forwarded",
        ws as f64,
        "messages",
        "measured",
        None,
    );
    m(
        "forwarding_errors",
        "forwarding errors",
        errors as f64,
        "errors",
        "measured",
        target("<=", 0.0, "0"),
    );
    m(
        "runner_cpu_pct",
        "runner CPU during the soak",
        100.0 * cpu / elapsed,
        "% of a core",
        "info",
        None,
    );
    emit(json!({
        "bench": "soak", "metric": "series", "role": "series", "warmup_secs": warmup,
        "columns": ["secs", "rss_kib", "fds"],
        "samples": samples.iter().map(|s| json!([(s.secs * 10.0).round() / 10.0, s.rss_kib, s.fds])).collect::<Vec<_>>(),
    }));
    failures
}

// ---- load ---------------------------------------------------------------------------------

struct LoadResult {
    http_rate: f64,
    ws_rate: f64,
    http_ms: Vec<f64>,
    ws_ms: Vec<f64>,
    errors: u64,
    first_errors: Vec<String>,
}

/// `clients` concurrent clients on `route` for `secs` (after one second not counted):
/// four fifths HTTP keep-alive connections (`/api/hello`, every 10th `/app.js`), one fifth
/// WebSockets echoing back to back.
async fn load_run(route: &Route, clients: usize, secs: u64) -> LoadResult {
    let websockets = clients / 5;
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (route, stop, measuring, tally) = (
            route.clone(),
            stop.clone(),
            measuring.clone(),
            tally.clone(),
        );
        let is_ws = client < websockets;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            if is_ws {
                let mut ws = match ws_connect(&route).await {
                    Ok(ws) => ws,
                    Err(e) => {
                        tally.error(e);
                        return (is_ws, latencies);
                    }
                };
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let at = Instant::now();
                    match ws_echo(&mut ws, format!("client {client} message {n}")).await {
                        Ok(()) if measuring.load(Ordering::Relaxed) => {
                            latencies.push(at.elapsed().as_secs_f64() * 1e3);
                            tally.ws.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(()) => {}
                        Err(e) => {
                            tally.error(e);
                            return (is_ws, latencies);
                        }
                    }
                }
                let _ = ws.close(None).await;
            } else {
                let mut sender = match http_connect(route.addr).await {
                    Ok(sender) => sender,
                    Err(e) => {
                        tally.error(e);
                        return (is_ws, latencies);
                    }
                };
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let at = Instant::now();
                    let result = if n.is_multiple_of(10) {
                        http_get(&mut sender, &route.host, "/app.js")
                            .await
                            .map(|_| ())
                    } else {
                        http_get(&mut sender, &route.host, "/api/hello")
                            .await
                            .and_then(|body| check_hello(&body))
                    };
                    match result {
                        Ok(()) if measuring.load(Ordering::Relaxed) => {
                            latencies.push(at.elapsed().as_secs_f64() * 1e3);
                            tally.http.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(()) => {}
                        Err(e) => {
                            tally.error(e);
                            return (is_ws, latencies);
                        }
                    }
                }
            }
            (is_ws, latencies)
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let (mut http_ms, mut ws_ms) = (Vec::new(), Vec::new());
    for task in tasks {
        match task.await {
            Ok((true, latencies)) => ws_ms.extend(latencies),
            Ok((false, latencies)) => http_ms.extend(latencies),
            Err(e) => tally.error(format!("client task: {e}")),
        }
    }
    http_ms.sort_by(f64::total_cmp);
    ws_ms.sort_by(f64::total_cmp);
    let first_errors = tally.first_errors.lock().unwrap().clone();
    LoadResult {
        http_rate: http_ms.len() as f64 / elapsed,
        ws_rate: ws_ms.len() as f64 / elapsed,
        http_ms,
        ws_ms,
        errors: tally.errors.load(Ordering::Relaxed),
        first_errors,
    }
}

fn quantiles(sorted: &[f64]) -> [f64; 3] {
    if sorted.is_empty() {
        return [0.0; 3];
    }
    [0.5, 0.95, 0.99].map(|q| percentile(sorted, q))
}

async fn load() -> Vec<String> {
    let secs = env_secs("LINZUMI_LOAD_SECS", 20);
    let clients = env_secs("LINZUMI_LOAD_CLIENTS", 50) as usize;
    let websockets = clients / 5;
    println!(
        "\nload: {clients} concurrent preview clients ({} HTTP, {websockets} WebSocket), {secs} s per route",
        clients - websockets
    );
    let mut failures = Vec::new();
    let (server, token) = kandan().await;
    let codex = FakeCodex::start().await;
    let dev = DevServer::start();
    let mut args = with_fake_codex(connect_args(&server, &token, LOAD_RUNNER), &codex);
    args.extend(["--forward-port".into(), dev.port.to_string()]);
    let linzumi = Linzumi::spawn(&args, &[], Scratch::new("load"));
    let pid = linzumi.pid();
    server
        .wait_for_tunnel(LOAD_RUNNER, WAIT)
        .await
        .expect("the runner's forward tunnel");

    let mut direct_rates = (0.0, 0.0);
    for route in [
        Route::direct(&dev),
        Route::preview(&server, LOAD_RUNNER, &dev),
    ] {
        let tunnel = route.name == "tunnel";
        let baseline = rss_kib(pid);
        let peak = Arc::new(AtomicU64::new(baseline));
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = std::thread::spawn({
            let (peak, stop) = (peak.clone(), stop.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        });
        let cpu_before = cpu_seconds(pid);
        let result = load_run(&route, clients, secs).await;
        let runner_cpu = cpu_seconds(pid) - cpu_before;
        stop.store(true, Ordering::Relaxed);
        watcher.join().expect("memory watcher");
        let peak = peak.load(Ordering::Relaxed);
        let [h50, h95, h99] = quantiles(&result.http_ms);
        let [w50, w95, w99] = quantiles(&result.ws_ms);
        println!(
            "  {:<7} HTTP {:>7.0} req/s  p50 {h50:.2} ms  p95 {h95:.2} ms  p99 {h99:.2} ms",
            route.name, result.http_rate
        );
        println!(
            "  {:<7} WS   {:>7.0} msg/s  p50 {w50:.2} ms  p95 {w95:.2} ms  p99 {w99:.2} ms",
            "", result.ws_rate
        );
        println!("  {:<7} errors {}", "", result.errors);
        for error in &result.first_errors {
            println!("    error: {error}");
        }
        if result.errors > 0 {
            failures.push(format!("load ({}): {} errors", route.name, result.errors));
        }
        let role = if tunnel { "measured" } else { "peer" };
        let name = route.name;
        let m = |metric_name: &str, label: &str, value: f64, unit: &str, t| {
            metric(
                "load",
                &format!("{metric_name}_{name}"),
                &format!("{label}: {name}"),
                value,
                unit,
                role,
                t,
            );
        };
        m(
            "http_rate",
            &format!("HTTP requests/s, {clients} clients"),
            result.http_rate,
            "req/s",
            None,
        );
        m(
            "ws_rate",
            "WebSocket echoes/s",
            result.ws_rate,
            "msg/s",
            None,
        );
        for (q, value) in [("p50", h50), ("p95", h95), ("p99", h99)] {
            m(
                &format!("http_{q}"),
                &format!("HTTP latency {q}"),
                value,
                "ms",
                None,
            );
        }
        for (q, value) in [("p50", w50), ("p95", w95), ("p99", w99)] {
            m(
                &format!("ws_{q}"),
                &format!("WebSocket echo latency {q}"),
                value,
                "ms",
                None,
            );
        }
        m(
            "errors",
            "errors",
            result.errors as f64,
            "errors",
            target("<=", 0.0, "0"),
        );
        distribution(
            "load",
            &format!("http_latency_{name}"),
            &format!("HTTP latency, {clients} clients: {name}"),
            "ms",
            &result.http_ms,
        );
        distribution(
            "load",
            &format!("ws_latency_{name}"),
            &format!("WebSocket echo latency, {clients} clients: {name}"),
            "ms",
            &result.ws_ms,
        );
        if !tunnel {
            direct_rates = (result.http_rate, result.ws_rate);
        }
        if tunnel && direct_rates.0 > 0.0 && direct_rates.1 > 0.0 {
            let (http_pct, ws_pct) = (
                100.0 * result.http_rate / direct_rates.0,
                100.0 * result.ws_rate / direct_rates.1,
            );
            println!(
                "  tunnel throughput: {http_pct:.0}% of direct for HTTP, {ws_pct:.0}% for WebSocket echoes"
            );
            for (kind, pct) in [("http", http_pct), ("ws", ws_pct)] {
                metric(
                    "load",
                    &format!("{kind}_rate_pct_of_direct"),
                    &format!(
                        "tunnel {} throughput as % of direct",
                        if kind == "http" { "HTTP" } else { "WebSocket" }
                    ),
                    pct,
                    "%",
                    "info",
                    None,
                );
            }
        }
        if tunnel {
            println!(
                "  runner: resident memory {:.1} MiB before, {:.1} MiB peak; CPU {:.0}% of one core",
                baseline as f64 / 1024.0,
                peak as f64 / 1024.0,
                100.0 * runner_cpu / (secs as f64 + 1.0)
            );
            metric(
                "load",
                "runner_rss_peak",
                &format!("runner resident memory peak under {clients} preview clients"),
                peak as f64 / 1024.0,
                "MiB",
                "measured",
                target("<", 30.0, "< 30 MB"),
            );
            metric(
                "load",
                "runner_rss_before",
                "runner resident memory before the load",
                baseline as f64 / 1024.0,
                "MiB",
                "info",
                None,
            );
            metric(
                "load",
                "runner_cpu_pct",
                "runner CPU under the load",
                100.0 * runner_cpu / (secs as f64 + 1.0),
                "% of a core",
                "info",
                None,
            );
        }
    }
    linzumi.stop();
    failures
}
