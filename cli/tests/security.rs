//! What `linzumi` itself must keep to itself: the Kandan token given in `KANDAN_TOKEN`
//! reaches no process it starts (a command Codex runs prints its environment) and no line
//! it prints, even at `RUST_LOG=trace`, where libraries log request lines and headers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use kandan_test_server::{KandanTestServer, ServerConfig};
use linzumi_engine::process_tree;
use mock_model_api::{CodexHome, CodexHomeOptions, MockModelApi};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "linzumi-cli-security-{name}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::canonicalize(dir).unwrap()
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
    let model = MockModelApi::start().await.unwrap();
    let project = scratch("env");
    let home = CodexHome::create(
        &model,
        CodexHomeOptions {
            trusted_projects: vec![project.clone()],
            ..CodexHomeOptions::default()
        },
    )
    .unwrap();
    let token = server.issue_token("tester", None);
    // A file, not a pipe: the trace is far more than a pipe holds while nobody reads it.
    let stderr_path = project.join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_linzumi"))
        .args(["connect", "--kandan-url", &server.ws_url()])
        .args(["--workspace", "acme", "--channel", "codex"])
        .args(["--runner-id", "env-runner", "--cwd"])
        .arg(&project)
        .arg("--codex-bin")
        .arg(mock_model_api::codex_bin().unwrap())
        .envs(home.env())
        .env("KANDAN_TOKEN", &token)
        .env("RUST_LOG", "trace")
        .current_dir(&project)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let printed = || std::fs::read_to_string(&stderr_path).unwrap();

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
        Err(error) => {
            let _ = child.kill();
            panic!("{error}\n{}", printed());
        }
    };
    let thread = root[0].thread_id.clone();
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

    for pid in process_tree::tree(child.id()).into_iter().skip(1) {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&environ).contains(&token),
            "the token is in the environment of process {pid}"
        );
    }

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
    let printed = printed();
    assert!(printed.contains("TRACE"), "the trace was on");
    assert!(
        printed.contains("Authorization: Bearer [REDACTED]")
            || printed.contains("token=[REDACTED]"),
        "the requests that carry the token were logged, masked"
    );
    assert!(!printed.contains(&token), "the token was printed");
    let _ = std::fs::remove_dir_all(project);
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
