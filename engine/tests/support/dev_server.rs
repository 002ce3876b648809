//! The Node dev server of `testing/dev-server` (a page, an API, streamed bodies, a
//! WebSocket echo), and HTTP clients that reach it through Kandan's preview.
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use kandan_test_server::KandanTestServer;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `testing/dev-server/server.mjs`, with its `ws` package installed.
pub fn script() -> PathBuf {
    static INSTALLED: OnceLock<PathBuf> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let dir = std::fs::canonicalize(workspace().join("testing/dev-server")).unwrap();
            if !dir.join("node_modules/ws").exists() {
                let status = Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                    .current_dir(&dir)
                    .status()
                    .expect("npm is installed by scripts/setup.sh");
                assert!(status.success(), "npm ci failed in testing/dev-server");
            }
            dir.join("server.mjs")
        })
        .clone()
}

/// The shell command that starts the dev server on `port` (for Codex to run).
pub fn command(port: u16) -> String {
    format!("node '{}' --port {port}", script().display())
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A dev server the test started itself (not a descendant of the runner).
pub struct DevServer {
    child: Child,
    pub port: u16,
}

impl DevServer {
    pub fn start(port: u16) -> DevServer {
        let mut child = Command::new("node")
            .arg(script())
            .args(["--port", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node is installed by scripts/setup.sh");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap();
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("the dev server said {line:?}"));
        DevServer { child, port }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The preview host Kandan gives `port` of `runner`.
pub fn preview_host(runner: &str, port: u16) -> String {
    format!("p{port}-{runner}.preview.localhost")
}

/// A client that reaches Kandan's preview hosts (`*.preview.localhost`) on the test server.
pub fn preview_client(kandan: &KandanTestServer, runner: &str, port: u16) -> reqwest::Client {
    let tls = linzumi_engine::http::untrusting_tls_config().unwrap();
    linzumi_engine::http::client_builder(tls)
        .timeout(Duration::from_secs(120))
        .resolve(&preview_host(runner, port), kandan.addr())
        .build()
        .unwrap()
}
