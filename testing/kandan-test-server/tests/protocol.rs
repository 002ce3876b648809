//! Phoenix Channels V2 behaviour of the socket, checked frame by frame with a raw client.

mod common;

use std::time::Duration;

use common::{Client, reply, runner_join_payload, socket_url, start_server, upgrade_status};
use kandan_test_server::ServerConfig;
use serde_json::json;

#[tokio::test]
async fn bad_tokens_are_refused_with_403() {
    let server = start_server().await;
    let base = format!("{}/socket/websocket?vsn=2.0.0", server.ws_url());
    assert_eq!(upgrade_status(&base).await, 403, "missing token");
    assert_eq!(
        upgrade_status(&format!("{base}&token=nope")).await,
        403,
        "unknown token"
    );

    let token = server.issue_token("tester", None);
    assert_eq!(upgrade_status(&socket_url(&server, &token)).await, 101);
    server.revoke_token(&token);
    assert_eq!(
        upgrade_status(&socket_url(&server, &token)).await,
        403,
        "revoked token"
    );
}

#[tokio::test]
async fn the_phoenix_js_auth_token_subprotocol_authenticates() {
    use base64::Engine as _;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let server = start_server().await;
    let handshake = |token: &str| {
        // phoenix.js's `authToken` option: btoa(token) without padding, after "phoenix".
        let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(token);
        let url = format!("{}/socket/websocket?vsn=2.0.0", server.ws_url());
        let mut request = url.into_client_request().expect("request");
        let protocols = format!("phoenix, base64url.bearer.phx.{encoded}");
        request
            .headers_mut()
            .insert("sec-websocket-protocol", protocols.parse().expect("header"));
        tokio_tungstenite::connect_async(request)
    };
    let token = server.issue_token("tester", None);
    let (_ws, response) = handshake(&token).await.expect("accepted");
    assert_eq!(response.headers()["sec-websocket-protocol"], "phoenix");
    assert!(handshake("not-a-token").await.is_err());
}

#[tokio::test]
async fn only_the_v2_serializer_is_served() {
    let server = start_server().await;
    let token = server.issue_token("tester", None);
    let base = format!("{}/socket/websocket?token={token}", server.ws_url());
    assert_eq!(upgrade_status(&base).await, 400, "missing vsn means 1.0.0");
    assert_eq!(upgrade_status(&format!("{base}&vsn=1.0.0")).await, 400);
}

#[tokio::test]
async fn heartbeats_are_answered() {
    let server = start_server().await;
    let mut client = Client::connect_new(&server).await;
    client
        .send(None, Some("1"), "phoenix", "heartbeat", json!({}))
        .await;
    assert_eq!(
        client.recv().await,
        reply(None, "1", "phoenix", "ok", json!({}))
    );
    assert!(server.events().is_empty(), "heartbeats are not recorded");
}

#[tokio::test]
async fn joins_are_accepted_or_refused_per_topic() {
    let server = start_server().await;
    let mut client = Client::connect_new(&server).await;

    let ok = client.join("conformance:room", "1", json!({"a": 1})).await;
    let expected = json!({"joined": "conformance:room", "payload": {"a": 1}});
    assert_eq!(
        ok,
        reply(Some("1"), "1", "conformance:room", "ok", expected)
    );

    let ok = client
        .join("local_runner:r1", "2", runner_join_payload())
        .await;
    assert_eq!(
        ok,
        reply(
            Some("2"),
            "2",
            "local_runner:r1",
            "ok",
            json!({"runner_id": "r1"})
        )
    );

    let bad = client
        .join("local_runner:r2", "3", json!({"clientName": "x"}))
        .await;
    let reason =
        "invalid runner join payload: version must be a string, capabilities must be an object";
    assert_eq!(
        bad,
        reply(
            Some("3"),
            "3",
            "local_runner:r2",
            "error",
            json!({"reason": reason})
        )
    );

    // Phoenix's "unmatched topic" reply carries no join_ref.
    let unmatched = client.join("nowhere:1", "4", json!({})).await;
    let expected = reply(
        None,
        "4",
        "nowhere:1",
        "error",
        json!({"reason": "unmatched topic"}),
    );
    assert_eq!(unmatched, expected);

    let accepted: Vec<(String, bool)> = server
        .joins()
        .into_iter()
        .map(|join| (join.topic, join.accepted))
        .collect();
    assert_eq!(
        accepted,
        vec![
            ("conformance:room".into(), true),
            ("local_runner:r1".into(), true),
            ("local_runner:r2".into(), false),
            ("nowhere:1".into(), false),
        ]
    );
}

#[tokio::test]
async fn pushes_get_the_handlers_reply_with_the_channels_join_ref() {
    let server = start_server().await;
    let mut client = Client::connect_new(&server).await;
    client.join("conformance:room", "1", json!({})).await;

    client
        .send(
            Some("1"),
            Some("2"),
            "conformance:room",
            "echo",
            json!({"n": 1}),
        )
        .await;
    let response = json!({"event": "echo", "payload": {"n": 1}});
    assert_eq!(
        client.recv().await,
        reply(Some("1"), "2", "conformance:room", "ok", response)
    );

    client
        .send(Some("1"), Some("3"), "conformance:room", "fail", json!({}))
        .await;
    let response = json!({"reason": "requested failure"});
    assert_eq!(
        client.recv().await,
        reply(Some("1"), "3", "conformance:room", "error", response)
    );

    // A null join_ref is accepted; the reply still carries the channel's join_ref.
    client
        .send(None, Some("4"), "conformance:room", "echo", json!({}))
        .await;
    let response = json!({"event": "echo", "payload": {}});
    assert_eq!(
        client.recv().await,
        reply(Some("1"), "4", "conformance:room", "ok", response)
    );
}

#[tokio::test]
async fn pushes_to_unjoined_topics_are_unmatched() {
    let server = start_server().await;
    let mut client = Client::connect_new(&server).await;
    client
        .send(Some("1"), Some("2"), "conformance:room", "echo", json!({}))
        .await;
    let expected = reply(
        None,
        "2",
        "conformance:room",
        "error",
        json!({"reason": "unmatched topic"}),
    );
    assert_eq!(client.recv().await, expected);
}

#[tokio::test]
async fn messages_with_a_stale_join_ref_are_ignored() {
    let server = start_server().await;
    let mut client = Client::connect_new(&server).await;
    client.join("conformance:room", "5", json!({})).await;
    client
        .send(Some("4"), Some("6"), "conformance:room", "echo", json!({}))
        .await;
    client
        .send(
            Some("4"),
            Some("7"),
            "conformance:room",
            "phx_leave",
            json!({}),
        )
        .await;
    client.expect_silence().await;

    // The channel is still joined under join_ref 5.
    client
        .send(Some("5"), Some("8"), "conformance:room", "echo", json!({}))
        .await;
    let response = json!({"event": "echo", "payload": {}});
    assert_eq!(
        client.recv().await,
        reply(Some("5"), "8", "conformance:room", "ok", response)
    );
}

#[tokio::test]
async fn a_duplicate_join_closes_the_old_channel() {
    let server = start_server().await;
    let mut client = Client::connect_new(&server).await;
    client.join("conformance:room", "1", json!({})).await;

    // As on Phoenix: the new join's reply first, then phx_close for the old join_ref.
    let new_reply = client
        .join("conformance:room", "2", json!({"again": true}))
        .await;
    assert_eq!(new_reply[0], json!("2"));
    assert_eq!(new_reply[4]["status"], json!("ok"));
    assert_eq!(
        client.recv().await,
        json!(["1", "1", "conformance:room", "phx_close", {}])
    );

    // The old join_ref is now stale, the new one works.
    client
        .send(Some("1"), Some("3"), "conformance:room", "echo", json!({}))
        .await;
    client.expect_silence().await;
    client
        .send(Some("2"), Some("4"), "conformance:room", "echo", json!({}))
        .await;
    assert_eq!(client.recv().await[0], json!("2"));
}

#[tokio::test]
async fn leave_replies_ok_then_closes_the_channel() {
    let server = start_server().await;
    let mut client = Client::connect_new(&server).await;
    client.join("conformance:room", "1", json!({})).await;
    client
        .send(
            Some("1"),
            Some("2"),
            "conformance:room",
            "phx_leave",
            json!({}),
        )
        .await;
    assert_eq!(
        client.recv().await,
        reply(Some("1"), "2", "conformance:room", "ok", json!({}))
    );
    assert_eq!(
        client.recv().await,
        json!(["1", "1", "conformance:room", "phx_close", {}])
    );

    client
        .send(Some("1"), Some("3"), "conformance:room", "echo", json!({}))
        .await;
    assert_eq!(
        client.recv().await[4]["response"],
        json!({"reason": "unmatched topic"})
    );

    // Leaving a topic that is not joined is acknowledged, as Phoenix does.
    client
        .send(Some("9"), Some("4"), "elsewhere:x", "phx_leave", json!({}))
        .await;
    assert_eq!(
        client.recv().await,
        reply(Some("9"), "4", "elsewhere:x", "ok", json!({}))
    );
}

#[tokio::test]
async fn a_crash_errors_the_channel_and_forgets_it() {
    let server = start_server().await;
    let mut client = Client::connect_new(&server).await;
    client.join("conformance:room", "1", json!({})).await;
    client
        .send(Some("1"), Some("2"), "conformance:room", "crash", json!({}))
        .await;
    assert_eq!(
        client.recv().await,
        json!(["1", "1", "conformance:room", "phx_error", {}])
    );

    client
        .send(Some("1"), Some("3"), "conformance:room", "echo", json!({}))
        .await;
    assert_eq!(
        client.recv().await[4]["response"],
        json!({"reason": "unmatched topic"})
    );
    let rejoined = client.join("conformance:room", "4", json!({})).await;
    assert_eq!(rejoined[4]["status"], json!("ok"));
}

#[tokio::test]
async fn broadcasts_reach_every_subscriber_without_refs() {
    let server = start_server().await;
    let mut alice = Client::connect_new(&server).await;
    let mut bob = Client::connect_new(&server).await;
    alice.join("conformance:room", "1", json!({})).await;
    bob.join("conformance:room", "7", json!({})).await;

    let request = json!({"event": "shout", "payload": {"text": "hi"}});
    alice
        .send(
            Some("1"),
            Some("2"),
            "conformance:room",
            "broadcast",
            request,
        )
        .await;
    assert_eq!(
        alice.recv().await,
        reply(Some("1"), "2", "conformance:room", "ok", json!({}))
    );
    let broadcast = json!([null, null, "conformance:room", "shout", {"text": "hi"}]);
    assert_eq!(alice.recv().await, broadcast);
    assert_eq!(bob.recv().await, broadcast);

    server
        .broadcast("conformance:room", "news", json!({"n": 2}))
        .await;
    let news = json!([null, null, "conformance:room", "news", {"n": 2}]);
    assert_eq!(alice.recv().await, news);
    assert_eq!(bob.recv().await, news);
}

#[tokio::test]
async fn push_control_reaches_the_runner_with_its_join_ref() {
    let server = start_server().await;
    let error = server
        .push_control("r1", json!({"type": "noop"}))
        .await
        .expect_err("nobody joined yet");
    assert!(error.to_string().contains("local_runner:r1"), "{error}");

    let mut client = Client::connect_new(&server).await;
    client
        .join("local_runner:r1", "3", runner_join_payload())
        .await;
    let control = json!({"type": "start_turn", "instanceId": "i1"});
    server
        .push_control("r1", control.clone())
        .await
        .expect("delivered");
    assert_eq!(
        client.recv().await,
        json!(["3", null, "local_runner:r1", "control", control])
    );
}

#[tokio::test]
async fn runner_events_are_recorded_and_acknowledged() {
    let server = start_server().await;
    let mut client = Client::connect_new(&server).await;
    client
        .join("local_runner:r1", "1", runner_join_payload())
        .await;
    client
        .send(
            Some("1"),
            Some("2"),
            "local_runner:r1",
            "heartbeat",
            json!({"status": "idle"}),
        )
        .await;
    assert_eq!(
        client.recv().await,
        reply(Some("1"), "2", "local_runner:r1", "ok", json!({}))
    );

    let event = server
        .wait_for_event(|e| e.event == "heartbeat", Duration::from_secs(1))
        .await
        .expect("recorded");
    assert_eq!(event.topic, "local_runner:r1");
    assert_eq!(event.payload, json!({"status": "idle"}));
    assert_eq!(event.join_ref.as_deref(), Some("1"));
    assert_eq!(event.msg_ref.as_deref(), Some("2"));
    let events: Vec<String> = server
        .events_for("local_runner:r1")
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(events, vec!["phx_join", "heartbeat"]);

    server.clear_events();
    assert!(server.events().is_empty());
}

#[tokio::test]
async fn wait_for_event_resolves_on_a_later_event() {
    let server = start_server().await;
    let mut client = Client::connect_new(&server).await;
    let waiting = server.wait_for_event(|e| e.event == "later", Duration::from_secs(5));
    let send = async {
        client.join("conformance:room", "1", json!({})).await;
        client
            .send(Some("1"), Some("2"), "conformance:room", "later", json!({}))
            .await;
    };
    let (event, ()) = tokio::join!(waiting, send);
    assert_eq!(event.expect("seen").topic, "conformance:room");

    let missing = server
        .wait_for_event(|e| e.event == "never", Duration::from_millis(50))
        .await;
    assert!(missing.is_err());
}

#[tokio::test]
async fn posted_thread_messages_get_a_seq_and_thread() {
    let server = start_server().await;
    let mut client = Client::connect_new(&server).await;
    client
        .join("local_runner:r1", "1", runner_join_payload())
        .await;
    let post = |thread_id: serde_json::Value, body: &str| json!({"workspace": "acme", "channel": "codex", "thread_id": thread_id, "body": body, "payload": {"kind": "reply"}});

    client
        .send(
            Some("1"),
            Some("2"),
            "local_runner:r1",
            "session:post_thread_message",
            post(json!(null), "first"),
        )
        .await;
    let first = client.recv().await;
    assert_eq!(first[4]["status"], json!("ok"));
    assert_eq!(first[4]["response"]["seq"], json!(1));
    let thread_id = first[4]["response"]["thread_id"].clone();
    assert!(thread_id.is_string());

    client
        .send(
            Some("1"),
            Some("3"),
            "local_runner:r1",
            "session:post_thread_message",
            post(thread_id.clone(), "second"),
        )
        .await;
    let second = client.recv().await;
    assert_eq!(
        second[4]["response"],
        json!({"seq": 2, "thread_id": thread_id})
    );

    client
        .send(
            Some("1"),
            Some("4"),
            "local_runner:r1",
            "session:post_thread_message",
            json!({"workspace": "acme"}),
        )
        .await;
    let bad = client.recv().await;
    assert_eq!(bad[4]["status"], json!("error"));

    let bodies: Vec<String> = server
        .chat_messages("acme", "codex")
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert_eq!(bodies, vec!["first", "second"]);
}

#[tokio::test]
async fn malformed_frames_are_ignored_and_the_socket_stays_up() {
    let server = start_server().await;
    let mut client = Client::connect_new(&server).await;
    for garbage in [
        "not json",
        "{}",
        r#"[null,"1","phoenix","heartbeat"]"#,
        r#"[null,"1","t","e","string payload"]"#,
    ] {
        client.send_text(garbage).await;
    }
    client.send_binary(vec![1, 2, 3]).await;
    client
        .send(None, Some("9"), "phoenix", "heartbeat", json!({}))
        .await;
    assert_eq!(
        client.recv().await,
        reply(None, "9", "phoenix", "ok", json!({}))
    );
    assert!(server.events().is_empty());
}

#[tokio::test]
async fn binary_pushes_are_decoded() {
    let server = start_server().await;
    let mut client = Client::connect_new(&server).await;
    client.join("conformance:room", "1", json!({})).await;
    let mut frame = vec![0, 1, 1, 16, 4];
    frame.extend_from_slice(b"12conformance:roomecho");
    frame.extend_from_slice(&[0xde, 0xad]);
    client.send_binary(frame).await;
    let response = json!({"event": "echo", "payload": {"binary_base64": "3q0="}});
    assert_eq!(
        client.recv().await,
        reply(Some("1"), "2", "conformance:room", "ok", response)
    );
}

#[tokio::test]
async fn raw_text_reaches_every_socket() {
    let server = start_server().await;
    let mut client = Client::connect_new(&server).await;
    server.send_raw_text("]] not a frame").await;
    assert_eq!(client.recv_text().await, "]] not a frame");
}

#[tokio::test]
async fn idle_sockets_are_closed() {
    let config = ServerConfig {
        heartbeat_idle_timeout: Duration::from_millis(600),
        ..ServerConfig::default()
    };
    let server = common::start_with(config).await;
    let mut client = Client::connect_new(&server).await;
    // Activity keeps it open past the timeout...
    for n in 0..4 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        client
            .send(
                None,
                Some(&n.to_string()),
                "phoenix",
                "heartbeat",
                json!({}),
            )
            .await;
        assert_eq!(client.recv().await[4]["status"], json!("ok"));
    }
    // ...silence does not. Cowboy closes idle sockets with 1000.
    assert_eq!(client.wait_closed().await, Some(1000));
    assert_eq!(server.connection_count(), 0);
}
