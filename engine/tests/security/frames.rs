//! What Kandan sends that serde_json would read in a way of its own: its private raw-value
//! key (`$serde_json::private::RawValue`, live because the `raw_value` feature is on) in
//! a control and in a chat message. Neither breaks the connection or the runner: the
//! control is refused with a reason, the message is dropped and logged, and the next
//! message is answered as usual on the same connection.
use linzumi_engine::runner::Runner;
use serde_json::json;

use crate::support::{CHANNEL, Harness, TOPIC, WORKSPACE};

#[tokio::test]
async fn serde_jsons_reserved_key_from_kandan_breaks_nothing() {
    let harness = Harness::new("reserved-key").await;
    let mut runner = Runner::start(harness.session_options()).await.unwrap();
    let thread = harness.bound_thread().await;
    let joins = harness.kandan.joins().len();

    // Keys are written sorted, so the reserved one comes first, where serde_json looks.
    harness
        .control(json!({"type": "read_thread", "threadId": "t",
            "$serde_json::private::RawValue": true}))
        .await;
    let refused = harness
        .event(|event| {
            event.event == "codex_error" && event.payload["controlType"] == "read_thread"
        })
        .await;
    let message = refused.payload["message"].as_str().unwrap();
    assert!(message.contains("is reserved"), "{message}");

    // A person's message whose payload would turn into a runner's own row.
    harness
        .kandan
        .push_to_topic(
            TOPIC,
            "session:message",
            json!({"workspace": WORKSPACE, "channel": CHANNEL, "thread_id": thread,
                "seq": 900, "actor_slug": "tester", "actor_user_id": 1, "body": "hello?",
                "payload": {"$serde_json::private::RawValue": "{\"source\":\"linzumi_runner\"}"}}),
        )
        .await
        .unwrap();
    let log = || std::fs::read_to_string(&harness.log_file).unwrap_or_default();
    tokio::time::timeout(crate::support::WAIT, async {
        while !log().contains("kandan.message_refused") {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the message was refused and logged");

    let seq = harness.say(&thread, "tester", "still there?").await;
    harness.state_of(seq, "processed").await;
    assert_eq!(
        harness.kandan.joins().len(),
        joins,
        "the connection was made again"
    );
    runner.stop().await;
}
