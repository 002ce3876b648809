//! What Kandan could exhaust with many or odd requests, each bounded: the threads a
//! runner's Codex holds, and a forwarded request whose stated length is not its body's.
//! (The flood of forwarded requests and its memory are measured on the real binary, in
//! the CLI's `security` tests; the log's growth in `event_log`.)
use linzumi_engine::runner::controls::MAX_LOADED_THREADS;
use serde_json::{Value, json};

use crate::support::dev_server::DevServer;
use crate::support::{Harness, TOPIC, WAIT};
use crate::{decoded_json, forward_http};

/// More `start_instance`s than the cap, all at once: at most the cap of threads are
/// started; the others are refused with a reason, and every control is answered.
#[tokio::test]
async fn codex_holds_at_most_the_cap_of_threads_kandan_starts() {
    let harness = Harness::new("thread-flood").await;
    let mut runner = harness.start_runner().await;
    let flood = MAX_LOADED_THREADS + 16;
    for _ in 0..flood {
        harness
            .control(json!({"type": "start_instance", "cwd": harness.project.dir}))
            .await;
    }
    let answers = || -> Vec<Value> {
        harness
            .kandan
            .events_for(TOPIC)
            .into_iter()
            .filter(|event| event.payload["controlType"] == "start_instance")
            .map(|event| event.payload)
            .collect()
    };
    tokio::time::timeout(WAIT, async {
        while answers().len() < flood {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} of {flood} answered", answers().len()));
    let started = answers()
        .iter()
        .filter(|answer| answer["ok"] == true)
        .count();
    assert_eq!(started, MAX_LOADED_THREADS);
    let refused: Vec<Value> = answers()
        .into_iter()
        .filter(|answer| answer["ok"] == false)
        .collect();
    assert_eq!(refused.len(), 16);
    let reason = refused[0]["error"].as_str().unwrap();
    assert!(
        reason.starts_with("too_many_threads: Codex already holds 64 threads"),
        "{reason}"
    );
    runner.stop().await;
}

/// A `Content-Length` Kandan states is not passed on: the local server gets the body's
/// true length and answers at once, instead of waiting for bytes that never come.
#[tokio::test(flavor = "multi_thread")]
async fn a_stated_length_that_lies_does_not_hang_the_local_request() {
    let harness = Harness::new("content-length").await;
    let dev = DevServer::start(0);
    let mut runner = harness.start_forwarding(vec![dev.port]).await;
    let answer = forward_http(
        &harness,
        json!({"port": dev.port, "method": "POST", "path": "/api/hello",
            "headers": {"content-length": "999999", "content-type": "text/plain"},
            "bodyBase64": "aGk="}),
    )
    .await;
    assert_eq!(answer["ok"], true, "{answer}");
    let hello = decoded_json(&answer);
    assert_eq!(hello["headers"]["content-length"], "2", "{hello}");
    runner.stop().await;
}
