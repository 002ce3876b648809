//! What `linzumi` itself must hold against: the Kandan token given in `KANDAN_TOKEN`
//! reaches no process it starts (a command Codex runs prints its environment) and no line
//! it prints, even at `RUST_LOG=trace`, where libraries log request lines and headers;
//! and floods from Kandan cost a bounded amount of memory. The runner runs as its own
//! process here, so its peak memory (`VmHWM`) is its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use kandan_test_server::{KandanTestServer, ServerConfig};
use linzumi_engine::process_tree;
use mock_model_api::{CodexHome, CodexHomeOptions, MockModelApi};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

/// `linzumi connect` with the codex of the mock model, its stderr in a file (a trace is
/// far more than a pipe holds while nobody reads it) and its state in a folder of its own.
struct Linzumi {
    child: Child,
    dir: PathBuf,
    _home: CodexHome,
    _model: MockModelApi,
}

impl Linzumi {
    async fn connect(
        server: &KandanTestServer,
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Linzumi {
        let dir = std::env::temp_dir().join(format!(
            "linzumi-cli-security-{name}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(dir.join("state")).unwrap();
        let dir = std::fs::canonicalize(dir).unwrap();
        let model = MockModelApi::start().await.unwrap();
        let home = CodexHome::create(
            &model,
            CodexHomeOptions {
                trusted_projects: vec![dir.clone()],
                ..CodexHomeOptions::default()
            },
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_linzumi"))
            .args([
                "connect",
                "--kandan-url",
                &server.ws_url(),
                "--runner-id",
                name,
                "--cwd",
            ])
            .arg(&dir)
            .args(args)
            .arg("--codex-bin")
            .arg(mock_model_api::codex_bin().unwrap())
            .envs(home.env())
            .env("XDG_STATE_HOME", dir.join("state"))
            .envs(env.iter().copied())
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        Linzumi {
            child,
            dir,
            _home: home,
            _model: model,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap()
    }

    /// The most resident memory the runner process has had, in bytes.
    fn peak_resident(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kib * 1024
    }

    /// SIGTERM; its exit status and stderr.
    fn terminate(mut self) -> (ExitStatus, String) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let status = self.child.wait().unwrap();
        (status, self.stderr())
    }
}

impl Drop for Linzumi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Started with the token in `KANDAN_TOKEN` and `RUST_LOG=trace`, the runner joins,
/// opens its tunnel and runs a turn whose command prints its environment: the token is in
/// none of the command's output, the environment of any process under the runner, or
/// what the runner printed. The command did run, and the trace did log the requests
/// that carry the token (masked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_reaches_no_child_and_no_log_line() {
    let server = KandanTestServer::start(ServerConfig::default())
        .await
        .unwrap();
    let token = server.issue_token("tester", None);
    let linzumi = Linzumi::connect(
        &server,
        "env-runner",
        &["--workspace", "acme", "--channel", "codex"],
        &[("KANDAN_TOKEN", &token), ("RUST_LOG", "trace")],
    )
    .await;
    let root = match server
        .wait_for_thread(
            "acme",
            "codex",
            |rows| rows.iter().any(|row| row.posted_by_runner.is_some()),
            WAIT,
        )
        .await
    {
        Ok(rows) => rows,
        Err(error) => panic!("{error}\n{}", linzumi.stderr()),
    };
    let thread = root[0].thread_id.clone();
    // The marker is made by the shell, so only the command's output holds it.
    let body = format!(
        "mock: {}",
        json!({"steps": [{"exec": "env; echo printed-$((40 + 2))"}, {"text": "done"}]})
    );
    server
        .post_user_message("acme", "codex", Some(&thread), "tester", &body)
        .await
        .unwrap();
    let rows = server
        .wait_for_thread(
            "acme",
            "codex",
            |rows| {
                rows.iter()
                    .any(|row| row.payload.to_string().contains("printed-42"))
            },
            WAIT,
        )
        .await
        .unwrap();
    let thread_text = serde_json::to_string(&rows).unwrap();
    assert!(
        thread_text.contains("PATH="),
        "the command printed its environment"
    );
    assert!(
        !thread_text.contains(&token),
        "a Codex command read the token"
    );

    for pid in process_tree::tree(linzumi.child.id()).into_iter().skip(1) {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&environ).contains(&token),
            "the token is in the environment of process {pid}"
        );
    }

    let (status, printed) = linzumi.terminate();
    assert!(status.success(), "{printed}");
    assert!(printed.contains("TRACE"), "the trace was on");
    assert!(
        printed.contains("Authorization: Bearer [REDACTED]")
            || printed.contains("token=[REDACTED]"),
        "the requests that carry the token were logged, masked"
    );
    assert!(!printed.contains(&token), "the token was printed");
}

/// `--token` stays, but its help says where else the token can come from: a command line
/// is visible to every user of the computer.
#[test]
fn the_help_recommends_keeping_the_token_off_the_command_line() {
    let output = Command::new(env!("CARGO_BIN_EXE_linzumi"))
        .args(["connect", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(
        help.contains("prefer KANDAN_TOKEN or the auth file"),
        "{help}"
    );
}

/// A local server that accepts connections and never answers (nor reads).
fn deaf_server() -> (u16, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let thread = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    (port, thread)
}

/// Kandan sends 200 `forward_http_request`s with 4 MiB bodies to a local server that
/// never answers. The runner takes as many as its in-flight caps allow and refuses the
/// rest at once (`busy`), so its peak memory stays far below what holding them all would
/// cost (about 1.8 GB before the caps).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_forwarded_requests_is_refused_past_the_cap() {
    const FLOOD: usize = 200;
    let server = KandanTestServer::start(ServerConfig::default())
        .await
        .unwrap();
    let (port, _deaf) = deaf_server();
    let token = server.issue_token("tester", None);
    let linzumi = Linzumi::connect(
        &server,
        "flood-runner",
        &["--forward-port", &port.to_string()],
        &[("KANDAN_TOKEN", &token)],
    )
    .await;
    server
        .wait_for_event(
            |e| e.topic == "local_runner:flood-runner" && e.event == "heartbeat",
            WAIT,
        )
        .await
        .unwrap_or_else(|error| panic!("{error}\n{}", linzumi.stderr()));
    let baseline = linzumi.peak_resident();

    // Exactly 4 MiB: the most a control-path body may be.
    let body = BASE64.encode(vec![b'x'; 4 * 1024 * 1024]);
    for n in 0..FLOOD {
        server
            .push_control(
                "flood-runner",
                json!({"type": "forward_http_request", "requestId": format!("r{n}"),
                    "port": port, "method": "POST", "path": "/upload", "bodyBase64": body}),
            )
            .await
            .unwrap();
    }
    let answers = |server: &KandanTestServer| -> Vec<Value> {
        server
            .events_for("local_runner:flood-runner")
            .into_iter()
            .filter(|event| event.event == "forward:http_response")
            .map(|event| event.payload)
            .collect()
    };
    tokio::time::timeout(WAIT, async {
        while answers(&server).len() < FLOOD / 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "{} of the flood were answered; the runner grew by {} MiB",
            answers(&server).len(),
            linzumi.peak_resident().saturating_sub(baseline) >> 20
        )
    });
    let refused: Vec<Value> = answers(&server)
        .into_iter()
        .filter(|answer| {
            answer["error"]
                .as_str()
                .is_some_and(|error| error.starts_with("busy"))
        })
        .collect();
    assert!(refused.len() >= FLOOD / 2, "{refused:?}");
    assert!(
        answers(&server).iter().all(|answer| !answer["error"]
            .as_str()
            .is_some_and(|error| error.starts_with("body_too_large"))),
        "a body of exactly 4 MiB was refused as too large"
    );
    let grown = linzumi.peak_resident().saturating_sub(baseline);
    eprintln!(
        "peak resident growth under the forward flood: {} MiB",
        grown >> 20
    );
    assert!(
        grown < 400 << 20,
        "the flood grew the runner by {} MiB",
        grown >> 20
    );
    let (status, stderr) = linzumi.terminate();
    assert!(status.success(), "{stderr}");
}
