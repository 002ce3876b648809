//! Phoenix client over loopback against the Kandan test server: push→reply round-trip
//! latency (p50/p99) and pipelined push/reply throughput, next to two floors measured in
//! the same run: a plain TCP ping-pong between two threads (what any loopback round trip
//! costs on this machine) and a raw WebSocket echo against the same server (the protocol
//! without our client).
//!
//! The server runs on its own runtime and OS thread, as a separate Kandan process would.
//! The client is measured on a current-thread runtime and on a multi-thread one, from a
//! spawned task as the runner's own code runs.
//!
//! Run: `cargo bench -p linzumi-engine --bench phoenix_roundtrip`.
//! Targets (issue 2): p50 under 100 µs, at least 20,000 push/reply pairs per second.
// A benchmark that cannot set up should stop loudly.
#![allow(clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use kandan_test_server::{KandanTestServer, ServerConfig};
use linzumi_engine::kandan_url::KandanUrl;
use linzumi_engine::phoenix::{ClientConfig, PhoenixClient};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const WARMUP: usize = 2_000;
const SEQUENTIAL: usize = 20_000;
const PIPELINED: usize = 200_000;
const IN_FLIGHT: usize = 512;
const PAYLOAD: &str = r#"{"method":"item/agentMessage/delta","params":{"delta":"Hello"}}"#;

fn main() {
    let (ws_url, token) = start_server_thread();
    tcp_floor();
    for (name, runtime) in [
        (
            "current-thread",
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
        ),
        (
            "multi-thread",
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build(),
        ),
    ] {
        let runtime = runtime.expect("tokio runtime");
        // Inside a spawned task, as the runner's code runs (not on the block_on thread).
        let (url, key) = (ws_url.clone(), token.clone());
        runtime
            .block_on(runtime.spawn(async move {
                websocket_floor(name, &url, &key).await;
                client(name, &url, &key).await;
            }))
            .expect("benchmark task");
    }
}

fn start_server_thread() -> (String, String) {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("server runtime");
        runtime.block_on(async move {
            let server = KandanTestServer::start(ServerConfig::default())
                .await
                .expect("test server");
            let token = server.issue_token("tester", None);
            ready_tx
                .send((server.ws_url(), token))
                .expect("report the server");
            std::future::pending::<()>().await;
        });
    });
    ready_rx.recv().expect("server ready")
}

/// Appends one figure as a JSON line to the file named by `LINZUMI_BENCH_JSON` (nothing
/// when unset); `scripts/bench.sh` builds `docs/benchmarks.md` from these lines.
fn emit(
    metric: &str,
    label: &str,
    value: f64,
    unit: &str,
    role: &str,
    target: Option<(&str, f64, &str)>,
) {
    use std::io::Write as _;
    let Some(path) = std::env::var_os("LINZUMI_BENCH_JSON") else {
        return;
    };
    let target = target.map(|(op, bound, text)| json!({"op": op, "value": bound, "text": text}));
    let line = json!({"bench": "phoenix_roundtrip", "metric": metric, "label": label,
        "value": value, "unit": unit, "role": role, "target": target});
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| writeln!(file, "{line}"));
    if let Err(error) = written {
        eprintln!("LINZUMI_BENCH_JSON={}: {error}", path.to_string_lossy());
    }
}

/// The p50 and p99 of a histogram as figures.
fn emit_histogram(
    metric: &str,
    label: &str,
    histogram: &Histogram<u64>,
    role: &str,
    target: Option<(&str, f64, &str)>,
) {
    let micros = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    emit(
        &format!("{metric}_p50"),
        &format!("{label}, p50"),
        micros(0.5),
        "µs",
        role,
        target,
    );
    emit(
        &format!("{metric}_p99"),
        &format!("{label}, p99"),
        micros(0.99),
        "µs",
        role,
        None,
    );
}

fn report(label: &str, histogram: &Histogram<u64>, target: &str) {
    let micros = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{label}: p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs{target}",
        micros(0.5),
        micros(0.9),
        micros(0.99)
    );
}

fn tcp_floor() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().expect("accept");
        socket.set_nodelay(true).expect("nodelay");
        let mut buffer = [0u8; 96];
        while socket.read_exact(&mut buffer).is_ok() {
            if socket.write_all(&buffer).is_err() {
                break;
            }
        }
    });
    let mut socket = TcpStream::connect(address).expect("connect");
    socket.set_nodelay(true).expect("nodelay");
    let mut buffer = [0u8; 96];
    let mut histogram = Histogram::<u64>::new(3).expect("histogram");
    for n in 0..WARMUP + SEQUENTIAL {
        let started = Instant::now();
        socket.write_all(&buffer).expect("write");
        socket.read_exact(&mut buffer).expect("read");
        if n >= WARMUP {
            histogram
                .record(started.elapsed().as_nanos() as u64)
                .expect("record");
        }
    }
    report("floor: TCP ping-pong between two threads", &histogram, "");
    emit_histogram(
        "tcp_floor",
        "floor: TCP ping-pong between two threads",
        &histogram,
        "peer",
        None,
    );
}

async fn websocket_floor(runtime: &str, ws_url: &str, token: &str) {
    let url = KandanUrl::parse(ws_url)
        .expect("url")
        .phoenix_socket_url(token);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url.as_str(), None, true)
        .await
        .expect("connect");
    ws.send(Message::Text(
        r#"["1","1","conformance:floor","phx_join",{}]"#.into(),
    ))
    .await
    .expect("join");
    ws.next().await;
    let mut histogram = Histogram::<u64>::new(3).expect("histogram");
    for n in 0..WARMUP + SEQUENTIAL {
        let frame = format!(r#"["1","{}","conformance:floor","echo",{PAYLOAD}]"#, n + 2);
        let started = Instant::now();
        ws.send(Message::Text(frame.into())).await.expect("send");
        ws.next().await;
        if n >= WARMUP {
            histogram
                .record(started.elapsed().as_nanos() as u64)
                .expect("record");
        }
    }
    report(
        &format!("floor: raw WebSocket echo, no client ({runtime})"),
        &histogram,
        "",
    );
    emit_histogram(
        &format!("websocket_floor_{runtime}"),
        &format!("floor: raw WebSocket echo, no client ({runtime})"),
        &histogram,
        "peer",
        None,
    );
}

async fn client(runtime: &str, ws_url: &str, token: &str) {
    let url = KandanUrl::parse(ws_url).expect("url");
    let client = PhoenixClient::connect(ClientConfig::new(&url, token))
        .await
        .expect("connect");
    let topic = format!("conformance:{runtime}");
    client
        .join(topic.clone(), || json!({}))
        .await
        .expect("join");
    let payload: serde_json::Value = serde_json::from_str(PAYLOAD).expect("payload");

    let mut histogram = Histogram::<u64>::new(3).expect("histogram");
    for n in 0..WARMUP + SEQUENTIAL {
        let started = Instant::now();
        client
            .push(&topic, "echo", payload.clone())
            .await
            .expect("push");
        if n >= WARMUP {
            histogram
                .record(started.elapsed().as_nanos() as u64)
                .expect("record");
        }
    }
    report(
        &format!("linzumi client push→reply ({runtime})"),
        &histogram,
        "  [target p50 < 100 µs]",
    );
    emit_histogram(
        &format!("client_roundtrip_{runtime}"),
        &format!("linzumi client push→reply ({runtime})"),
        &histogram,
        "measured",
        Some(("<", 100.0, "p50 < 100 µs")),
    );

    let started = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    let (mut sent, mut done) = (0, 0);
    while done < PIPELINED {
        while sent < PIPELINED && in_flight.len() < IN_FLIGHT {
            in_flight.push(client.enqueue_push(
                &topic,
                "echo",
                payload.clone(),
                client.push_timeout(),
            ));
            sent += 1;
        }
        if let Some(result) = in_flight.next().await {
            result.expect("pipelined push");
            done += 1;
        }
    }
    let elapsed = started.elapsed();
    println!(
        "linzumi client pipelined ({runtime}, {IN_FLIGHT} in flight): {:.0} push/reply pairs per second  [target ≥ 20,000/s]",
        PIPELINED as f64 / elapsed.as_secs_f64()
    );
    emit(
        &format!("client_pipelined_{runtime}"),
        &format!("linzumi client pipelined ({runtime}, {IN_FLIGHT} in flight)"),
        PIPELINED as f64 / elapsed.as_secs_f64(),
        "pairs/s",
        "measured",
        Some((">=", 20_000.0, "≥ 20,000/s")),
    );
    client.close().await;
}
