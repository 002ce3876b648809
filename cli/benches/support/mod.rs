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

pub async fn wait_event(server: &KandanTestServer, runner: &str, event: &str) {
    let topic = format!("local_runner:{runner}");
    let event = event.to_owned();
    server
        .wait_for_event(|e| e.topic == topic && e.event == event, WAIT)
        .await
        .expect("event");
}
