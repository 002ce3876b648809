//! The chat's HTTP side: the admin chat API, its server-sent event stream, and the demo page.

mod common;

use std::time::{Duration, Instant};

use common::{RECV_TIMEOUT, Runner, http_client, start_server, start_with};
use kandan_test_server::{DemoConfig, KandanTestServer, ServerConfig};
use serde_json::{Value, json};

fn chat_url(server: &KandanTestServer, rest: &str) -> String {
    format!("{}/__admin/chat/acme/codex/{rest}", server.http_url())
}

/// Reads server-sent events off a streaming response.
struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

// Test support panics on the unexpected, like a test body (clippy's in-test allowance does not
// reach helpers).
#[allow(clippy::expect_used)]
impl EventStream {
    async fn open(server: &KandanTestServer) -> EventStream {
        let response = http_client()
            .get(chat_url(server, "stream"))
            .send()
            .await
            .expect("stream");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "an SSE response"
        );
        EventStream {
            response,
            buffer: String::new(),
        }
    }

    /// The next event's `(event name, JSON data)`; `None` once the stream has ended.
    async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        name = value.trim().to_owned();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push_str(value.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some((name, serde_json::from_str(&data).expect("JSON data")));
            }
            let chunk = tokio::time::timeout(RECV_TIMEOUT, self.response.chunk())
                .await
                .expect("an event within the timeout")
                .expect("stream readable")?;
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }

    /// The next `messages` snapshot.
    async fn snapshot(&mut self) -> Value {
        let (name, data) = self.next().await.expect("stream still open");
        assert_eq!(name, "messages");
        data
    }
}

#[tokio::test]
async fn the_admin_api_lists_and_posts_chat_messages() {
    let server = start_server().await;
    let http = http_client();
    let mut runner = Runner::join(&server, "tester", "r1").await;
    runner.bind(None, None).await;

    let posted = http
        .post(chat_url(&server, "messages"))
        .json(&json!({"user": "sean", "body": "a new thread"}))
        .send()
        .await
        .expect("post");
    assert_eq!(posted.status(), 201);
    let root: Value = posted.json().await.expect("json");
    assert_eq!(
        (&root["seq"], &root["actor_slug"], &root["posted_by_runner"]),
        (&json!(1), &json!("sean"), &Value::Null)
    );
    let pushed = runner.recv_session_message().await;
    assert_eq!(
        pushed["body"],
        json!("a new thread"),
        "bound runners get it"
    );

    let reply = http
        .post(chat_url(&server, "messages"))
        .json(&json!({"thread_id": root["thread_id"], "user": "sean", "body": "a reply"}))
        .send()
        .await
        .expect("post");
    assert_eq!(reply.status(), 201);
    let unknown = http
        .post(chat_url(&server, "messages"))
        .json(&json!({"thread_id": "nope", "user": "sean", "body": "x"}))
        .send()
        .await
        .expect("post");
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        unknown.json::<Value>().await.expect("json"),
        json!({"error": "thread_not_found"})
    );
    let empty = http
        .post(chat_url(&server, "messages"))
        .json(&json!({"user": "sean", "body": "  "}))
        .send()
        .await
        .expect("post");
    assert_eq!(empty.status(), 400);

    let listed: Value = http
        .get(chat_url(&server, "messages"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let bodies: Vec<&Value> = listed
        .as_array()
        .expect("array")
        .iter()
        .map(|m| &m["body"])
        .collect();
    assert_eq!(bodies, vec!["a new thread", "a reply"]);
    assert_eq!(listed[1]["reply_to_seq"], json!(1));
    assert_eq!(listed[1]["updated_count"], json!(0));
}

#[tokio::test]
async fn the_stream_sends_a_snapshot_then_one_per_change() {
    let server = start_server().await;
    let mut events = EventStream::open(&server).await;
    let first = events.snapshot().await;
    assert_eq!(
        (&first["messages"], &first["typing"]),
        (&json!([]), &json!([]))
    );

    let root = server
        .post_user_message("acme", "codex", None, "sean", "hello stream")
        .await
        .expect("posted");
    let second = events.snapshot().await;
    assert_eq!(second["messages"][0]["body"], json!("hello stream"));
    assert_eq!(second["messages"][0]["seq"], json!(root.seq));

    let mut runner = Runner::join(&server, "tester", "r1").await;
    runner.bind(None, None).await;
    // Binding changes nothing in the channel: no event for it. Typing does.
    let typing = json!({"workspace": "acme", "channel": "codex", "thread_id": root.thread_id,
        "typing": true});
    runner.ok("session:typing", typing).await;
    let third = events.snapshot().await;
    assert_eq!(
        third["typing"],
        json!([{"thread_id": root.thread_id, "runner_id": "r1"}])
    );
    assert!(
        third["version"].as_u64() > second["version"].as_u64(),
        "{third}"
    );
}

#[tokio::test]
async fn a_restart_ends_the_stream_promptly() {
    let server = start_server().await;
    let mut events = EventStream::open(&server).await;
    events.snapshot().await;
    let started = Instant::now();
    server.restart(Duration::ZERO).await;
    // An endless response would hold the restart until the listener's drain timeout (2 s).
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "restart took {:?}",
        started.elapsed()
    );
    assert!(events.next().await.is_none(), "the stream ended");
    // A new stream (as the browser's EventSource opens) sees the kept chat.
    server
        .post_user_message("acme", "codex", None, "sean", "after the restart")
        .await
        .expect("posted");
    let mut events = EventStream::open(&server).await;
    assert_eq!(
        events.snapshot().await["messages"][0]["body"],
        json!("after the restart")
    );
}

#[tokio::test]
async fn the_demo_page_is_served_with_its_documented_selectors() {
    let server = start_with(ServerConfig {
        demo: Some(DemoConfig {
            workspace: "acme".into(),
            channel: "codex".into(),
            user_slug: "sean".into(),
        }),
        ..ServerConfig::default()
    })
    .await;
    let response = http_client()
        .get(format!("{}/demo", server.http_url()))
        .send()
        .await
        .expect("demo");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .is_ok_and(|kind| kind.starts_with("text/html")),
        "{:?}",
        response.headers()
    );
    let page = response.text().await.expect("text");
    // The selectors the README documents for browser tests.
    for needle in [
        r#"id="reply-input""#,
        r#"id="reply-send""#,
        r#"id="reply-form""#,
        r#"id="reply-target""#,
        r#"id="threads""#,
        r#"id="waiting""#,
        r#"id="connection""#,
        "Waiting for the runner…",
        r#"class: "row""#,
        r#""data-seq""#,
        r#""data-kind""#,
        r#""data-thread-id""#,
        r#"class: "state""#,
        r#""data-status""#,
        r#"class: "approve""#,
        r#"class: "deny""#,
        r#"class: "preview-link""#,
        r#"class: "typing""#,
        "new EventSource(",
        "/kandan ",
        "-port-forward ",
        "prefers-color-scheme: dark",
        r#""workspace":"acme""#,
        r#""user":"sean""#,
    ] {
        assert!(page.contains(needle), "the page lacks {needle}");
    }
    // Self-contained, and user content never goes through innerHTML.
    for banned in ["<link", "src=\"http", "@import", "innerHTML", "setInterval"] {
        assert!(!page.contains(banned), "the page contains {banned}");
    }

    let plain = start_server().await;
    let missing = http_client()
        .get(format!("{}/demo", plain.http_url()))
        .send()
        .await
        .expect("demo");
    assert_eq!(missing.status(), 404, "no demo configured");
}
