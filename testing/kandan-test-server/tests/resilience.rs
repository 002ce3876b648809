//! Connection loss, restarts and injected faults: the situations client reconnect logic is
//! written for.

mod common;

use std::time::{Duration, Instant};

use common::{Client, reply, socket_url, start_server};
use kandan_test_server::Fault;
use serde_json::json;

#[tokio::test]
async fn drop_connections_closes_sockets_without_a_close_frame() {
    let server = start_server().await;
    let mut alice = Client::connect_new(&server).await;
    let mut bob = Client::connect_new(&server).await;
    alice.join("conformance:room", "1", json!({})).await;
    assert_eq!(server.connection_count(), 2);

    server.drop_connections().await;
    assert_eq!(server.connection_count(), 0);
    assert_eq!(alice.wait_closed().await, None, "no close frame, just EOF");
    assert_eq!(bob.wait_closed().await, None);

    // The server still accepts, and the old channel is gone with the old socket.
    let mut again = Client::connect_new(&server).await;
    again
        .send(Some("1"), Some("2"), "conformance:room", "echo", json!({}))
        .await;
    assert_eq!(
        again.recv().await[4]["response"],
        json!({"reason": "unmatched topic"})
    );
}

#[tokio::test]
async fn restart_reopens_the_same_port_with_channel_state_lost() {
    let server = start_server().await;
    let addr = server.addr();
    let token = server.issue_token("tester", None);
    let mut client = Client::connect(&server, &token).await;
    client
        .join("local_runner:r1", "1", common::runner_join_payload())
        .await;

    let restart = server.restart(Duration::from_millis(300));
    let during = async {
        // Give the restart a moment to close the listener, then check it is really gone.
        tokio::time::sleep(Duration::from_millis(100)).await;
        tokio::net::TcpStream::connect(addr).await
    };
    let ((), refused) = tokio::join!(restart, during);
    assert!(refused.is_err(), "nothing listens during the downtime");
    assert_eq!(client.wait_closed().await, None);

    assert_eq!(server.addr(), addr);
    let mut client = Client::connect(&server, &token).await; // the token survives
    assert!(
        server.push_control("r1", json!({})).await.is_err(),
        "the runner must rejoin"
    );
    client
        .join("local_runner:r1", "2", common::runner_join_payload())
        .await;
    server
        .push_control("r1", json!({"type": "noop"}))
        .await
        .expect("rejoined");
    assert_eq!(client.recv().await[0], json!("2"));
}

#[tokio::test]
async fn ignore_heartbeats_fault() {
    let server = start_server().await;
    let mut client = Client::connect_new(&server).await;
    server.set_fault(Fault::IgnoreHeartbeats);
    client
        .send(None, Some("1"), "phoenix", "heartbeat", json!({}))
        .await;
    client.expect_silence().await;
    server.clear_faults();
    client
        .send(None, Some("2"), "phoenix", "heartbeat", json!({}))
        .await;
    assert_eq!(
        client.recv().await,
        reply(None, "2", "phoenix", "ok", json!({}))
    );
}

#[tokio::test]
async fn hold_replies_fault_swallows_matching_pushes_only() {
    let server = start_server().await;
    let mut client = Client::connect_new(&server).await;
    client.join("conformance:room", "1", json!({})).await;
    server.set_fault(Fault::HoldReplies {
        topic: "conformance:room".into(),
        event: "echo".into(),
    });
    client
        .send(Some("1"), Some("2"), "conformance:room", "echo", json!({}))
        .await;
    client
        .send(Some("1"), Some("3"), "conformance:room", "fail", json!({}))
        .await;
    let next = client.recv().await;
    assert_eq!(next[1], json!("3"), "the held echo never gets a reply");
    client.expect_silence().await;
    assert_eq!(
        server.events_for("conformance:room").len(),
        3,
        "held pushes are still recorded"
    );
}

#[tokio::test]
async fn reject_joins_fault() {
    let server = start_server().await;
    let mut client = Client::connect_new(&server).await;
    server.set_fault(Fault::RejectJoins {
        topic: "local_runner:r1".into(),
        reason: "maintenance".into(),
    });
    let refused = client
        .join("local_runner:r1", "1", common::runner_join_payload())
        .await;
    let expected = reply(
        Some("1"),
        "1",
        "local_runner:r1",
        "error",
        json!({"reason": "maintenance"}),
    );
    assert_eq!(refused, expected);
    let other = client
        .join("local_runner:r2", "2", common::runner_join_payload())
        .await;
    assert_eq!(other[4]["status"], json!("ok"));
    assert!(!server.joins()[0].accepted);
}

#[tokio::test]
async fn delay_replies_fault() {
    let server = start_server().await;
    let mut client = Client::connect_new(&server).await;
    client.join("conformance:room", "1", json!({})).await;
    server.set_fault(Fault::DelayReplies(Duration::from_millis(300)));
    let started = Instant::now();
    client
        .send(
            Some("1"),
            Some("2"),
            "conformance:room",
            "echo",
            json!({"n": 2}),
        )
        .await;
    client
        .send(
            Some("1"),
            Some("3"),
            "conformance:room",
            "echo",
            json!({"n": 3}),
        )
        .await;
    assert_eq!(client.recv().await[1], json!("2"));
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(client.recv().await[1], json!("3"), "order is kept");
}

#[tokio::test]
async fn admin_api_controls_the_server() {
    let server = start_server().await;
    let http = common::http_client();
    let admin = format!("{}/__admin", server.http_url());

    let issued: serde_json::Value = http
        .post(format!("{admin}/tokens"))
        .json(&json!({"user": "sean", "workspace": "acme", "channel": "codex"}))
        .send()
        .await
        .expect("tokens")
        .json()
        .await
        .expect("json");
    let token = issued["token"].as_str().expect("token").to_owned();
    let mut client = Client::connect_url(&socket_url(&server, &token)).await;
    client
        .join("local_runner:r9", "4", common::runner_join_payload())
        .await;

    let pushed = http
        .post(format!("{admin}/topics/local_runner:r9/push"))
        .json(&json!({"event": "control", "payload": {"type": "noop"}}))
        .send()
        .await
        .expect("push");
    assert_eq!(pushed.status(), 200);
    assert_eq!(
        client.recv().await,
        json!(["4", null, "local_runner:r9", "control", {"type": "noop"}])
    );

    let nobody = http
        .post(format!("{admin}/topics/local_runner:zz/push"))
        .json(&json!({"event": "control"}))
        .send()
        .await
        .expect("push");
    assert_eq!(nobody.status(), 404);

    http.post(format!("{admin}/topics/local_runner:r9/broadcast"))
        .json(&json!({"event": "hello", "payload": {}}))
        .send()
        .await
        .expect("broadcast");
    assert_eq!(
        client.recv().await,
        json!([null, null, "local_runner:r9", "hello", {}])
    );

    let events: serde_json::Value = http
        .get(format!("{admin}/events?topic=local_runner:r9"))
        .send()
        .await
        .expect("events")
        .json()
        .await
        .expect("json");
    assert_eq!(events[0]["event"], json!("phx_join"));
    assert_eq!(events[0]["ref"], json!("4"));

    let fault = http
        .post(format!("{admin}/faults"))
        .json(&json!({"type": "ignore_heartbeats"}))
        .send()
        .await
        .expect("fault");
    assert_eq!(fault.status(), 204);
    client
        .send(None, Some("5"), "phoenix", "heartbeat", json!({}))
        .await;
    client.expect_silence().await;
    http.delete(format!("{admin}/faults"))
        .send()
        .await
        .expect("clear");
    client
        .send(None, Some("6"), "phoenix", "heartbeat", json!({}))
        .await;
    assert_eq!(client.recv().await[1], json!("6"));

    let dropped: serde_json::Value = http
        .post(format!("{admin}/drop-connections"))
        .send()
        .await
        .expect("drop")
        .json()
        .await
        .expect("json");
    assert_eq!(dropped, json!({"dropped": 1}));
    assert_eq!(client.wait_closed().await, None);

    let restart = http
        .post(format!("{admin}/restart?downtime_ms=50"))
        .send()
        .await
        .expect("restart");
    assert_eq!(restart.status(), 202);
}
