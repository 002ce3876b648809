//! The runner end to end: the Kandan test server drives the REAL codex app-server (against
//! the mock model API) through the `local_runner:<id>` topic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use linzumi_engine::process_tree;
use serde_json::json;
use support::{Harness, TOPIC, mock, text_input};

#[tokio::test]
async fn joins_with_the_full_capabilities_and_sends_heartbeats() {
    let harness = Harness::new("join").await;
    let mut options = harness.options();
    options.runtime.model = Some("gpt-5.5".into());
    options.runtime.reasoning_effort = Some("high".into());
    let mut runner = linzumi_engine::runner::Runner::start(options)
        .await
        .unwrap();

    let join = harness
        .kandan
        .joins()
        .into_iter()
        .find(|join| join.topic == TOPIC)
        .unwrap();
    assert!(join.accepted);
    assert_eq!(join.payload["clientName"], "kandan-local-codex-runner");
    // The seed's literal join version; the build is said beside it.
    assert_eq!(join.payload["version"], "0.0.1");
    assert_eq!(join.payload["runnerVersion"], env!("CARGO_PKG_VERSION"));
    let capabilities = &join.payload["capabilities"];
    let project = harness.project.dir.display().to_string();
    assert_eq!(capabilities["codexAppServer"], true);
    assert_eq!(capabilities["codexRemoteTui"], true);
    assert_eq!(capabilities["startInstance"], true);
    assert_eq!(capabilities["allowedCwds"], json!([project]));
    assert_eq!(capabilities["allowedCwdSuggestions"], json!([project]));
    assert_eq!(capabilities["portForwarding"], false);
    assert_eq!(capabilities["allowedPorts"], json!([]));
    assert_eq!(capabilities["streamingForwarding"], true);
    assert_eq!(capabilities["streamingForwardingVersion"], 1);
    assert!(capabilities.get("toolStatus").is_some());
    assert!(capabilities.get("editorRuntime").is_some());

    let heartbeat = harness.event(|event| event.event == "heartbeat").await;
    assert_eq!(heartbeat.payload["instanceId"], runner.instance_id());
    assert_eq!(heartbeat.payload["cwd"], project.as_str());
    assert_eq!(heartbeat.payload["fast"], false);
    // Without a chat session the seed sends null model and effort (heartbeat C8).
    assert_eq!(heartbeat.payload["model"], serde_json::Value::Null);
    assert_eq!(
        heartbeat.payload["reasoningEffort"],
        serde_json::Value::Null
    );
    assert_eq!(heartbeat.payload["capabilities"], *capabilities);

    // [designed] instance_started once Codex is up, with the shared folder's threads.
    let started = harness
        .event(|event| event.event == "instance_started")
        .await;
    assert_eq!(started.payload["instanceId"], runner.instance_id());
    assert_eq!(started.payload["cwd"], project.as_str());
    assert_eq!(started.payload["restart"], false);
    assert!(
        started.payload["threads"].is_array(),
        "{:?}",
        started.payload
    );
    runner.stop().await;
    let stopped = harness
        .event(|event| event.event == "instance_stopped")
        .await;
    assert_eq!(stopped.payload["reason"], "runner_stopped");
}

#[tokio::test]
async fn start_instance_only_inside_the_allowed_roots() {
    let harness = Harness::new("roots").await;
    let mut runner = harness.start_runner().await;

    let thread_id = harness.start_thread(json!({})).await;
    assert!(!thread_id.is_empty());

    let outside = harness
        .control_reply(json!({"type": "start_instance", "cwd": "/etc"}))
        .await;
    assert_eq!(outside.event, "codex_response");
    assert_eq!(outside.payload["ok"], false);
    assert_eq!(
        outside.payload["error"],
        "cwd /etc is outside the allowed roots"
    );

    let escape = format!("{}/../..", harness.project.dir.display());
    let reply = harness
        .control_reply(json!({"type": "start_instance", "cwd": escape}))
        .await;
    assert_eq!(reply.payload["ok"], false, "{:?}", reply.payload);
    runner.stop().await;
}

#[tokio::test]
async fn a_turn_streams_its_notifications_in_order() {
    let harness = Harness::new("turn").await;
    let mut runner = harness.start_runner().await;
    let thread_id = harness.start_thread(json!({})).await;

    let text = "The quick brown fox jumps over the lazy dog.";
    let reply = harness
        .control_reply(json!({"type": "start_turn", "threadId": thread_id,
            "input": text_input(&mock(json!([{"text": text, "deltas": 9}])))}))
        .await;
    assert_eq!(reply.payload["ok"], true, "{:?}", reply.payload);
    harness.notification("turn/completed", |_| true).await;

    let notifications = harness.notifications();
    let seqs: Vec<u64> = notifications
        .iter()
        .map(|n| n["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|pair| pair[0] < pair[1]), "{seqs:?}");
    let methods: Vec<&str> = notifications
        .iter()
        .map(|n| n["method"].as_str().unwrap())
        .collect();
    let position = |method: &str| methods.iter().position(|m| *m == method).unwrap();
    assert!(position("turn/started") < position("item/agentMessage/delta"));
    assert!(position("item/agentMessage/delta") < position("turn/completed"));
    let streamed: String = notifications
        .iter()
        .filter(|n| n["method"] == "item/agentMessage/delta")
        .map(|n| n["params"]["delta"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, text);
    let delta = notifications
        .iter()
        .find(|n| n["method"] == "item/agentMessage/delta")
        .unwrap();
    assert_eq!(delta["instanceId"], runner.instance_id());
    assert_eq!(delta["metadata"]["threadId"], thread_id.as_str());
    assert!(delta["metadata"]["turnId"].is_string());
    assert!(delta["metadata"]["itemId"].is_string());
    assert!(delta["receivedAt"].as_str().unwrap().ends_with('Z'));
    runner.stop().await;
}

#[tokio::test]
async fn interrupt_and_read_thread() {
    let harness = Harness::new("interrupt").await;
    let mut runner = harness.start_runner().await;
    let thread_id = harness.start_thread(json!({})).await;

    harness
        .control(json!({"type": "start_turn", "threadId": thread_id,
            "input": text_input(&mock(json!([[{"text": "partial"}, {"hang_ms": 30000}]])))}))
        .await;
    harness.notification("turn/started", |_| true).await;
    let reply = harness
        .control_reply(json!({"type": "interrupt_turn", "threadId": thread_id}))
        .await;
    assert_eq!(reply.payload["ok"], true, "{:?}", reply.payload);
    let completed = harness
        .notification("turn/completed", |params| {
            params["turn"]["status"] == "interrupted"
        })
        .await;
    assert_eq!(completed["params"]["threadId"], thread_id.as_str());

    let read = harness
        .control_reply(json!({"type": "read_thread", "threadId": thread_id, "includeTurns": true}))
        .await;
    assert_eq!(read.event, "codex_response", "{:?}", read.payload);
    let turns = read.payload["response"]["thread"]["turns"]
        .as_array()
        .unwrap();
    assert_eq!(turns.len(), 1);
    assert_eq!(turns[0]["status"], "interrupted");
    runner.stop().await;
}

#[tokio::test]
async fn an_approval_request_is_answered_from_kandan() {
    let harness = Harness::new("approval").await;
    let mut runner = harness.start_full_access_runner().await;
    let thread_id = harness
        .start_thread(json!({"approvalPolicy": "untrusted", "sandbox": "danger-full-access"}))
        .await;

    harness
        .control(json!({"type": "start_turn", "threadId": thread_id,
            "input": text_input(&mock(json!([{"exec": "touch approved.txt && echo done"}])))}))
        .await;
    let request = harness.event(|event| event.event == "codex_request").await;
    assert_eq!(
        request.payload["method"],
        "item/commandExecution/requestApproval"
    );
    assert_eq!(request.payload["metadata"]["threadId"], thread_id.as_str());
    let request_id = request.payload["requestId"].as_str().unwrap().to_owned();

    let reply = harness
        .control_reply(
            json!({"type": "resolve_codex_approval_request", "threadId": thread_id,
            "requestId": request_id, "decision": "approve"}),
        )
        .await;
    assert_eq!(reply.payload["ok"], true, "{:?}", reply.payload);
    let completed = harness
        .notification("item/completed", |params| {
            params["item"]["type"] == "commandExecution"
        })
        .await;
    assert_eq!(completed["params"]["item"]["status"], "completed");
    assert_eq!(completed["params"]["item"]["aggregatedOutput"], "done\n");
    assert!(harness.project.dir.join("approved.txt").exists());

    // The same request cannot be answered twice.
    let again = harness
        .control_reply(
            json!({"type": "resolve_codex_approval_request", "threadId": thread_id,
            "requestId": request_id, "decision": "deny"}),
        )
        .await;
    assert_eq!(again.payload["error"], "approval_request_not_found");
    runner.stop().await;
}

#[tokio::test]
async fn stale_instance_ids_and_malformed_controls_do_not_stop_the_runner() {
    let harness = Harness::new("bad-controls").await;
    let mut runner = harness.start_runner().await;

    harness
        .control(
            json!({"type": "start_instance", "instanceId": "codex-from-a-previous-run",
            "cwd": harness.project.dir}),
        )
        .await;
    let error = harness
        .control_reply(json!({"type": "start_turn", "input": []}))
        .await;
    assert_eq!(error.event, "codex_error");
    assert_eq!(
        error.payload["message"],
        "malformed start_turn control: missing field `threadId`"
    );
    harness
        .control(json!({"type": "format_disk", "path": "/"}))
        .await;
    let unknown = harness
        .event(|event| {
            event.event == "codex_error"
                && event.payload["message"] == "unknown control type \"format_disk\""
        })
        .await;
    assert_eq!(unknown.payload["instanceId"], runner.instance_id());

    // The stale start_instance was never answered, and the runner still works.
    let stale_answered = harness.kandan.events_for(TOPIC).iter().any(|event| {
        event.event == "codex_response" && event.payload["controlType"] == "start_instance"
    });
    assert!(!stale_answered);
    let thread = harness
        .start_thread(json!({"instanceId": runner.instance_id()}))
        .await;
    assert!(!thread.is_empty());
    let ignored = harness
        .log_lines()
        .into_iter()
        .find(|line| line["event"] == "kandan.control_ignored")
        .unwrap();
    assert_eq!(ignored["reason"], "instance_id_mismatch");
    assert_eq!(ignored["controlInstanceId"], "codex-from-a-previous-run");
    runner.stop().await;
}

#[tokio::test]
async fn a_killed_app_server_is_reported_and_replaced() {
    let harness = Harness::new("kill").await;
    let mut runner = harness.start_runner().await;
    let thread_id = harness.start_thread(json!({})).await;
    // A finished turn, so Codex's history on disk lists the thread.
    harness
        .control(json!({"type": "start_turn", "threadId": thread_id,
            "input": text_input("before the crash")}))
        .await;
    harness.notification("turn/completed", |_| true).await;
    harness
        .control(json!({"type": "start_turn", "threadId": thread_id,
            "input": text_input(&mock(json!([{"hang_ms": 30000}])))}))
        .await;
    harness.notification("turn/started", |_| true).await;

    let old = runner.codex();
    let group = nix::unistd::Pid::from_raw(old.pid.unwrap() as i32);
    nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL).unwrap();

    let error = harness
        .event(|event| {
            event.event == "codex_error"
                && event.payload["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("exited") && m.contains("restarting"))
        })
        .await;
    assert_eq!(error.payload["instanceId"], runner.instance_id());
    let mut events = runner.events();
    tokio::time::timeout(support::WAIT, async {
        while runner.codex() == old {
            let _ = events.recv().await;
        }
    })
    .await
    .unwrap();
    assert_ne!(runner.codex().url, old.url);

    // [designed] Kandan hears the instance go and come back, with the thread it had.
    let stopped = harness
        .event(|event| event.event == "instance_stopped")
        .await;
    assert_eq!(stopped.payload["reason"], "exited");
    let started = harness
        .event(|event| event.event == "instance_started" && event.payload["restart"] == true)
        .await;
    let threads = started.payload["threads"].as_array().unwrap();
    let listed = threads
        .iter()
        .find(|thread| thread["id"] == thread_id.as_str())
        .unwrap_or_else(|| panic!("{thread_id} not in {threads:?}"));
    let project = std::fs::canonicalize(&harness.project.dir).unwrap();
    assert_eq!(listed["cwd"], project.display().to_string());

    // The thread survives on disk: a turn on it works with the new app-server.
    let reply = harness
        .control_reply(json!({"type": "start_turn", "threadId": thread_id,
            "input": text_input("after the crash")}))
        .await;
    assert_eq!(reply.payload["ok"], true, "{:?}", reply.payload);
    harness
        .notification("turn/completed", |params| {
            params["turn"]["status"] == "completed"
        })
        .await;
    runner.stop().await;
}

#[tokio::test]
async fn a_kandan_restart_mid_turn_loses_no_notification() {
    let harness = Harness::new("kandan-restart").await;
    let mut runner = harness.start_runner().await;
    let thread_id = harness.start_thread(json!({})).await;
    harness.kandan.clear_events();

    harness
        .control(json!({"type": "start_turn", "threadId": thread_id,
            "input": text_input(&mock(json!([{"text": "x".repeat(60), "deltas": 60, "delay_ms": 25}])))}))
        .await;
    harness
        .notification("item/agentMessage/delta", |_| true)
        .await;
    harness.kandan.restart(Duration::from_millis(300)).await;
    harness.notification("turn/completed", |_| true).await;

    // Every seq the runner produced reached Kandan (retries may repeat one).
    let seqs: BTreeSet<u64> = harness
        .notifications()
        .iter()
        .map(|n| n["seq"].as_u64().unwrap())
        .collect();
    let (first, last) = (*seqs.first().unwrap(), *seqs.last().unwrap());
    assert_eq!(seqs.len() as u64, last - first + 1, "gaps in {seqs:?}");
    let streamed: String = {
        let mut seen = BTreeSet::new();
        harness
            .notifications()
            .iter()
            .filter(|n| n["method"] == "item/agentMessage/delta")
            .filter(|n| seen.insert(n["seq"].as_u64().unwrap()))
            .map(|n| n["params"]["delta"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(streamed, "x".repeat(60));
    assert!(
        harness
            .kandan
            .joins()
            .iter()
            .filter(|join| join.topic == TOPIC)
            .count()
            >= 2,
        "the runner rejoined"
    );
    // It keeps working after the restart.
    let reply = harness
        .control_reply(json!({"type": "read_thread", "threadId": thread_id}))
        .await;
    assert_eq!(reply.event, "codex_response");
    runner.stop().await;
}

#[tokio::test]
async fn stop_ends_every_process_it_started() {
    let harness = Harness::new("stop").await;
    let mut runner = harness.start_runner().await;
    let thread_id = harness.start_thread(json!({})).await;
    // A command that would outlive its turn: Codex leaves it running in the background.
    harness
        .control(json!({"type": "start_turn", "threadId": thread_id,
            "input": text_input(&mock(json!([{"exec": "sleep 300", "yield_ms": 200}])))}))
        .await;
    harness.notification("turn/completed", |_| true).await;
    let members = process_tree::tree(runner.codex().pid.unwrap());
    assert!(
        members.len() >= 3,
        "the codex wrapper, codex and the command: {members:?}"
    );

    runner.stop().await;
    for pid in members {
        assert!(
            !process_tree::alive(pid),
            "process {pid} survived the runner"
        );
    }
}
