//! Chat sessions (protocol §5) over the wire: binding, `session:message` delivery and catch-up,
//! the rows a runner writes, message states and typing, and what survives reconnects and
//! restarts.

mod common;

use std::time::Duration;

use common::{RECV_TIMEOUT, Runner, start_server};
use kandan_test_server::ChatMessage;
use serde_json::{Value, json};

/// A runner row's payload, as §5.3 describes it.
fn row(kind: &str, text: &str) -> Value {
    json!({"source": "linzumi_runner", "runner_id": "r1", "instance_id": "codex-1",
        "codex_thread_id": "ct-1", "reply_to_seq": null,
        "structured": {"kind": kind, "text": text, "streaming": true}})
}

/// The `session:message` payload §5.2 specifies for a stored message.
fn session_message(message: &ChatMessage) -> Value {
    json!({"workspace": "acme", "channel": "codex", "thread_id": message.thread_id,
        "seq": message.seq, "reply_to_seq": message.reply_to_seq,
        "actor_slug": message.actor_slug, "actor_user_id": message.actor_user_id,
        "body": message.body, "payload": message.payload, "inserted_at": message.inserted_at})
}

#[tokio::test]
async fn bind_without_a_thread_then_bind_to_the_posted_root() {
    let server = start_server().await;
    let history = server
        .post_user_message("acme", "codex", None, "sean", "before the runner")
        .await
        .expect("posted");
    let mut runner = Runner::join(&server, "tester", "r1").await;

    let bound = runner.bind(None, None).await;
    assert_eq!(
        bound,
        json!({"thread_id": null, "root_seq": null, "cursor_seq": history.seq, "listen_user_id": 1})
    );
    runner.client.expect_silence().await; // history is not pushed

    let (root_seq, thread_id) = runner
        .post(None, "Codex is ready", row("local_runner_availability", ""))
        .await;
    assert_eq!(root_seq, 2);
    assert_ne!(thread_id, history.thread_id, "a new thread");
    let bound = runner.bind(Some(&thread_id), Some(root_seq)).await;
    assert_eq!(
        bound,
        json!({"thread_id": thread_id, "root_seq": 2, "cursor_seq": 2, "listen_user_id": 1})
    );
    runner.client.expect_silence().await; // its own root is not pushed back

    let everyone = runner
        .ok(
            "session:bind",
            json!({"workspace": "acme", "channel": "codex", "thread_id": null,
                "after_seq": null, "listen_user": "all"}),
        )
        .await;
    assert_eq!(everyone["listen_user_id"], Value::Null);

    assert_eq!(
        server.threads("acme", "codex"),
        vec![history.thread_id, thread_id.clone()]
    );
    let root = &server.thread("acme", "codex", &thread_id)[0];
    assert_eq!(root.posted_by_runner.as_deref(), Some("r1"));
    assert_eq!(
        (root.actor_slug.as_str(), root.actor_user_id),
        ("tester", 1)
    );
    assert_eq!(root.reply_to_seq, None);
}

#[tokio::test]
async fn messages_after_the_cursor_are_pushed_and_missed_ones_caught_up_on_rebind() {
    let server = start_server().await;
    let mut runner = Runner::join(&server, "tester", "r1").await;
    runner.bind(None, None).await;
    let (root_seq, thread_id) = runner
        .post(None, "ready", row("local_runner_availability", ""))
        .await;
    runner.bind(Some(&thread_id), Some(root_seq)).await;

    let reply = server
        .post_user_message(
            "acme",
            "codex",
            Some(&thread_id),
            "sean",
            "add a health check",
        )
        .await
        .expect("posted");
    assert_eq!(reply.reply_to_seq, Some(root_seq));
    let pushed = runner.recv_session_message().await;
    assert_eq!(pushed, session_message(&reply));
    assert!(
        pushed["inserted_at"]
            .as_str()
            .is_some_and(|at| at.ends_with('Z') && at.len() == 24),
        "RFC 3339 with milliseconds: {pushed}"
    );

    // The connection drops; two messages are posted while the runner is away.
    server.drop_connections().await;
    assert_eq!(runner.client.wait_closed().await, None);
    let mut missed = Vec::new();
    for body in ["while away 1", "while away 2"] {
        missed.push(
            server
                .post_user_message("acme", "codex", Some(&thread_id), "sean", body)
                .await
                .expect("posted"),
        );
    }

    let mut runner = Runner::join(&server, "tester", "r1").await;
    let bound = runner.bind(Some(&thread_id), Some(reply.seq)).await;
    assert_eq!(bound["cursor_seq"], json!(missed[1].seq));
    // The catch-up follows the reply, in seq order, and nothing the runner saw is replayed.
    assert_eq!(
        runner.recv_session_message().await,
        session_message(&missed[0])
    );
    assert_eq!(
        runner.recv_session_message().await,
        session_message(&missed[1])
    );
    runner.client.expect_silence().await;

    let live = server
        .post_user_message("acme", "codex", Some(&thread_id), "sean", "live again")
        .await
        .expect("posted");
    assert_eq!(runner.recv_session_message().await, session_message(&live));
}

#[tokio::test]
async fn a_runners_own_posts_reach_other_runners_but_not_itself() {
    let server = start_server().await;
    let mut r1 = Runner::join(&server, "tester", "r1").await;
    let mut r2 = Runner::join(&server, "sean", "r2").await;
    r1.bind(None, None).await;
    r2.bind(None, None).await;

    let (seq, thread_id) = r1
        .post(None, "from r1", row("codex_assistant_message", "hi"))
        .await;
    let pushed = r2.recv_session_message().await;
    assert_eq!(
        (&pushed["seq"], &pushed["actor_slug"], &pushed["thread_id"]),
        (&json!(seq), &json!("tester"), &json!(thread_id))
    );
    // The payload tells runner rows from people's messages under the same user.
    assert_eq!(pushed["payload"]["source"], json!("linzumi_runner"));
    r1.client.expect_silence().await;

    // A person's message reaches both.
    server
        .post_user_message("acme", "codex", Some(&thread_id), "sean", "hello both")
        .await
        .expect("posted");
    let from_person = r1.recv_session_message().await;
    assert_eq!(
        (&from_person["body"], &from_person["payload"]),
        (&json!("hello both"), &Value::Null)
    );
    assert_eq!(r2.recv_session_message().await["body"], json!("hello both"));

    // Another channel's messages reach neither.
    server
        .post_user_message("acme", "general", None, "sean", "elsewhere")
        .await
        .expect("posted");
    r1.client.expect_silence().await;
    r2.client.expect_silence().await;
}

#[tokio::test]
async fn a_retried_post_is_recognized_by_its_client_id() {
    let server = start_server().await;
    let mut r1 = Runner::join(&server, "tester", "r1").await;
    let mut r2 = Runner::join(&server, "tester", "r2").await;
    r1.bind(None, None).await;
    r2.bind(None, None).await;
    let post = |body: &str| {
        json!({"workspace": "acme", "channel": "codex", "thread_id": null, "body": body,
            "payload": row("local_runner_availability", ""), "client_id": "codex-1:root"})
    };
    let first = r1.ok("session:post_thread_message", post("ready")).await;
    assert_eq!(r2.recv_session_message().await["seq"], first["seq"]);

    // The reply was lost with the connection; the runner posts again with the same client id.
    let retried = r1.ok("session:post_thread_message", post("ready!")).await;
    assert_eq!(retried, first, "the same seq and thread");
    r2.client.expect_silence().await;
    let messages = server.chat_messages("acme", "codex");
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(
        (messages[0].body.as_str(), messages[0].updated_count),
        ("ready!", 1)
    );

    // Another runner's client ids are its own.
    let other = r2.ok("session:post_thread_message", post("ready")).await;
    assert_ne!(other["seq"], first["seq"]);
}

#[tokio::test]
async fn runners_update_their_own_rows_only() {
    let server = start_server().await;
    let mut r1 = Runner::join(&server, "tester", "r1").await;
    let mut r2 = Runner::join(&server, "tester", "r2").await;
    r1.bind(None, None).await;
    let (root_seq, thread_id) = r1
        .post(None, "ready", row("local_runner_availability", ""))
        .await;
    let (seq, _) = r1
        .post(
            Some(&thread_id),
            "I'll",
            row("codex_assistant_message", "I'll"),
        )
        .await;
    let human = server
        .post_user_message("acme", "codex", Some(&thread_id), "sean", "go")
        .await
        .expect("posted");
    assert_eq!(r1.recv_session_message().await["seq"], json!(human.seq));
    let update = |seq: i64, text: &str| {
        json!({"workspace": "acme", "channel": "codex", "thread_id": thread_id, "seq": seq,
            "body": text, "payload": row("codex_assistant_message", text)})
    };

    let streamed = server.wait_for_thread(
        "acme",
        "codex",
        |messages| messages.iter().any(|m| m.body == "I'll add it"),
        RECV_TIMEOUT,
    );
    let updating = async {
        assert_eq!(
            r1.ok("session:update_thread_message", update(seq, "I'll add"))
                .await,
            json!({"seq": seq})
        );
        r1.ok("session:update_thread_message", update(seq, "I'll add it"))
            .await;
    };
    let (messages, ()) = tokio::join!(streamed, updating);
    let messages = messages.expect("the streamed row");
    let updated = &messages[usize::try_from(seq - 1).expect("index")];
    assert_eq!(updated.seq, seq);
    assert_eq!(updated.payload["structured"]["text"], json!("I'll add it"));
    assert_eq!(updated.updated_count, 2);
    assert_eq!(server.message_updates("acme", "codex", seq), 2);
    assert_eq!(server.message_updates("acme", "codex", root_seq), 0);

    let refused = r1
        .refused("session:update_thread_message", update(99, "x"))
        .await;
    assert_eq!(refused, json!("message_not_found"));
    let refused = r2
        .refused("session:update_thread_message", update(seq, "x"))
        .await;
    assert_eq!(refused, json!("not_your_message"));
    let refused = r1
        .refused("session:update_thread_message", update(human.seq, "x"))
        .await;
    assert_eq!(refused, json!("not_your_message"), "a person's message");
    assert_eq!(
        server.thread("acme", "codex", &thread_id)[1].body,
        "I'll add it"
    );
}

#[tokio::test]
async fn typing_and_message_states_are_recorded() {
    let server = start_server().await;
    let mut runner = Runner::join(&server, "tester", "r1").await;
    runner.bind(None, None).await;
    let (_, thread_id) = runner
        .post(None, "ready", row("local_runner_availability", ""))
        .await;
    let human = server
        .post_user_message(
            "acme",
            "codex",
            Some(&thread_id),
            "sean",
            "run rm -rf target",
        )
        .await
        .expect("posted");
    runner.recv_session_message().await;

    let typing = |on: bool| json!({"workspace": "acme", "channel": "codex", "thread_id": thread_id, "typing": on});
    assert_eq!(runner.ok("session:typing", typing(true)).await, json!({}));
    assert_eq!(server.typing("acme", "codex", &thread_id), vec!["r1"]);
    runner.ok("session:typing", typing(false)).await;
    assert!(server.typing("acme", "codex", &thread_id).is_empty());

    let awaiting = json!({"workspace": "acme", "channel": "codex", "thread_id": thread_id,
        "seq": human.seq, "status": "processing", "reason": "awaiting approval",
        "approval_request_id": "req-7", "approval_kind": "codex_command",
        "approval_summary": "Run rm -rf target?", "approval_allowed_actor_slug": "sean"});
    assert_eq!(
        runner.ok("message_state", awaiting.clone()).await,
        json!({})
    );
    let stored = &server.thread("acme", "codex", &thread_id)[1];
    assert_eq!(stored.state.as_ref(), Some(&awaiting));
    let mut processed = awaiting.clone();
    processed["status"] = json!("processed");
    processed["reason"] = Value::Null;
    runner.ok("message_state", processed.clone()).await;
    let stored = &server.thread("acme", "codex", &thread_id)[1];
    assert_eq!(
        stored.state.as_ref(),
        Some(&processed),
        "the latest state wins"
    );

    let mut unknown = awaiting.clone();
    unknown["seq"] = json!(42);
    assert_eq!(
        runner.refused("message_state", unknown).await,
        json!("message_not_found")
    );
    let mut bad = awaiting;
    bad["status"] = json!("done");
    let reason = runner.refused("message_state", bad).await;
    assert!(
        reason
            .as_str()
            .is_some_and(|r| r.starts_with("invalid message_state payload: status")),
        "{reason}"
    );
    let reason = runner
        .refused("session:typing", json!({"workspace": "acme"}))
        .await;
    assert_eq!(
        reason,
        json!("invalid session:typing payload: channel must be a string")
    );
}

#[tokio::test]
async fn unknown_threads_and_foreign_scopes_are_refused() {
    let server = start_server().await;
    let elsewhere = server
        .post_user_message(
            "acme",
            "general",
            None,
            "sean",
            "a thread in another channel",
        )
        .await
        .expect("posted");
    let mut runner = Runner::join(&server, "tester", "r1").await;
    let bind = |thread_id: &str| {
        json!({"workspace": "acme", "channel": "codex", "thread_id": thread_id,
            "after_seq": null, "listen_user": "tester"})
    };
    assert_eq!(
        runner.refused("session:bind", bind("no-such-thread")).await,
        json!("thread_not_found")
    );
    assert_eq!(
        runner
            .refused("session:bind", bind(&elsewhere.thread_id))
            .await,
        json!("thread_not_found")
    );
    let post = json!({"workspace": "acme", "channel": "codex", "thread_id": "no-such-thread",
        "body": "x", "payload": {}});
    assert_eq!(
        runner.refused("session:post_thread_message", post).await,
        json!("thread_not_found")
    );
    let missing = server
        .post_user_message("acme", "codex", Some("no-such-thread"), "sean", "x")
        .await;
    assert!(missing.is_err());

    // A token limited to acme/codex may not bind elsewhere.
    let scoped = server.issue_token("tester", Some(("acme", "codex")));
    let mut scoped_runner = Runner::join_with_token(&server, &scoped, "r2").await;
    let general = json!({"workspace": "acme", "channel": "general", "thread_id": null,
        "after_seq": null, "listen_user": "tester"});
    assert_eq!(
        scoped_runner.refused("session:bind", general).await,
        json!("forbidden")
    );
    scoped_runner.bind(None, None).await;
}

#[tokio::test]
async fn the_chat_and_bindings_survive_a_restart() {
    let server = start_server().await;
    let token = server.issue_token("tester", None);
    let mut runner = Runner::join_with_token(&server, &token, "r1").await;
    runner.bind(None, None).await;
    let (root_seq, thread_id) = runner
        .post(None, "ready", row("local_runner_availability", ""))
        .await;
    runner.bind(Some(&thread_id), Some(root_seq)).await;
    let (row_seq, _) = runner
        .post(
            Some(&thread_id),
            "partial",
            row("codex_assistant_message", "partial"),
        )
        .await;

    server.restart(Duration::ZERO).await;
    assert_eq!(runner.client.wait_closed().await, None);
    let stored: Vec<i64> = server
        .thread("acme", "codex", &thread_id)
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(stored, vec![root_seq, row_seq]);

    // The runner re-joins. Its binding is the server's, so a message reaches it even before
    // it re-binds...
    let mut runner = Runner::join_with_token(&server, &token, "r1").await;
    let early = server
        .post_user_message("acme", "codex", Some(&thread_id), "sean", "are you back?")
        .await
        .expect("posted");
    assert_eq!(runner.recv_session_message().await["seq"], json!(early.seq));
    // ...and re-binding with the last seq it saw replays nothing.
    let bound = runner.bind(Some(&thread_id), Some(early.seq)).await;
    assert_eq!(
        bound,
        json!({"thread_id": thread_id, "root_seq": root_seq, "cursor_seq": early.seq, "listen_user_id": 1})
    );
    runner.client.expect_silence().await;

    // Its rows are still its own.
    let update = json!({"workspace": "acme", "channel": "codex", "thread_id": thread_id,
        "seq": row_seq, "body": "complete", "payload": row("codex_assistant_message", "complete")});
    runner.ok("session:update_thread_message", update).await;
    assert_eq!(server.message_updates("acme", "codex", row_seq), 1);
}
