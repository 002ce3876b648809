//! What a flood from Kandan costs: the real `linzumi` binary in its own process, its peak
//! resident memory (`VmHWM`) above where it stood before each flood, and Codex's.
//!
//! - 200 `forward_http_request`s with 4 MiB bodies to a local server that never answers
//!   (16 may wait at once with 32 MiB of bodies; the rest are refused as `busy`);
//! - 1,400 `start_instance`s (Codex holds at most 64 threads for Kandan);
//! - 30 controls of 7.9 MB (each event-log line is at most 16 KiB).
//!
//! The forwarding flood needs no Codex (a scripted app-server, `fake_codex`); the others
//! run the real codex. Run: `cargo bench -p linzumi-cli --bench floods`.
// A benchmark that cannot set up should stop loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod fake_codex;
mod support;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use fake_codex::FakeCodex;
use kandan_test_server::KandanTestServer;
use mock_model_api::{CodexHome, CodexHomeOptions, MockModelApi};
use serde_json::{Value, json};
use support::{
    Linzumi, Scratch, WAIT, connect_args, kandan, metric, rss_kib, target, wait_event,
    with_fake_codex,
};

const BENCH: &str = "floods";

/// The most resident memory a process has had, in MiB.
fn peak_mib(pid: u32) -> f64 {
    let kib: u64 = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    kib as f64 / 1024.0
}

/// The runner's answers of `event` (with `controlType` when given) so far.
fn answers(
    server: &KandanTestServer,
    runner: &str,
    event: &str,
    control: Option<&str>,
) -> Vec<Value> {
    server
        .events_for(&format!("local_runner:{runner}"))
        .into_iter()
        .filter(|e| e.event == event)
        .filter(|e| control.is_none_or(|control| e.payload["controlType"] == control))
        .map(|e| e.payload)
        .collect()
}

async fn wait_for_answers(
    server: &KandanTestServer,
    runner: &str,
    event: &str,
    control: Option<&str>,
    count: usize,
) -> Vec<Value> {
    tokio::time::timeout(WAIT, async {
        loop {
            let found = answers(server, runner, event, control);
            if found.len() >= count {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the flood was answered")
}

async fn forward_flood() {
    const FLOOD: usize = 200;
    let (server, token) = kandan().await;
    let codex = FakeCodex::start().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts and holds every connection; reads and answers nothing.
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().flatten().collect();
        drop(held);
    });
    let runner = "forward-flood";
    let mut args = with_fake_codex(connect_args(&server, &token, runner), &codex);
    args.extend(["--forward-port".into(), port.to_string()]);
    let scratch = Scratch::new(runner);
    let env = [("XDG_STATE_HOME".to_owned(), scratch.0.display().to_string())];
    let linzumi = Linzumi::spawn(&args, &env, scratch);
    wait_event(&server, runner, "heartbeat").await;
    let before = rss_kib(linzumi.pid()) as f64 / 1024.0;
    let body = BASE64.encode(vec![b'x'; 4 * 1024 * 1024]);
    for n in 0..FLOOD {
        server
            .push_control(
                runner,
                json!({"type": "forward_http_request", "requestId": format!("r{n}"),
                    "port": port, "method": "POST", "path": "/", "bodyBase64": body}),
            )
            .await
            .unwrap();
    }
    let busy = wait_for_answers(&server, runner, "forward:http_response", None, FLOOD - 16)
        .await
        .iter()
        .filter(|answer| {
            answer["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("busy"))
        })
        .count();
    let grown = peak_mib(linzumi.pid()) - before;
    println!(
        "forward flood ({FLOOD} × 4 MiB to a server that never answers): runner peak +{grown:.0} MiB, {busy} refused as busy  [target ≤ 400 MiB; 1,732 MiB without the caps]"
    );
    metric(
        BENCH,
        "forward_flood_peak",
        "runner peak above its start under 200 × 4 MiB forwards to a silent server",
        grown,
        "MiB",
        "measured",
        target("<=", 400.0, "≤ 400 MiB (1,732 MiB before the caps)"),
    );
    metric(
        BENCH,
        "forward_flood_busy",
        "of them refused at once as busy",
        busy as f64,
        "",
        "info",
        None,
    );
    linzumi.stop();
}

/// The proportional set size of a process in MiB: its resident memory with shared pages
/// divided among the processes that share them, so a tree's sum counts them once.
fn pss_mib(pid: u32) -> f64 {
    let kib: u64 = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("Pss:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    kib as f64 / 1024.0
}

/// Codex under the runner (the npm wrapper, the native app-server and what it runs):
/// its summed PSS in MiB and how many processes it is.
fn codex_pss(runner: u32) -> (f64, usize) {
    let codex: Vec<u32> = linzumi_engine::process_tree::tree(runner)
        .into_iter()
        .skip(1)
        .collect();
    (codex.iter().map(|pid| pss_mib(*pid)).sum(), codex.len())
}

async fn codex_floods() {
    const STARTS: usize = 1400;
    const HUGE: usize = 30;
    let (server, token) = kandan().await;
    let model = MockModelApi::start().await.expect("mock model");
    let runner = "codex-flood";
    let scratch = Scratch::new(runner);
    let project = scratch.0.clone();
    let log = project.join("events.jsonl");
    let home = CodexHome::create(
        &model,
        CodexHomeOptions {
            trusted_projects: vec![project.clone()],
            ..CodexHomeOptions::default()
        },
    )
    .expect("codex home");
    let mut args = connect_args(&server, &token, runner);
    args.extend([
        "--allowed-cwd".into(),
        project.display().to_string(),
        "--log-file".into(),
        log.display().to_string(),
        "--codex-bin".into(),
        mock_model_api::codex_bin()
            .expect("codex")
            .display()
            .to_string(),
    ]);
    let linzumi = Linzumi::spawn(&args, &home.env(), scratch);
    wait_event(&server, runner, "heartbeat").await;
    let (codex_before, processes_before) = codex_pss(linzumi.pid());
    let before = rss_kib(linzumi.pid()) as f64 / 1024.0;

    for _ in 0..STARTS {
        server
            .push_control(runner, json!({"type": "start_instance", "cwd": project}))
            .await
            .unwrap();
    }
    let started = wait_for_answers(
        &server,
        runner,
        "codex_response",
        Some("start_instance"),
        STARTS,
    )
    .await
    .iter()
    .filter(|answer| answer["ok"] == true)
    .count();
    let (codex_after, processes_after) = codex_pss(linzumi.pid());
    let runner_grown = peak_mib(linzumi.pid()) - before;
    println!(
        "start_instance flood ({STARTS}): {started} threads started; Codex {codex_before:.0} MiB in {processes_before} processes → {codex_after:.0} MiB in {processes_after} (PSS), runner peak +{runner_grown:.0} MiB  [target: Codex ≤ 400 MiB; 885 MB without the cap]"
    );
    metric(
        BENCH,
        "start_flood_codex",
        "Codex's memory (PSS of the wrapper, the app-server and its children) after 1,400 start_instance",
        codex_after,
        "MiB",
        "measured",
        target("<=", 400.0, "≤ 400 MiB (885 MB before the cap)"),
    );
    metric(
        BENCH,
        "start_flood_codex_before",
        "Codex's memory (PSS) before the flood",
        codex_before,
        "MiB",
        "info",
        None,
    );
    metric(
        BENCH,
        "start_flood_started",
        "threads started of 1,400",
        started as f64,
        "",
        "info",
        None,
    );
    metric(
        BENCH,
        "start_flood_runner_peak",
        "runner peak above its start during the flood",
        runner_grown,
        "MiB",
        "info",
        None,
    );

    let log_before = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let before = rss_kib(linzumi.pid()) as f64 / 1024.0;
    let padding = "x".repeat(7_900_000);
    for n in 0..HUGE {
        server
            .push_control(
                runner,
                json!({"type": "read_thread", "threadId": format!("huge-{n}"), "padding": padding}),
            )
            .await
            .unwrap();
    }
    wait_for_answers(&server, runner, "codex_error", Some("read_thread"), HUGE).await;
    let grown_log =
        (std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0) - log_before) as f64 / 1024.0;
    let runner_grown = peak_mib(linzumi.pid()) - before;
    println!(
        "huge controls ({HUGE} × 7.9 MB): event log +{grown_log:.0} KiB, runner peak +{runner_grown:.0} MiB  [target: log ≤ {} KiB; 237 MB before the line cap]",
        HUGE * 16
    );
    metric(
        BENCH,
        "huge_controls_log",
        "event log growth from 30 controls of 7.9 MB",
        grown_log,
        "KiB",
        "measured",
        target(
            "<=",
            (HUGE * 16) as f64,
            "≤ 480 KiB (16 KiB a line; 237 MB before the cap)",
        ),
    );
    metric(
        BENCH,
        "huge_controls_peak",
        "runner peak above its start under those controls",
        runner_grown,
        "MiB",
        "info",
        None,
    );
    linzumi.stop();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    forward_flood().await;
    codex_floods().await;
}
