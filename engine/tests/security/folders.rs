//! Several shared folders in one process (the desktop app hosts them all): a folder's
//! thread is asked only about the dev servers its own Codex started, and never about a
//! port of a process the runner runs for itself (any folder's Codex app-server).
use std::time::Duration;

use linzumi_engine::runner::Runner;
use serde_json::json;

use crate::support::dev_server::{self, DevServer, free_port};
use crate::support::{CHANNEL, Harness, WAIT, WORKSPACE, mock};

const PROMPT: &str = "local_runner_port_forward_request";

/// A chat session whose Codex may run servers, as the desktop runs each folder.
async fn folder(name: &str) -> (Harness, Runner, String) {
    let harness = Harness::new(name).await;
    let mut options = harness.session_options();
    options.runtime.sandbox = Some("danger-full-access".into());
    options.runtime.approval_policy = Some("never".into());
    let runner = Runner::start(options).await.unwrap();
    let thread = harness.bound_thread().await;
    (harness, runner, thread)
}

/// The ports this folder's thread was asked about.
fn prompted_ports(harness: &Harness, thread: &str) -> Vec<u64> {
    harness
        .kandan
        .thread(WORKSPACE, CHANNEL, thread)
        .into_iter()
        .filter(|row| row.payload["structured"]["kind"] == PROMPT)
        .filter_map(|row| row.payload["structured"]["port"].as_u64())
        .collect()
}

fn port_of(url: &str) -> u64 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

/// Two folders shared in one process, and a server the process started by other means:
/// a dev server Codex starts in folder A is offered in A's thread only; B's thread is
/// asked about nothing; neither is asked about either app-server's port or the other
/// server.
#[tokio::test(flavor = "multi_thread")]
async fn a_folders_thread_is_asked_only_about_its_own_dev_servers() {
    let (a, runner_a, thread_a) = folder("folder-a").await;
    let (b, runner_b, thread_b) = folder("folder-b").await;
    let bystander = DevServer::start(0);
    let port = free_port();
    let seq = a
        .say(
            &thread_a,
            "tester",
            &mock(
                json!([{"exec": dev_server::command(port), "yield_ms": 1500},
                {"text": "The dev server is up."}]),
            ),
        )
        .await;
    a.state_of(seq, "processed").await;
    a.kandan
        .wait_for_thread(
            WORKSPACE,
            CHANNEL,
            |rows| {
                rows.iter().any(|row| {
                    row.payload["structured"]["kind"] == PROMPT
                        && row.payload["structured"]["port"] == port
                })
            },
            WAIT,
        )
        .await
        .expect("folder A is asked about its dev server");
    // Several scans and debounce periods: whatever would be offered has been by now.
    tokio::time::sleep(Duration::from_secs(3)).await;

    assert_eq!(prompted_ports(&a, &thread_a), [u64::from(port)]);
    assert_eq!(prompted_ports(&b, &thread_b), Vec::<u64>::new());
    let codex_ports = [
        port_of(&runner_a.codex().url),
        port_of(&runner_b.codex().url),
    ];
    for (name, harness, thread) in [("A", &a, &thread_a), ("B", &b, &thread_b)] {
        for asked in prompted_ports(harness, thread) {
            assert!(
                !codex_ports.contains(&asked),
                "{name} was asked about Codex's port {asked}"
            );
            assert_ne!(
                asked,
                u64::from(bystander.port),
                "{name} was asked about a bystander"
            );
        }
    }
    drop((runner_a, runner_b));
}
