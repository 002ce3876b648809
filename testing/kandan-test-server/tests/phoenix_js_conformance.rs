//! Runs the official phoenix.js client (tests/conformance/phoenix-js) against an in-process
//! server: the proof that the server follows Phoenix Channels V2, not just our own reading of it.
//!
//! Needs Node.js on PATH. Without it this test fails on purpose: skipping would let protocol
//! regressions through unnoticed.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use kandan_test_server::{KandanTestServer, ServerConfig};
use tokio::process::Command;

/// Generous: the script itself needs about two seconds, `npm ci` (first run only) a few more.
const NODE_TIMEOUT: Duration = Duration::from_secs(120);

fn conformance_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance/phoenix-js")
}

async fn run(program: &str, args: &[&str], dir: &Path) -> Output {
    let child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(NODE_TIMEOUT, child).await {
        Err(_) => panic!(
            "`{program} {}` did not finish within {NODE_TIMEOUT:?}",
            args.join(" ")
        ),
        Ok(Err(err)) if err.kind() == ErrorKind::NotFound => panic!(
            "`{program}` is not on PATH. The phoenix.js conformance test needs Node.js (>= 20) \
             and npm; install them (e.g. `apt-get install nodejs npm`) and run again."
        ),
        Ok(Err(err)) => panic!("could not run `{program}`: {err}"),
        Ok(Ok(output)) => output,
    }
}

fn describe(output: &Output) -> String {
    format!(
        "exit status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Installs the pinned phoenix and ws packages from package-lock.json if they are missing.
async fn ensure_node_modules(dir: &Path) {
    if dir.join("node_modules/phoenix").is_dir() && dir.join("node_modules/ws").is_dir() {
        return;
    }
    let output = run("npm", &["ci", "--no-audit", "--no-fund"], dir).await;
    assert!(
        output.status.success(),
        "npm ci failed\n{}",
        describe(&output)
    );
}

#[tokio::test]
async fn official_phoenix_js_client_conforms() {
    let dir = conformance_dir();
    let version = run("node", &["--version"], &dir).await;
    assert!(
        version.status.success(),
        "node --version failed\n{}",
        describe(&version)
    );
    ensure_node_modules(&dir).await;

    let server = KandanTestServer::start(ServerConfig::default())
        .await
        .expect("server starts");
    let token = server.issue_token("tester", None);
    let url = server.http_url();
    let output = run("node", &["conformance.mjs", &url, &token], &dir).await;
    assert!(
        output.status.success(),
        "phoenix.js conformance failed\n{}",
        describe(&output)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("checks passed"),
        "unexpected output\n{}",
        describe(&output)
    );

    // The server saw what phoenix.js sent: one join per (re)join, with fresh join_refs.
    let joins: Vec<_> = server
        .joins()
        .into_iter()
        .filter(|join| join.topic == "conformance:room")
        .collect();
    assert_eq!(
        joins.len(),
        3,
        "join, rejoin after the drop, rejoin after the crash"
    );
    assert!(joins.iter().all(|join| join.accepted));
    server.shutdown().await;
}
