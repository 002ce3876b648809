//! What the benchmarks share: the real `linzumi` binary in a process of its own, scratch
//! folders, /proc readings, and the Kandan test server.
#![allow(dead_code)] // each benchmark uses a different part

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kandan_test_server::{KandanTestServer, ServerConfig};

use crate::fake_codex::FakeCodex;

pub const WAIT: Duration = Duration::from_secs(120);
pub const WORKSPACE: &str = "acme";
pub const CHANNEL: &str = "codex";

pub struct Linzumi {
    child: Child,
    _project: Scratch,
}

impl Linzumi {
    pub fn spawn(args: &[String], env: &[(String, String)], project: Scratch) -> Linzumi {
        let child = Command::new(env!("CARGO_BIN_EXE_linzumi"))
            .args(args)
            .arg("--cwd")
            .arg(&project.0)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn linzumi");
        Linzumi {
            child,
            _project: project,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stop(mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("linzumi-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch");
        Scratch(std::fs::canonicalize(dir).expect("canonical"))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Resident memory in KiB (VmRSS).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// User plus system CPU time of a process, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // After the command: state(0) ppid … utime(11) stime(12), in clock ticks.
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    (ticks(11) + ticks(12)) / per_second
}

pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

pub async fn kandan() -> (KandanTestServer, String) {
    let server = KandanTestServer::start(ServerConfig::default())
        .await
        .expect("server");
    let token = server.issue_token("tester", None);
    (server, token)
}

pub fn connect_args(server: &KandanTestServer, token: &str, runner: &str) -> Vec<String> {
    vec![
        "connect".into(),
        "--kandan-url".into(),
        server.ws_url(),
        "--token".into(),
        token.into(),
        "--runner-id".into(),
        runner.into(),
    ]
}

pub fn with_session(mut args: Vec<String>) -> Vec<String> {
    args.extend([
        "--workspace".into(),
        WORKSPACE.into(),
        "--channel".into(),
        CHANNEL.into(),
    ]);
    args
}

pub fn with_fake_codex(mut args: Vec<String>, codex: &FakeCodex) -> Vec<String> {
    args.extend(["--codex-url".into(), codex.url.clone()]);
    args
}

/// Runs `npm ci` in `dir` (relative to the workspace) unless `installed` (relative to it)
/// is already there; scripts/setup-tests.sh normally has done it.
pub fn npm_ci(dir: &str, installed: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(dir);
    if !dir.join(installed).exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .expect("npm");
        assert!(status.success(), "npm ci in {} failed", dir.display());
    }
    dir
}

/// Waits for the chat session's root row, then returns its thread.
pub async fn bound_thread(server: &KandanTestServer) -> String {
    let rows = server
        .wait_for_thread(
            WORKSPACE,
            CHANNEL,
            |rows| rows.iter().any(|row| row.posted_by_runner.is_some()),
            WAIT,
        )
        .await
        .expect("the runner's thread root");
    rows[0].thread_id.clone()
}

pub async fn wait_event(server: &KandanTestServer, runner: &str, event: &str) {
    let topic = format!("local_runner:{runner}");
    let event = event.to_owned();
    server
        .wait_for_event(|e| e.topic == topic && e.event == event, WAIT)
        .await
        .expect("event");
}

// ---- machine-readable results -------------------------------------------------------------

/// A figure's target, as the issues state it: `value op bound` must hold (`op` is `<`,
/// `<=`, `>` or `>=`); `text` is how the human output writes it.
pub struct Target {
    pub op: &'static str,
    pub bound: f64,
    pub text: String,
}

pub fn target(op: &'static str, bound: f64, text: impl Into<String>) -> Option<Target> {
    Some(Target {
        op,
        bound,
        text: text.into(),
    })
}

/// Appends one JSON object as a line to the file named by `LINZUMI_BENCH_JSON` (nothing
/// happens when it is unset). `scripts/bench.sh` sets it and builds `docs/benchmarks.md`
/// from the lines; the human output stays as it is.
pub fn emit(record: serde_json::Value) {
    use std::io::Write as _;
    let Some(path) = std::env::var_os("LINZUMI_BENCH_JSON") else {
        return;
    };
    let line = format!("{record}\n");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| file.write_all(line.as_bytes()));
    if let Err(error) = written {
        eprintln!("LINZUMI_BENCH_JSON={}: {error}", path.to_string_lossy());
    }
}

/// One figure: `role` is `measured` (Linzumi's own), `peer` (a floor or another tool
/// measured in the same run, for comparison) or `info`.
#[allow(clippy::too_many_arguments)]
pub fn metric(
    bench: &str,
    metric: &str,
    label: &str,
    value: f64,
    unit: &str,
    role: &str,
    target: Option<Target>,
) {
    let target = target.map(|t| serde_json::json!({"op": t.op, "value": t.bound, "text": t.text}));
    emit(serde_json::json!({
        "bench": bench, "metric": metric, "label": label, "value": value, "unit": unit,
        "role": role, "target": target,
    }));
}

/// A distribution for a plot: at most `points` evenly spaced quantiles of `samples`
/// (sorted here), so a histogram of them has the shape of the whole.
pub fn quantile_sketch(samples: &[f64], points: usize) -> Vec<f64> {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.len() <= points || points < 2 {
        return sorted;
    }
    (0..points)
        .map(|i| percentile(&sorted, i as f64 / (points - 1) as f64))
        .collect()
}

/// Latency samples (or any distribution) for a plot.
pub fn distribution(bench: &str, metric: &str, label: &str, unit: &str, samples: &[f64]) {
    let sketch: Vec<f64> = quantile_sketch(samples, 4000)
        .into_iter()
        .map(|v| (v * 1000.0).round() / 1000.0)
        .collect();
    emit(serde_json::json!({
        "bench": bench, "metric": metric, "label": label, "unit": unit, "role": "distribution",
        "count": samples.len(), "samples": sketch,
    }));
}

/// Open file descriptors of a process (entries of /proc/<pid>/fd).
pub fn fd_count(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| entries.count() as u64)
        .unwrap_or(0)
}
