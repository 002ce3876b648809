//! The owner's way back: what the owner takes back is gone for Kandan at once, and a
//! shared folder that is no longer where it was shared gets no more of Codex's work.
//!
//! - "Stop preview" withdraws an approved port: neither the preview (a raw request with
//!   any Host/Origin), nor the runner topic, nor a WebSocket reaches it afterwards, Kandan
//!   is told (`forward_port_revoked`, `stopped_by_owner`), and the same server is not
//!   offered again. Only an approved dev server can be "stopped"; the call cannot be used
//!   to touch other ports.
//! - A shared folder moved away and replaced by a link to another folder: the next chat
//!   message runs no turn there (nor anywhere), its author is told why, and the owner's
//!   front hears `FolderMissing`.
use std::time::Duration;

use linzumi_engine::runner::{Runner, RunnerEvent};
use serde_json::json;

use crate::support::dev_server::{self, free_port};
use crate::support::{CHANNEL, Harness, RUNNER_ID, WAIT, WORKSPACE, mock};
use crate::{forward_http, raw_preview};

const PROMPT: &str = "local_runner_port_forward_request";

/// A chat session whose Codex may run servers, as the desktop runs each folder.
async fn folder(name: &str) -> (Harness, Runner, String) {
    let harness = Harness::new(name).await;
    let mut options = harness.session_options();
    options.runtime.sandbox = Some("danger-full-access".into());
    options.runtime.approval_policy = Some("never".into());
    let runner = Runner::start(options).await.unwrap();
    harness
        .kandan
        .wait_for_tunnel(RUNNER_ID, WAIT)
        .await
        .unwrap();
    let thread = harness.bound_thread().await;
    (harness, runner, thread)
}

fn prompts_for(harness: &Harness, thread: &str, port: u16) -> Vec<String> {
    harness
        .kandan
        .thread(WORKSPACE, CHANNEL, thread)
        .into_iter()
        .filter(|row| {
            row.payload["structured"]["kind"] == PROMPT && row.payload["structured"]["port"] == port
        })
        .map(|row| {
            row.payload["structured"]["request_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_preview_is_closed_to_kandan_and_every_client() {
    let (harness, mut runner, thread) = folder("stop-preview").await;
    let port = free_port();
    let seq = harness
        .say(
            &thread,
            "tester",
            &mock(
                json!([{"exec": dev_server::command(port), "yield_ms": 1500},
                {"text": "The dev server is up."}]),
            ),
        )
        .await;
    harness.state_of(seq, "processed").await;
    harness
        .kandan
        .wait_for_thread(
            WORKSPACE,
            CHANNEL,
            |_| !prompts_for(&harness, &thread, port).is_empty(),
            WAIT,
        )
        .await
        .unwrap();
    let request_id = prompts_for(&harness, &thread, port).remove(0);
    runner
        .resolve_port_forward(&request_id, true)
        .await
        .unwrap();
    let (status, body) = raw_preview(&harness, port, "/api/hello", "").await;
    assert_eq!(status, 200, "{body}");

    // Not a preview to stop: ports nobody approved, and Codex's own.
    let codex_port: u16 = runner
        .codex()
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    for other in [free_port(), codex_port] {
        assert!(runner.stop_preview(other).await.is_err(), "port {other}");
    }
    let (status, _) = raw_preview(&harness, port, "/api/hello", "").await;
    assert_eq!(status, 200, "a refused stop changed nothing");

    let mut events = runner.events();
    runner.stop_preview(port).await.unwrap();
    let revoked = harness
        .event(|event| event.event == "forward_port_revoked")
        .await;
    assert_eq!(revoked.payload["port"], port);
    assert_eq!(revoked.payload["reason"], "stopped_by_owner");
    assert_eq!(
        revoked.payload["capabilities"]["revokedPorts"],
        json!([port])
    );
    assert!(
        !revoked.payload["capabilities"]["allowedPorts"]
            .as_array()
            .unwrap()
            .contains(&json!(port))
    );
    tokio::time::timeout(WAIT, async {
        while !matches!(
            events.recv().await,
            Ok(RunnerEvent::PortForwardRevoked { port: stopped, .. }) if stopped == port
        ) {}
    })
    .await
    .expect("the front hears the port was withdrawn");

    // Every way in is closed: the preview with any Host/Origin, the runner topic, a socket.
    for headers in [
        "",
        "origin: https://evil.example\r\nx-forwarded-host: evil.example\r\n",
    ] {
        let (status, body) = raw_preview(&harness, port, "/api/hello", headers).await;
        assert_eq!(status, 502, "{headers:?}: {body}");
        assert!(body.contains("port_not_allowed"), "{body}");
    }
    let answer = forward_http(
        &harness,
        json!({"port": port, "method": "GET", "path": "/api/hello"}),
    )
    .await;
    assert_eq!(answer["ok"], false, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("port_not_allowed")
    );
    harness
        .control(json!({"type": "forward_websocket_open", "socketId": "stopped", "port": port, "path": "/ws"}))
        .await;
    let opened = harness
        .event(|event| {
            event.event == "forward:websocket_opened" && event.payload["socketId"] == "stopped"
        })
        .await;
    assert_eq!(opened.payload["ok"], false, "{}", opened.payload);
    // Stopping twice finds nothing to stop.
    assert!(runner.stop_preview(port).await.is_err());
    // The server still runs; over several scans it is not offered again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(prompts_for(&harness, &thread, port).len(), 1);
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_turn_runs_in_a_shared_folder_replaced_by_a_link() {
    let (harness, mut runner, thread) = folder("folder-swapped").await;
    let mut events = runner.events();
    let first = harness
        .say(&thread, "tester", &mock(json!([{"text": "hello"}])))
        .await;
    harness.state_of(first, "processed").await;

    // The folder moves away and a link to a folder the owner never shared takes its place.
    let shared = harness.project.dir.clone();
    let moved = shared.with_extension("moved");
    let private = shared.with_extension("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::rename(&shared, &moved).unwrap();
    std::os::unix::fs::symlink(&private, &shared).unwrap();

    let seq = harness
        .say(
            &thread,
            "tester",
            &mock(json!([{"exec": "touch pwned.txt"}, {"text": "done"}])),
        )
        .await;
    let failed = harness.state_of(seq, "failed").await;
    assert!(
        failed["reason"].as_str().unwrap().contains("shared folder"),
        "{failed}"
    );
    let missing = tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Ok(RunnerEvent::FolderMissing { path }) => return path,
                Ok(RunnerEvent::TurnStarted { seq: started, .. }) if started == seq => {
                    panic!("a turn started in the swapped folder")
                }
                _ => {}
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(missing, shared);
    // Nor does a later message run.
    let later = harness
        .say(
            &thread,
            "tester",
            &mock(json!([{"exec": "touch later.txt"}])),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let state = harness
        .kandan
        .thread(WORKSPACE, CHANNEL, &thread)
        .into_iter()
        .find(|row| row.seq == later)
        .and_then(|row| row.state);
    assert_ne!(
        state.as_ref().map(|state| state["status"].clone()),
        Some(json!("processed")),
        "{state:?}"
    );
    for folder in [&private, &moved] {
        for file in ["pwned.txt", "later.txt"] {
            assert!(
                !folder.join(file).exists(),
                "{} in {}",
                file,
                folder.display()
            );
        }
    }
    runner.stop().await;
    std::fs::remove_file(&shared).unwrap();
    std::fs::rename(&moved, &shared).unwrap();
    std::fs::remove_dir_all(&private).unwrap();
}
