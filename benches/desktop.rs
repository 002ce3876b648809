//! Linzumi Desktop benchmarks (issue 7), on the release build, each run in a fresh
//! private desktop session (Xvfb, D-Bus, trayer as the tray host):
//!
//! - cold start to tray-ready: from spawning the app until its icon is embedded in the
//!   tray, and until its one shared folder is shared (Codex started, the runner's
//!   availability posted in the Kandan test server's channel);
//! - idle resident memory with one shared folder, 10 s after it was shared: the app in
//!   the tray with its window closed (no webview exists then), also as its own anonymous
//!   memory without shared libraries; and with the window open (a second launch opens
//!   it), adding the WebKit web and network processes. Codex (its npm wrapper and the
//!   app-server) is reported apart.
//!
//! Run: `cargo bench -p linzumi-desktop --bench desktop` (`LINZUMI_BENCH_RUNS`, default 5).
//! With `LINZUMI_BENCH_JSON=<file>`, each figure is also appended there as a JSON line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../src-tauri/core/tests/support/mod.rs"]
mod session;
#[path = "../tests/desktop/trayer.rs"]
mod trayer;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kandan_test_server::{KandanTestServer, ServerConfig};
use linzumi_desktop_core::settings::{ConfigStore, DesktopConfig};
use linzumi_desktop_core::token_store::fallback_path;
use linzumi_engine::auth::token_store::{FileTokenStore, StoredToken, TokenKey, TokenStore};
use linzumi_engine::auth::{AccessToken, AuthScope};
use linzumi_engine::kandan_url::KandanUrl;
use mock_model_api::{CodexHome, CodexHomeOptions, MockModelApi};
use serde_json::json;
use session::Session;

const APP: &str = env!("CARGO_BIN_EXE_linzumi-desktop");

struct Run {
    tray_ready: Duration,
    folder_joined: Duration,
    /// In the tray, window closed.
    backend_kib: u64,
    /// Of that, the process's own (anonymous) memory, not shared libraries.
    backend_anon_kib: u64,
    /// Window open: the app process and its WebKit processes.
    with_window_kib: u64,
    codex_kib: u64,
}

fn main() {
    let runs: usize = std::env::var("LINZUMI_BENCH_RUNS")
        .ok()
        .and_then(|runs| runs.parse().ok())
        .unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let results: Vec<Run> = (0..runs)
        .map(|index| runtime.block_on(one_run(index)))
        .collect();

    let ms = |pick: fn(&Run) -> Duration| -> Vec<f64> {
        results
            .iter()
            .map(|run| pick(run).as_secs_f64() * 1000.0)
            .collect()
    };
    let mib = |pick: fn(&Run) -> u64| -> Vec<f64> {
        results
            .iter()
            .map(|run| pick(run) as f64 / 1024.0)
            .collect()
    };
    println!("Linzumi Desktop ({runs} cold starts, release build)");
    report(
        "cold_start_tray_ready",
        "cold start to the tray icon",
        "ms",
        &ms(|run| run.tray_ready),
    );
    report(
        "cold_start_folder_shared",
        "cold start to the folder shared (Codex up, posted in Kandan)",
        "ms",
        &ms(|run| run.folder_joined),
    );
    report(
        "idle_rss_tray",
        "idle RSS in the tray, window closed (the backend)",
        "MiB",
        &mib(|run| run.backend_kib),
    );
    report(
        "idle_rss_tray_anon",
        "  of which its own anonymous memory",
        "MiB",
        &mib(|run| run.backend_anon_kib),
    );
    report(
        "idle_rss_window",
        "idle RSS with the window open (app + WebKit processes)",
        "MiB",
        &mib(|run| run.with_window_kib),
    );
    report(
        "idle_rss_codex",
        "Codex (npm wrapper + app-server), for comparison",
        "MiB",
        &mib(|run| run.codex_kib),
    );
}

fn report(name: &str, label: &str, unit: &str, samples: &[f64]) {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let (min, max) = (sorted[0], sorted[sorted.len() - 1]);
    println!("  {label:<62} median {median:>7.1} {unit}  (min {min:.1}, max {max:.1})");
    // The line format of bench/report/README.md.
    if let Some(path) = std::env::var_os("LINZUMI_BENCH_JSON") {
        use std::io::Write as _;
        let line = json!({"bench": "desktop", "metric": name, "label": label, "value": median,
            "unit": unit, "role": "measured", "min": min, "max": max, "samples": samples});
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        writeln!(file, "{line}").unwrap();
    }
}

async fn one_run(index: usize) -> Run {
    let kandan = KandanTestServer::start(ServerConfig::default())
        .await
        .unwrap();
    let model = MockModelApi::start().await.unwrap();
    let codex = CodexHome::create(&model, CodexHomeOptions::default()).unwrap();
    let mut session = Session::new(&format!("desktop-bench-{index}"));
    let bus = session.start_bus();
    let display = session.start_xvfb();
    let dir = session.dir.clone();
    let project = dir.join("my-app");
    let home = dir.join("home");
    for folder in [&project, &home] {
        std::fs::create_dir_all(folder).unwrap();
    }

    // Signed in (the token in the file the app falls back to without a keyring) and
    // sharing one folder.
    let config_path = dir.join("config/linzumi/desktop.json");
    let mut config = DesktopConfig::default();
    config.settings.kandan_url = kandan.ws_url();
    config.settings.codex_bin = mock_model_api::codex_bin().unwrap().display().to_string();
    config.add_folder(&project).unwrap();
    ConfigStore::open(&config_path).save(&config).unwrap();
    let kandan_url = KandanUrl::parse(&kandan.ws_url()).unwrap();
    FileTokenStore::new(fallback_path(config_path.parent().unwrap()))
        .save(
            &TokenKey::new(&kandan_url, AuthScope::Onboarding),
            &StoredToken {
                access_token: AccessToken::new(kandan.issue_token("tester", None)),
                saved_at: 0,
                expires_at: None,
            },
        )
        .unwrap();

    let env: Vec<(String, String)> = [
        ("DISPLAY".to_owned(), display),
        ("DBUS_SESSION_BUS_ADDRESS".to_owned(), bus),
        ("HOME".to_owned(), home.display().to_string()),
        (
            "XDG_CONFIG_HOME".to_owned(),
            dir.join("config").display().to_string(),
        ),
        (
            "XDG_DATA_HOME".to_owned(),
            dir.join("data").display().to_string(),
        ),
        (
            "LINZUMI_DESKTOP_CONFIG".to_owned(),
            config_path.display().to_string(),
        ),
        ("NO_AT_BRIDGE".to_owned(), "1".to_owned()),
    ]
    .into_iter()
    .chain(codex.env())
    .collect();
    trayer::start(&mut session, &env);
    session::wait_until("trayer is up", Duration::from_secs(30), || {
        trayer::panel(&env).is_some()
    });

    let started = Instant::now();
    let mut app = Command::new(APP)
        .envs(env.iter().cloned())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = app.id();
    session::wait_until("the tray icon is embedded", Duration::from_secs(60), || {
        trayer::panel(&env).is_some_and(|(_, _, width, _)| width >= 16)
    });
    let tray_ready = started.elapsed();
    // Shared: Codex is up and the runner said so in the channel Kandan chose.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !kandan
        .chat_messages("personal-tester", "codex")
        .iter()
        .any(|message| message.posted_by_runner.is_some())
    {
        assert!(Instant::now() < deadline, "the folder was never shared");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let folder_joined = started.elapsed();

    tokio::time::sleep(Duration::from_secs(10)).await;
    let (_, codex_kib) = below(pid);
    let backend_kib = status_kib(pid, "VmRSS:");
    let backend_anon_kib = status_kib(pid, "RssAnon:");

    // A second launch opens the window of the running app (single instance).
    let status = Command::new(APP)
        .envs(env.iter().cloned())
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (webview_kib, _) = below(pid);
    let with_window_kib = status_kib(pid, "VmRSS:") + webview_kib;
    // The app does not stop its runners on SIGTERM yet: end Codex with it.
    for child in descendants(pid) {
        let _ = Command::new("kill")
            .args(["-9", &child.to_string()])
            .status();
    }
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let _ = app.wait();
    kandan.shutdown().await;
    Run {
        tray_ready,
        folder_joined,
        backend_kib,
        backend_anon_kib,
        with_window_kib,
        codex_kib,
    }
}

/// Resident memory of the processes below `pid`: (WebKit's, everything else's). The
/// rest is Codex: its npm wrapper and the native app-server.
fn below(pid: u32) -> (u64, u64) {
    let (mut webkit, mut rest) = (0, 0);
    for child in descendants(pid) {
        let name = std::fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
        let rss = status_kib(child, "VmRSS:");
        if name.starts_with("WebKit") {
            webkit += rss;
        } else {
            rest += rss;
        }
    }
    (webkit, rest)
}

/// A `kB` field of `/proc/<pid>/status`.
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Every process below `pid` (children are listed per thread that started them).
fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        let tasks = std::fs::read_dir(Path::new("/proc").join(parent.to_string()).join("task"));
        for task in tasks.into_iter().flatten().flatten() {
            for child in std::fs::read_to_string(task.path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|child| child.parse().ok())
            {
                found.push(child);
                frontier.push(child);
            }
        }
    }
    found
}
