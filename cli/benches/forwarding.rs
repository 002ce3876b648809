//! Forwarding benchmarks (issue 5): the same local origin reached three ways in one run,
//!
//! - **direct**: the client talks to `127.0.0.1:<port>` itself;
//! - **tunnel**: through the Kandan test server's preview (`p<port>-<runner>.preview.
//!   localhost`), the forward tunnel, and the real `linzumi connect --forward-port` in a
//!   process of its own;
//! - **bore**: through `bore` (crates.io `bore-cli`, a plain TCP tunnel: `bore server` and
//!   `bore local` on this machine), as a peer.
//!
//! Figures: p50/p99 latency of small requests on one connection (and what each path adds
//! to direct), requests per second over 16 connections, MB/s for a large body on one
//! connection, and the runner's resident memory while 100 MB stream through it.
//! Targets: tunnel ≥ 50% of direct throughput, added p50 < 1 ms, tunnel ≥ bore, runner
//! resident memory < 30 MB while streaming. The Kandan side runs in this process, as
//! does the client: on a 2-core machine they compete for the same cores.
//!
//! Run: `cargo bench -p linzumi-cli --bench forwarding`. bore is installed on first use
//! into `target/bench-tools` (`cargo install bore-cli`); without it that column is skipped.
// A benchmark that cannot set up should stop loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod fake_codex;
mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fake_codex::FakeCodex;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use support::{
    Linzumi, Scratch, WAIT, connect_args, cpu_seconds, distribution, kandan, metric, percentile,
    rss_kib, target,
};
use tokio::net::{TcpListener, TcpStream};

const RUNNER: &str = "bench-forward";
const LATENCY_REQUESTS: usize = 2_000;
const CONNECTIONS: usize = 16;
const LOAD_SECONDS: u64 = 5;
const LARGE: u64 = 256 * 1024 * 1024;
const STREAMED: u64 = 100 * 1024 * 1024;
const BORE_VERSION: &str = "0.6.0";

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

/// One way to reach the origin: where to connect and the Host to ask for.
#[derive(Clone)]
struct Route {
    name: &'static str,
    addr: SocketAddr,
    host: String,
}

async fn run() {
    let origin = start_origin().await;
    let (server, token) = kandan().await;
    let codex = FakeCodex::start().await;
    let mut args = connect_args(&server, &token, RUNNER);
    args.extend([
        "--forward-port".into(),
        origin.port().to_string(),
        "--codex-url".into(),
        codex.url.clone(),
    ]);
    let linzumi = Linzumi::spawn(&args, &[], Scratch::new("forwarding"));
    server
        .wait_for_tunnel(RUNNER, WAIT)
        .await
        .expect("the runner opened its forward tunnel");

    let mut routes = vec![
        Route {
            name: "direct",
            addr: origin,
            host: origin.to_string(),
        },
        Route {
            name: "tunnel",
            addr: server.addr(),
            host: format!(
                "p{}-{RUNNER}.preview.localhost:{}",
                origin.port(),
                server.addr().port()
            ),
        },
    ];
    let bore = Bore::start(origin.port());
    match &bore {
        Ok(bore) => routes.push(Route {
            name: "bore",
            addr: SocketAddr::from(([127, 0, 0, 1], bore.port)),
            host: format!("127.0.0.1:{}", bore.port),
        }),
        Err(reason) => println!("bore: skipped ({reason})"),
    }
    for route in &routes {
        // Warm every path (pools, the runner's local connections) before measuring.
        let mut sender = connect(route.addr).await;
        for _ in 0..200 {
            get(&mut sender, &route.host, "/small").await;
        }
    }

    println!("\nlatency of one small request on one connection ({LATENCY_REQUESTS} requests)");
    let mut latencies: Vec<(f64, f64)> = Vec::new();
    for route in &routes {
        let (p50, p99) = latency(route).await;
        let added = latencies
            .first()
            .map(|(direct50, direct99)| {
                format!(
                    "  (adds p50 {:.0} µs, p99 {:.0} µs)",
                    p50 - direct50,
                    p99 - direct99
                )
            })
            .unwrap_or_default();
        latencies.push((p50, p99));
        println!(
            "  {:<7} p50 {p50:>7.0} µs   p99 {p99:>7.0} µs{added}",
            route.name
        );
        for (quantile, value) in [("p50", p50), ("p99", p99)] {
            metric(
                "forwarding",
                &format!("latency_{quantile}_{}", route.name),
                &format!(
                    "small request latency {quantile}, one connection: {}",
                    route.name
                ),
                value,
                "µs",
                role(route.name),
                None,
            );
        }
    }

    println!("\nsmall requests per second ({CONNECTIONS} connections, {LOAD_SECONDS} s)");
    let mut rates = Vec::new();
    // Whose CPU each path costs: this process always, plus the relay's own processes.
    let relays = |name: &str| -> Vec<(&'static str, u32)> {
        match (name, &bore) {
            ("tunnel", _) => vec![("runner", linzumi.pid())],
            ("bore", Ok(bore)) => vec![
                ("bore local", bore.client.id()),
                ("bore server", bore.server.id()),
            ],
            _ => Vec::new(),
        }
    };
    for route in &routes {
        let mut pids = relays(route.name);
        pids.push(("this process", std::process::id()));
        let before: Vec<f64> = pids.iter().map(|(_, pid)| cpu_seconds(*pid)).collect();
        let (rate, count) = requests_per_second(route).await;
        let cpu: Vec<String> = pids
            .iter()
            .zip(before.iter().copied())
            .map(|((who, pid), before)| {
                let micros = (cpu_seconds(*pid) - before) * 1e6 / count as f64;
                // The report adds these up to say what one request costs the machine.
                metric(
                    "forwarding",
                    &format!("cpu_{}_{}", route.name, who.replace(' ', "_")),
                    &format!("CPU per small request, {}: {who}", route.name),
                    micros,
                    "µs",
                    "info",
                    None,
                );
                format!("{who} {micros:.1}")
            })
            .collect();
        rates.push((route.name, rate));
        metric(
            "forwarding",
            &format!("rate_{}", route.name),
            &format!(
                "small requests per second, {CONNECTIONS} connections: {}",
                route.name
            ),
            rate,
            "req/s",
            role(route.name),
            None,
        );
        if let Some(((_, runner), before)) = pids.iter().zip(&before).find(|(p, _)| p.0 == "runner")
        {
            metric(
                "forwarding",
                "runner_cpu_per_request",
                "runner CPU per forwarded small request",
                (cpu_seconds(*runner) - before) * 1e6 / count as f64,
                "µs",
                "info",
                None,
            );
        }
        println!(
            "  {:<7} {rate:>9.0} req/s  ({:.0}% of direct; CPU µs per request: {})",
            route.name,
            100.0 * rate / rates[0].1,
            cpu.join(", ")
        );
    }
    println!("  (this process holds the client and the origin, and for the tunnel Kandan too)");

    println!(
        "\nlarge body on one connection ({} MiB, median of 3)",
        LARGE / (1024 * 1024)
    );
    let mut speeds = Vec::new();
    for route in &routes {
        let cpu_before = cpu_seconds(linzumi.pid());
        let speed = download_speed(route).await;
        let runner_cpu = cpu_seconds(linzumi.pid()) - cpu_before;
        speeds.push((route.name, speed));
        metric(
            "forwarding",
            &format!("large_body_{}", route.name),
            &format!(
                "large body ({} MiB) on one connection: {}",
                LARGE / (1024 * 1024),
                route.name
            ),
            speed,
            "MB/s",
            role(route.name),
            None,
        );
        if route.name == "tunnel" {
            metric(
                "forwarding",
                "runner_cpu_per_gib",
                "runner CPU per GiB streamed through the tunnel",
                runner_cpu / (3.0 * LARGE as f64 / f64::from(1u32 << 30)),
                "s/GiB",
                "info",
                None,
            );
        }
        let cpu = if route.name == "tunnel" {
            format!(
                ", runner CPU {:.2} s/GiB",
                runner_cpu / (3.0 * LARGE as f64 / f64::from(1u32 << 30))
            )
        } else {
            String::new()
        };
        println!(
            "  {:<7} {speed:>8.0} MB/s  ({:.0}% of direct{cpu})",
            route.name,
            100.0 * speed / speeds[0].1
        );
    }

    let (baseline, peak) = memory_while_streaming(&routes[1], linzumi.pid()).await;
    println!(
        "\nrunner resident memory streaming {} MB through the tunnel: {:.1} MiB before, {:.1} MiB peak  [target < 30 MB]",
        STREAMED / (1024 * 1024),
        baseline as f64 / 1024.0,
        peak as f64 / 1024.0
    );

    metric(
        "forwarding",
        "runner_rss_before_streaming",
        "runner resident memory before streaming",
        baseline as f64 / 1024.0,
        "MiB",
        "info",
        None,
    );
    metric(
        "forwarding",
        "runner_rss_streaming_peak",
        "runner resident memory peak streaming 100 MB through the tunnel",
        peak as f64 / 1024.0,
        "MiB",
        "measured",
        target("<", 30.0, "< 30 MB"),
    );

    let tunnel_rate = rates[1].1 / rates[0].1;
    let tunnel_speed = speeds[1].1 / speeds[0].1;
    println!("\ntargets:");
    println!(
        "  tunnel throughput ≥ 50% of direct: {:.0}% req/s, {:.0}% MB/s",
        100.0 * tunnel_rate,
        100.0 * tunnel_speed
    );
    println!(
        "  added p50 latency < 1 ms: {:.0} µs",
        latencies[1].0 - latencies[0].0
    );
    metric(
        "forwarding",
        "tunnel_rate_pct_of_direct",
        "tunnel small requests/s as % of direct",
        100.0 * tunnel_rate,
        "%",
        "measured",
        target(">=", 50.0, "≥ 50%"),
    );
    metric(
        "forwarding",
        "tunnel_speed_pct_of_direct",
        "tunnel large-body MB/s as % of direct",
        100.0 * tunnel_speed,
        "%",
        "measured",
        target(">=", 50.0, "≥ 50%"),
    );
    metric(
        "forwarding",
        "tunnel_added_p50",
        "latency the tunnel adds to direct, p50",
        latencies[1].0 - latencies[0].0,
        "µs",
        "measured",
        target("<", 1000.0, "< 1 ms"),
    );
    if let (Some(bore_rate), Some(bore_speed)) = (rates.get(2), speeds.get(2)) {
        println!(
            "  tunnel ≥ bore: {:.2}x bore's req/s, {:.2}x bore's MB/s",
            rates[1].1 / bore_rate.1,
            speeds[1].1 / bore_speed.1
        );
        metric(
            "forwarding",
            "tunnel_rate_vs_bore",
            "tunnel small requests/s ÷ bore's",
            rates[1].1 / bore_rate.1,
            "x",
            "measured",
            target(">=", 1.0, "≥ 1x (tunnel ≥ bore)"),
        );
        metric(
            "forwarding",
            "tunnel_speed_vs_bore",
            "tunnel large-body MB/s ÷ bore's",
            speeds[1].1 / bore_speed.1,
            "x",
            "measured",
            target(">=", 1.0, "≥ 1x (tunnel ≥ bore)"),
        );
    }
    println!(
        "  runner memory < 30 MB while streaming: {:.1} MiB",
        peak as f64 / 1024.0
    );

    drop(bore);
    linzumi.stop();
}

// ---- the origin -------------------------------------------------------------------------

static BLOCK: [u8; 64 * 1024] = [b'x'; 64 * 1024];

type Body = BoxBody<Bytes, Infallible>;

/// A local HTTP server: `/small` (12 bytes) and `/bytes?size=N` (streamed 64 KiB blocks).
async fn start_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |request: Request<hyper::body::Incoming>| async move {
                        Ok::<_, Infallible>(answer(request.uri()))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn answer(uri: &hyper::Uri) -> Response<Body> {
    if uri.path() == "/bytes" {
        let size: u64 = uri
            .query()
            .and_then(|query| query.strip_prefix("size="))
            .and_then(|size| size.parse().ok())
            .unwrap_or(0);
        let blocks = futures_util::stream::unfold(size, |left| async move {
            if left == 0 {
                return None;
            }
            let take = left.min(BLOCK.len() as u64);
            let block = Bytes::from_static(&BLOCK[..take as usize]);
            Some((Ok::<_, Infallible>(Frame::data(block)), left - take))
        });
        return Response::builder()
            .header("content-length", size)
            .body(StreamBody::new(blocks).boxed())
            .expect("response");
    }
    Response::new(Full::new(Bytes::from_static(b"hello world\n")).boxed())
}

// ---- the client -------------------------------------------------------------------------

async fn connect(addr: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    sender
}

/// One GET; returns the body's length.
async fn get(sender: &mut SendRequest<Empty<Bytes>>, host: &str, path: &str) -> u64 {
    sender.ready().await.expect("connection ready");
    let request = Request::get(path)
        .header("host", host)
        .body(Empty::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    assert_eq!(response.status(), 200, "GET {path} via {host}");
    let mut body = response.into_body();
    let mut length = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("body").into_data() {
            length += data.len() as u64;
        }
    }
    length
}

/// p50 and p99 in µs.
async fn latency(route: &Route) -> (f64, f64) {
    let mut sender = connect(route.addr).await;
    let mut samples = Vec::with_capacity(LATENCY_REQUESTS);
    for _ in 0..LATENCY_REQUESTS {
        let started = Instant::now();
        get(&mut sender, &route.host, "/small").await;
        samples.push(started.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(f64::total_cmp);
    distribution(
        "forwarding",
        &format!("latency_{}", route.name),
        &format!("small request latency, one connection: {}", route.name),
        "µs",
        &samples,
    );
    (percentile(&samples, 0.5), percentile(&samples, 0.99))
}

/// Whose figure a route's is: the tunnel is Linzumi's, the others are peers.
fn role(route: &str) -> &'static str {
    if route == "tunnel" {
        "measured"
    } else {
        "peer"
    }
}

/// Requests per second in the measured window, and how many requests were made in all
/// (for CPU per request).
async fn requests_per_second(route: &Route) -> (f64, u64) {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..CONNECTIONS {
        let (route, done, stop) = (route.clone(), done.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut sender = connect(route.addr).await;
            while !stop.load(Ordering::Relaxed) {
                get(&mut sender, &route.host, "/small").await;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (start_count, started) = (done.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(Duration::from_secs(LOAD_SECONDS)).await;
    let count = done.load(Ordering::Relaxed) - start_count;
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("worker");
    }
    (count as f64 / elapsed, done.load(Ordering::Relaxed))
}

/// MB/s (10^6 bytes), the median of three downloads.
async fn download_speed(route: &Route) -> f64 {
    let mut sender = connect(route.addr).await;
    get(&mut sender, &route.host, "/bytes?size=16000000").await;
    let mut speeds = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let length = get(&mut sender, &route.host, &format!("/bytes?size={LARGE}")).await;
        assert_eq!(length, LARGE);
        speeds.push(length as f64 / started.elapsed().as_secs_f64() / 1e6);
    }
    speeds.sort_by(f64::total_cmp);
    speeds[1]
}

/// The runner's resident KiB before and at most while `STREAMED` bytes pass through.
async fn memory_while_streaming(tunnel: &Route, pid: u32) -> (u64, u64) {
    let baseline = rss_kib(pid);
    let peak = Arc::new(AtomicU64::new(baseline));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = std::thread::spawn({
        let (peak, stop) = (peak.clone(), stop.clone());
        move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    });
    let mut sender = connect(tunnel.addr).await;
    let length = get(
        &mut sender,
        &tunnel.host,
        &format!("/bytes?size={STREAMED}"),
    )
    .await;
    assert_eq!(length, STREAMED);
    stop.store(true, Ordering::Relaxed);
    sampler.join().expect("sampler");
    (baseline, peak.load(Ordering::Relaxed))
}

// ---- bore -------------------------------------------------------------------------------

struct Bore {
    server: Child,
    client: Child,
    port: u16,
}

impl Bore {
    fn start(origin: u16) -> Result<Bore, String> {
        let bore = bore_bin()?;
        let port = free_port();
        let spawn = |args: &[&str]| {
            Command::new(&bore)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|error| format!("could not run {}: {error}", bore.display()))
        };
        let port_text = port.to_string();
        let server = spawn(&[
            "server",
            "--min-port",
            &port_text,
            "--max-port",
            &port_text,
            "--bind-addr",
            "127.0.0.1",
        ])?;
        // bore's control port is fixed at 7835.
        wait_for_port(7835)?;
        let client = spawn(&[
            "local",
            &origin.to_string(),
            "--local-host",
            "127.0.0.1",
            "--to",
            "127.0.0.1",
            "--port",
            &port_text,
        ])?;
        let bore = Bore {
            server,
            client,
            port,
        };
        wait_for_port(port)?;
        Ok(bore)
    }
}

impl Drop for Bore {
    fn drop(&mut self) {
        for child in [&mut self.client, &mut self.server] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn bore_bin() -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-tools");
    let bin = root.join("bin/bore");
    if bin.exists() {
        return Ok(bin);
    }
    println!(
        "installing bore-cli {BORE_VERSION} into {} …",
        root.display()
    );
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "install",
            "bore-cli",
            "--locked",
            "--version",
            BORE_VERSION,
            "--root",
        ])
        .arg(&root)
        .status()
        .map_err(|error| format!("cargo install failed to start: {error}"))?;
    if status.success() && bin.exists() {
        Ok(bin)
    } else {
        Err(format!("cargo install bore-cli failed ({status})"))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

fn wait_for_port(port: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("nothing listened on {port} within 10 s"))
}
