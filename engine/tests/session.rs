//! The chat session end to end: people write in a Kandan test-server thread, the REAL
//! codex (against the mock model API) works, and its output streams back as rows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use linzumi_engine::runner::{Runner, RunnerEvent};
use serde_json::json;
use support::{CHANNEL, Harness, WORKSPACE, mock};

async fn session(name: &str) -> (Harness, Runner, String) {
    let harness = Harness::new(name).await;
    let runner = Runner::start(harness.session_options()).await.unwrap();
    let thread = harness.bound_thread().await;
    (harness, runner, thread)
}

fn assistant_text(harness: &Harness, thread: &str, seq: i64) -> String {
    harness
        .rows_for(thread, seq)
        .iter()
        .filter(|row| row.payload["structured"]["kind"] == "codex_assistant_message")
        .map(|row| {
            row.payload["structured"]["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join("|")
}

#[tokio::test]
async fn the_thread_root_announces_the_runner() {
    let (harness, mut runner, thread) = session("root").await;
    let rows = harness.kandan.thread(WORKSPACE, CHANNEL, &thread);
    assert_eq!(rows.len(), 1);
    let root = &rows[0];
    assert!(root.body.contains("test-runner"), "{}", root.body);
    let structured = &root.payload["structured"];
    assert_eq!(structured["kind"], "local_runner_availability");
    assert_eq!(structured["cwd"], harness.project.dir.display().to_string());
    assert_eq!(structured["listen_user"], "tester");
    assert_eq!(root.payload["source"], "linzumi_runner");
    runner.stop().await;
}

#[tokio::test]
async fn three_queued_messages_are_answered_in_order() {
    let (harness, mut runner, thread) = session("queue").await;
    let mut seqs = Vec::new();
    for n in 1..=3 {
        let prompt = mock(json!([{"text": format!("answer {n}"), "deltas": 3, "delay_ms": 20}]));
        seqs.push(harness.say(&thread, "tester", &prompt).await);
    }
    for seq in &seqs {
        harness.state_of(*seq, "processed").await;
    }
    for (n, seq) in seqs.iter().enumerate() {
        assert_eq!(
            assistant_text(&harness, &thread, *seq),
            format!("answer {}", n + 1)
        );
    }
    // One turn at a time: each answer is written after the previous message finished.
    let rows = harness.kandan.thread(WORKSPACE, CHANNEL, &thread);
    let answer_seqs: Vec<i64> = seqs
        .iter()
        .map(|seq| {
            rows.iter()
                .find(|row| row.payload["reply_to_seq"] == *seq)
                .unwrap()
                .seq
        })
        .collect();
    assert!(
        answer_seqs.windows(2).all(|pair| pair[0] < pair[1]),
        "{answer_seqs:?}"
    );
    runner.stop().await;
}

#[tokio::test]
async fn two_thousand_deltas_become_a_few_dozen_writes_with_the_exact_text() {
    let harness = Harness::new("deltas").await;
    let mut options = harness.session_options();
    if let Some(session) = options.channel_session.as_mut() {
        session.stream_flush = linzumi_engine::session::driver::STREAM_FLUSH;
    }
    let mut runner = Runner::start(options).await.unwrap();
    let thread = harness.bound_thread().await;
    let text: String = (0..2000)
        .map(|n| char::from(b'a' + (n % 26) as u8))
        .collect();
    let seq = harness
        .say(
            &thread,
            "tester",
            &mock(json!([{"text": text, "deltas": 2000, "delay_ms": 1}])),
        )
        .await;
    harness.state_of(seq, "processed").await;
    let rows: Vec<_> = harness
        .rows_for(&thread, seq)
        .into_iter()
        .filter(|row| row.payload["structured"]["kind"] == "codex_assistant_message")
        .collect();
    assert_eq!(rows.len(), 1, "one row per logical item");
    let row = &rows[0];
    assert_eq!(row.payload["structured"]["text"], text.as_str());
    assert_eq!(row.payload["structured"]["streaming"], false);
    let writes = 1 + harness.kandan.message_updates(WORKSPACE, CHANNEL, row.seq);
    assert!(writes > 1, "it streamed");
    assert!(writes <= 60, "{writes} writes for 2,000 deltas");
    runner.stop().await;
}

#[tokio::test]
async fn a_command_and_a_file_change_appear_with_their_results() {
    let (harness, mut runner, thread) = session("tools").await;
    let seq = harness
        .say(
            &thread,
            "tester",
            &mock(json!([{"exec": "echo hello"},
                {"write_file": {"path": "notes/todo.txt", "content": "ship it\n"}},
                {"text": "Done."}])),
        )
        .await;
    harness.state_of(seq, "processed").await;
    let rows = harness.rows_for(&thread, seq);
    let command = rows
        .iter()
        .find(|row| row.payload["structured"]["kind"] == "codex_command")
        .unwrap();
    assert_eq!(command.payload["structured"]["output"], "hello\n");
    assert_eq!(command.payload["structured"]["exit_code"], 0);
    assert!(command.body.contains("echo hello"), "{}", command.body);
    let change = rows
        .iter()
        .find(|row| row.payload["structured"]["kind"] == "codex_file_change")
        .unwrap();
    assert_eq!(change.payload["structured"]["status"], "completed");
    assert!(
        change.payload["structured"]["changes"][0]["path"]
            .as_str()
            .unwrap()
            .ends_with("notes/todo.txt")
    );
    assert_eq!(
        std::fs::read_to_string(harness.project.dir.join("notes/todo.txt")).unwrap(),
        "ship it\n"
    );
    assert_eq!(assistant_text(&harness, &thread, seq), "Done.");
    runner.stop().await;
}

async fn approval_session(name: &str) -> (Harness, Runner, String) {
    let harness = Harness::new(name).await;
    let mut options = harness.session_options();
    options.runtime.approval_policy = Some("untrusted".into());
    options.runtime.sandbox = Some("danger-full-access".into());
    let runner = Runner::start(options).await.unwrap();
    let thread = harness.bound_thread().await;
    (harness, runner, thread)
}

#[tokio::test]
async fn approvals_from_a_control_and_from_chat() {
    let (harness, mut runner, thread) = approval_session("approvals").await;
    let mut events = runner.events();

    // Approved by Kandan's control.
    let first = harness
        .say(
            &thread,
            "tester",
            &mock(json!([{"exec": "touch first.txt && echo one"}])),
        )
        .await;
    let waiting = harness
        .state_where(first, |state| state["reason"] == "awaiting approval")
        .await;
    let request_id = waiting["approval_request_id"].as_str().unwrap().to_owned();
    assert_eq!(
        waiting["approval_kind"],
        "item/commandExecution/requestApproval"
    );
    assert!(
        waiting["approval_summary"]
            .as_str()
            .unwrap()
            .contains("touch first.txt")
    );
    assert_eq!(waiting["approval_allowed_actor_slug"], "tester");
    assert_eq!(waiting["approval_choices"][0]["decision"], "approve");
    // The desktop shows the folder working, then this as a notification.
    // Both name who asked and how their message starts, for the notification.
    let (started, requested, asked_in) = tokio::time::timeout(support::WAIT, async {
        let mut started = None;
        loop {
            match events.recv().await {
                Ok(RunnerEvent::TurnStarted { seq, origin }) => started = Some((seq, origin)),
                Ok(RunnerEvent::ApprovalRequested {
                    request_id,
                    asked_in,
                    ..
                }) => {
                    return (started, request_id, asked_in);
                }
                _ => {}
            }
        }
    })
    .await
    .unwrap();
    let (started, origin) = started.unwrap();
    assert_eq!(started, first);
    assert_eq!(origin.author.as_deref(), Some("tester"));
    assert!(origin.excerpt.starts_with("mock: "), "{origin:?}");
    assert!(origin.excerpt.chars().count() <= 81, "{origin:?}");
    assert_eq!(requested, request_id);
    assert_eq!(asked_in, Some(origin));
    // Someone who is not the listen user cannot answer.
    harness
        .control(
            json!({"type": "resolve_codex_approval_request", "threadId": "t",
            "sourceSeq": first, "requestId": request_id, "decision": "approve",
            "actorSlug": "mallory", "actorUserId": 99}),
        )
        .await;
    let refused = harness
        .event(|event| {
            event.event == "codex_response"
                && event.payload["controlType"] == "resolve_codex_approval_request"
        })
        .await;
    assert_eq!(refused.payload["error"], "sender_not_allowed");
    harness
        .control(
            json!({"type": "resolve_codex_approval_request", "threadId": "t",
            "sourceSeq": first, "requestId": request_id, "decision": "approve",
            "actorSlug": "tester", "actorUserId": 1}),
        )
        .await;
    harness.state_of(first, "processed").await;
    assert!(harness.project.dir.join("first.txt").exists());

    // Denied from chat.
    let second = harness
        .say(
            &thread,
            "tester",
            &mock(json!([{"exec": "touch second.txt"}])),
        )
        .await;
    let state = harness
        .state_where(second, |state| state["reason"] == "awaiting approval")
        .await;
    let request_id = state["approval_request_id"].as_str().unwrap();
    let command = harness
        .say(&thread, "tester", &format!("/kandan deny {request_id}"))
        .await;
    harness.state_of(command, "processed").await;
    harness.state_of(second, "processed").await;
    let declined = harness
        .rows_for(&thread, second)
        .into_iter()
        .find(|row| row.payload["structured"]["kind"] == "codex_command")
        .unwrap();
    assert_eq!(declined.payload["structured"]["status"], "declined");
    assert!(!harness.project.dir.join("second.txt").exists());
    runner.stop().await;
}

#[tokio::test]
async fn interrupting_the_running_turn_and_the_queue() {
    let (harness, mut runner, thread) = session("interrupt").await;
    let running = harness
        .say(
            &thread,
            "tester",
            &mock(json!([[{"text": "working"}, {"hang_ms": 30000}]])),
        )
        .await;
    let queued_a = harness.say(&thread, "tester", "next one").await;
    let queued_b = harness.say(&thread, "tester", "and another").await;
    harness.state_of(queued_b, "queued").await;
    // Codex is working: Kandan shows the runner typing in the thread.
    assert_eq!(
        harness.kandan.typing(WORKSPACE, CHANNEL, &thread),
        vec!["test-runner".to_owned()]
    );
    harness
        .control(
            json!({"type": "interrupt_queued_messages", "threadId": "t", "throughSeq": queued_b}),
        )
        .await;
    harness.state_of(queued_a, "failed").await;
    harness.state_of(queued_b, "failed").await;

    let interrupt = harness.say(&thread, "tester", "/kandan interrupt").await;
    harness.state_of(interrupt, "processed").await;
    let state = harness.state_of(running, "failed").await;
    assert_eq!(state["reason"], "interrupted");
    // The session is free again.
    let after = harness.say(&thread, "tester", "hello again").await;
    harness.state_of(after, "processed").await;
    assert_eq!(
        assistant_text(&harness, &thread, after),
        "You said: hello again"
    );
    runner.stop().await;
}

#[tokio::test]
async fn messages_from_other_people_are_ignored() {
    let (harness, mut runner, thread) = session("others").await;
    let seq = harness.say(&thread, "mallory", "rm -rf everything").await;
    let state = harness.state_of(seq, "ignored").await;
    assert_eq!(state["reason"], "not_listen_user");
    let mine = harness.say(&thread, "tester", "hi").await;
    harness.state_of(mine, "processed").await;
    assert!(harness.rows_for(&thread, seq).is_empty());
    runner.stop().await;
}

#[tokio::test]
async fn a_kandan_restart_mid_stream_loses_and_duplicates_nothing() {
    let (harness, mut runner, thread) = session("restart").await;
    let text = "y".repeat(80);
    let seq = harness
        .say(
            &thread,
            "tester",
            &mock(json!([{"text": text, "deltas": 80, "delay_ms": 25}])),
        )
        .await;
    // Restart while the answer is half streamed.
    harness
        .kandan
        .wait_for_thread(
            WORKSPACE,
            CHANNEL,
            |rows| {
                rows.iter().any(|row| {
                    row.payload["reply_to_seq"] == seq
                        && row.payload["structured"]["streaming"] == true
                })
            },
            support::WAIT,
        )
        .await
        .unwrap();
    harness.kandan.restart(Duration::from_millis(300)).await;
    harness.state_of(seq, "processed").await;
    let rows: Vec<_> = harness
        .rows_for(&thread, seq)
        .into_iter()
        .filter(|row| row.payload["structured"]["kind"] == "codex_assistant_message")
        .collect();
    assert_eq!(rows.len(), 1, "no duplicate rows: {rows:?}");
    assert_eq!(rows[0].payload["structured"]["text"], text.as_str());
    // And the session still works.
    let next = harness.say(&thread, "tester", "still there?").await;
    harness.state_of(next, "processed").await;
    runner.stop().await;
}

#[tokio::test]
async fn codex_killed_mid_turn_fails_the_message_and_the_next_one_works() {
    let (harness, mut runner, thread) = session("codex-killed").await;
    // Kill it once the turn is really running (its answer has begun to stream).
    let seq = harness.say_and_keep_codex_busy(&thread).await;
    let pid = runner.codex().pid.unwrap();
    linzumi_engine::process_tree::signal(
        &linzumi_engine::process_tree::tree(pid),
        linzumi_engine::process_tree::Signal::Kill,
    );
    let state = harness.state_of(seq, "failed").await;
    let reason = state["reason"].as_str().unwrap();
    assert!(reason.contains("Codex app-server exited"), "{reason}");
    assert!(reason.contains("the message was not completed"), "{reason}");
    let next = harness.say(&thread, "tester", "are you back?").await;
    harness.state_of(next, "processed").await;
    assert_eq!(
        assistant_text(&harness, &thread, next),
        "You said: are you back?"
    );
    runner.stop().await;
}

#[tokio::test]
async fn session_settings_apply_from_the_next_turn() {
    let (harness, mut runner, thread) = session("settings").await;
    let first = harness.say(&thread, "tester", "before").await;
    harness.state_of(first, "processed").await;
    let reply = harness
        .control_reply(json!({"type": "update_session_settings", "threadId": "t",
            "model": "gpt-6-sol", "reasoningEffort": "low"}))
        .await;
    assert_eq!(reply.payload["ok"], true, "{:?}", reply.payload);
    let refused = harness
        .control_reply(json!({"type": "update_session_settings", "threadId": "t",
            "sandbox": "yolo"}))
        .await;
    assert_eq!(refused.payload["ok"], false);
    // Heartbeats carry the chat's settings (seed `channelSession?.model`).
    harness
        .control(json!({"type": "update_runner_config",
            "allowedCwds": [harness.project.dir]}))
        .await;
    let heartbeat = harness
        .event(|event| event.event == "heartbeat" && event.payload["model"] == "gpt-6-sol")
        .await;
    assert_eq!(heartbeat.payload["reasoningEffort"], "low");
    let second = harness.say(&thread, "tester", "after").await;
    harness.state_of(second, "processed").await;
    let models: Vec<String> = harness
        .model
        .requests()
        .iter()
        .map(|request| request.body["model"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(models.first().map(String::as_str), Some("gpt-5.5"));
    assert_eq!(
        models.last().map(String::as_str),
        Some("gpt-6-sol"),
        "{models:?}"
    );
    runner.stop().await;
}

#[tokio::test]
async fn a_lost_codex_thread_is_replaced_and_the_chat_carries_on() {
    let (harness, mut runner, thread) = session("lost-thread").await;
    let first = harness.say(&thread, "tester", "remember this").await;
    harness.state_of(first, "processed").await;
    // Codex dies and its saved sessions are gone: the thread cannot be resumed.
    let pid = runner.codex().pid.unwrap();
    std::fs::remove_dir_all(harness.home.path().join("sessions")).unwrap();
    linzumi_engine::process_tree::signal(
        &linzumi_engine::process_tree::tree(pid),
        linzumi_engine::process_tree::Signal::Kill,
    );
    let next = harness.say(&thread, "tester", "still working?").await;
    harness.state_of(next, "processed").await;
    assert_eq!(
        assistant_text(&harness, &thread, next),
        "You said: still working?"
    );
    let log = harness.log_lines();
    let threads: Vec<&str> = log
        .iter()
        .filter(|line| line["event"] == "session.codex_thread")
        .filter_map(|line| line["codex_thread_id"].as_str())
        .collect();
    assert_eq!(
        threads.len(),
        1,
        "a new Codex thread was started: {threads:?}"
    );
    runner.stop().await;
}
