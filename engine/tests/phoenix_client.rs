//! The Phoenix client against the Kandan test server over real loopback sockets.
// A failed unwrap is a failed test; helpers outside #[test] fns need the allowance too.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kandan_test_server::{Fault, KandanTestServer, ServerConfig};
use linzumi_engine::kandan_url::KandanUrl;
use linzumi_engine::phoenix::{
    Backoff, ChannelMessage, ClientConfig, ConnectError, JoinError, Lifecycle, PhoenixClient,
    PushError,
};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

async fn server() -> KandanTestServer {
    KandanTestServer::start(ServerConfig::default())
        .await
        .unwrap()
}

fn user_token(server: &KandanTestServer) -> String {
    let user = ServerConfig::default().users[0].slug.clone();
    server.issue_token(&user, None)
}

/// Fast retry schedules so outage tests take milliseconds, not seconds.
fn config(server: &KandanTestServer, token: &str) -> ClientConfig {
    let mut config = ClientConfig::new(&KandanUrl::parse(&server.ws_url()).unwrap(), token);
    config.reconnect = Backoff::new(vec![Duration::from_millis(20)], Duration::from_millis(50));
    config.rejoin = Backoff::new(vec![Duration::from_millis(50)], Duration::from_millis(100));
    config
}

async fn connect(server: &KandanTestServer) -> PhoenixClient {
    PhoenixClient::connect(config(server, &user_token(server)))
        .await
        .unwrap()
}

fn runner_payload() -> Value {
    json!({"clientName": "test", "version": "0", "capabilities": {}})
}

async fn next_lifecycle(
    events: &mut broadcast::Receiver<Lifecycle>,
    wanted: impl Fn(&Lifecycle) -> bool,
) -> Lifecycle {
    timeout(WAIT, async {
        loop {
            let event = events.recv().await.unwrap();
            if wanted(&event) {
                return event;
            }
        }
    })
    .await
    .expect("lifecycle event did not arrive")
}

async fn next_message(
    channel: &mut tokio::sync::mpsc::UnboundedReceiver<ChannelMessage>,
) -> ChannelMessage {
    timeout(WAIT, channel.recv()).await.unwrap().unwrap()
}

#[tokio::test]
async fn join_and_push_get_their_replies() {
    let server = server().await;
    let client = connect(&server).await;
    let joined = client
        .join("local_runner:r1", runner_payload)
        .await
        .unwrap();
    assert_eq!(joined.response, json!({"runner_id": "r1"}));

    let reply = client
        .push("local_runner:r1", "heartbeat", json!({"cwd": "/w"}))
        .await
        .unwrap();
    assert_eq!(reply, json!({}));

    let recorded = server.events_for("local_runner:r1");
    let heartbeat = recorded.iter().find(|e| e.event == "heartbeat").unwrap();
    assert_eq!(heartbeat.payload, json!({"cwd": "/w"}));
    let join = &server.joins()[0];
    assert_eq!(
        heartbeat.join_ref, join.join_ref,
        "pushes carry the join_ref"
    );
}

#[tokio::test]
async fn refs_increase_across_pushes() {
    let server = server().await;
    let client = connect(&server).await;
    client.join("conformance:refs", || json!({})).await.unwrap();
    for n in 0..5 {
        client
            .push("conformance:refs", "echo", json!({ "n": n }))
            .await
            .unwrap();
    }
    let refs: Vec<u64> = server
        .events_for("conformance:refs")
        .iter()
        .filter(|e| e.event == "echo")
        .filter_map(|e| e.msg_ref.as_ref()?.parse().ok())
        .collect();
    assert_eq!(refs.len(), 5);
    assert!(refs.windows(2).all(|pair| pair[0] < pair[1]), "{refs:?}");
}

#[tokio::test]
async fn a_rejected_join_reports_the_reason() {
    let server = server().await;
    let client = connect(&server).await;
    let error = client
        .join("local_runner:r2", || json!({"clientName": "x"}))
        .await
        .unwrap_err();
    let JoinError::Rejected { response, .. } = &error else {
        panic!("expected a rejection, got {error:?}");
    };
    assert!(
        response["reason"]
            .as_str()
            .unwrap()
            .contains("invalid runner join payload"),
        "{response}"
    );

    server.set_fault(Fault::RejectJoins {
        topic: "local_runner:r3".into(),
        reason: "runner disabled".into(),
    });
    let error = client
        .join("local_runner:r3", runner_payload)
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "phoenix join failed: runner disabled");
    // A failed join is not registered: joining again is allowed.
    server.clear_faults();
    client
        .join("local_runner:r3", runner_payload)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_bad_token_is_refused_with_a_clear_error() {
    let server = server().await;
    let error = PhoenixClient::connect(config(&server, "not-a-token"))
        .await
        .err()
        .unwrap();
    let ConnectError::Refused { status, .. } = &error else {
        panic!("expected a refusal, got {error:?}");
    };
    assert_eq!(*status, 403);
    assert!(!error.to_string().contains("not-a-token"), "{error}");
}

#[tokio::test]
async fn a_dead_server_fails_the_first_connect() {
    let server = server().await;
    let config = config(&server, &user_token(&server));
    server.shutdown().await;
    let error = PhoenixClient::connect(config).await.err().unwrap();
    assert!(
        matches!(error, ConnectError::Unreachable { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn push_errors_and_timeouts_are_distinct() {
    let server = server().await;
    let client = connect(&server).await;
    client.join("conformance:e", || json!({})).await.unwrap();

    let error = client
        .push("conformance:e", "fail", json!({}))
        .await
        .unwrap_err();
    assert!(matches!(error, PushError::Rejected { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "Kandan answered fail on conformance:e with an error: requested failure"
    );

    server.set_fault(Fault::HoldReplies {
        topic: "conformance:e".into(),
        event: "echo".into(),
    });
    let error = client
        .push_with_timeout(
            "conformance:e",
            "echo",
            json!({}),
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, PushError::NoReply { .. }), "{error:?}");

    let error = client
        .push("conformance:unjoined", "echo", json!({}))
        .await
        .unwrap_err();
    assert!(matches!(error, PushError::NotJoined { .. }), "{error:?}");

    let error = client
        .push("conformance:e", "echo", json!([1, 2]))
        .await
        .unwrap_err();
    assert!(
        matches!(error, PushError::PayloadNotObject { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn server_pushes_and_broadcasts_reach_the_topic() {
    let server = server().await;
    let client = connect(&server).await;
    let mut runner = client
        .join("local_runner:r1", runner_payload)
        .await
        .unwrap();
    let mut other = client.join("conformance:x", || json!({})).await.unwrap();

    server
        .push_control("r1", json!({"type": "stop_instance", "instanceId": "i"}))
        .await
        .unwrap();
    let message = next_message(&mut runner.messages).await;
    assert_eq!(message.event, "control");
    assert_eq!(message.payload["type"], "stop_instance");

    server
        .broadcast("conformance:x", "news", json!({"n": 1}))
        .await;
    let message = next_message(&mut other.messages).await;
    assert_eq!(
        message,
        ChannelMessage {
            event: "news".into(),
            payload: json!({"n": 1})
        }
    );
    assert!(
        runner.messages.try_recv().is_err(),
        "topics do not leak into each other"
    );
}

#[tokio::test]
async fn after_a_drop_it_reconnects_and_rejoins_with_a_fresh_payload() {
    let server = server().await;
    let client = connect(&server).await;
    let mut lifecycle = client.lifecycle();
    let counter = Arc::new(AtomicU64::new(0));
    let payload_counter = counter.clone();
    client
        .join("local_runner:r1", move || {
            let n = payload_counter.fetch_add(1, Ordering::SeqCst);
            json!({"clientName": "test", "version": "0", "capabilities": {"n": n}})
        })
        .await
        .unwrap();

    server.drop_connections().await;
    next_lifecycle(&mut lifecycle, |e| {
        matches!(e, Lifecycle::Disconnected { .. })
    })
    .await;
    let reconnected = next_lifecycle(&mut lifecycle, |e| {
        matches!(e, Lifecycle::Reconnected { .. })
    })
    .await;
    assert_eq!(reconnected, Lifecycle::Reconnected { generation: 2 });

    let joins: Vec<Value> = server
        .joins()
        .into_iter()
        .filter(|join| join.topic == "local_runner:r1")
        .map(|join| join.payload["capabilities"]["n"].clone())
        .collect();
    assert_eq!(
        joins,
        vec![json!(0), json!(1)],
        "rejoin recomputed the payload"
    );
    client
        .push("local_runner:r1", "heartbeat", json!({}))
        .await
        .unwrap();
}

#[tokio::test]
async fn pushes_made_during_an_outage_are_delivered_after_it() {
    let server = server().await;
    let client = connect(&server).await;
    let mut lifecycle = client.lifecycle();
    client
        .join("local_runner:r1", runner_payload)
        .await
        .unwrap();

    let restarting = server.restart(Duration::from_millis(400));
    let pushing = async {
        next_lifecycle(&mut lifecycle, |e| {
            matches!(e, Lifecycle::Disconnected { .. })
        })
        .await;
        client
            .push("local_runner:r1", "codex_notification", json!({"seq": 1}))
            .await
    };
    let ((), pushed) = tokio::join!(restarting, pushing);
    assert_eq!(pushed.unwrap(), json!({}));
    let delivered = server
        .events_for("local_runner:r1")
        .into_iter()
        .filter(|e| e.event == "codex_notification")
        .count();
    assert_eq!(delivered, 1);
}

#[tokio::test]
async fn a_push_in_flight_fails_when_the_socket_drops() {
    let server = server().await;
    let client = connect(&server).await;
    client.join("conformance:d", || json!({})).await.unwrap();
    server.set_fault(Fault::HoldReplies {
        topic: "conformance:d".into(),
        event: "echo".into(),
    });
    let push = client.push("conformance:d", "echo", json!({}));
    let drop = async {
        server
            .wait_for_event(|e| e.topic == "conformance:d" && e.event == "echo", WAIT)
            .await
            .unwrap();
        server.drop_connections().await;
    };
    let (result, ()) = tokio::join!(push, drop);
    let error = result.unwrap_err();
    assert!(matches!(error, PushError::Disconnected { .. }), "{error:?}");
    assert!(error.is_transient());
}

#[tokio::test]
async fn a_missed_heartbeat_reply_closes_and_reconnects() {
    let server = server().await;
    let mut config = config(&server, &user_token(&server));
    config.heartbeat_interval = Duration::from_millis(150);
    let client = PhoenixClient::connect(config).await.unwrap();
    let mut lifecycle = client.lifecycle();
    client
        .join("local_runner:r1", runner_payload)
        .await
        .unwrap();

    server.set_fault(Fault::IgnoreHeartbeats);
    let Lifecycle::Disconnected { reason } = next_lifecycle(&mut lifecycle, |e| {
        matches!(e, Lifecycle::Disconnected { .. })
    })
    .await
    else {
        unreachable!()
    };
    assert!(reason.contains("heartbeat timeout"), "{reason}");
    server.clear_faults();
    next_lifecycle(&mut lifecycle, |e| {
        matches!(e, Lifecycle::Reconnected { .. })
    })
    .await;
    client
        .push("local_runner:r1", "heartbeat", json!({}))
        .await
        .unwrap();
}

#[tokio::test]
async fn malformed_and_oversized_frames_are_dropped_and_the_connection_stays() {
    let server = server().await;
    let mut config = config(&server, &user_token(&server));
    config.max_frame_bytes = 4096;
    let client = PhoenixClient::connect(config).await.unwrap();
    let mut lifecycle = client.lifecycle();
    let mut channel = client.join("conformance:m", || json!({})).await.unwrap();

    for garbage in [
        "not json".to_owned(),
        "[1,2,3]".to_owned(),
        r#"{"topic":"conformance:m"}"#.to_owned(),
        r#"[null,null,"conformance:m",7,{}]"#.to_owned(),
        format!(
            r#"[null,null,"conformance:m","big",{{"x":"{}"}}]"#,
            "a".repeat(8192)
        ),
    ] {
        server.send_raw_text(&garbage).await;
    }
    server.broadcast("conformance:m", "after", json!({})).await;
    let message = next_message(&mut channel.messages).await;
    assert_eq!(
        message.event, "after",
        "the oversized frame never reached the topic"
    );
    client
        .push("conformance:m", "echo", json!({}))
        .await
        .unwrap();
    assert!(
        !std::iter::from_fn(|| lifecycle.try_recv().ok())
            .any(|e| matches!(e, Lifecycle::Disconnected { .. })),
        "garbage must not cost the connection"
    );
    assert_eq!(server.connection_count(), 1);

    let error = client
        .push("conformance:m", "echo", json!({"x": "a".repeat(8192)}))
        .await
        .unwrap_err();
    assert!(matches!(error, PushError::TooLarge { .. }), "{error:?}");
}

#[tokio::test]
async fn a_channel_error_triggers_a_rejoin() {
    let server = server().await;
    let client = connect(&server).await;
    let mut lifecycle = client.lifecycle();
    client.join("conformance:c", || json!({})).await.unwrap();

    // The server answers `crash` with phx_error instead of a reply.
    let error = client
        .push("conformance:c", "crash", json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(error, PushError::ChannelErrored { .. }),
        "{error:?}"
    );
    next_lifecycle(
        &mut lifecycle,
        |e| matches!(e, Lifecycle::ChannelRejoined { topic } if topic == "conformance:c"),
    )
    .await;
    client
        .push("conformance:c", "echo", json!({}))
        .await
        .unwrap();
    assert_eq!(
        server
            .joins()
            .iter()
            .filter(|join| join.topic == "conformance:c")
            .count(),
        2
    );
}

#[tokio::test]
async fn close_fails_waiting_pushes_and_stops_reconnecting() {
    let server = server().await;
    let client = connect(&server).await;
    let mut lifecycle = client.lifecycle();
    client.join("conformance:z", || json!({})).await.unwrap();
    server.set_fault(Fault::HoldReplies {
        topic: "conformance:z".into(),
        event: "echo".into(),
    });
    let push = client.push("conformance:z", "echo", json!({}));
    let close = async {
        server
            .wait_for_event(|e| e.event == "echo", WAIT)
            .await
            .unwrap();
        client.close().await;
    };
    let (result, ()) = tokio::join!(push, close);
    assert_eq!(result.unwrap_err(), PushError::Closed);
    next_lifecycle(&mut lifecycle, |e| *e == Lifecycle::Closed).await;
    assert_eq!(
        client.push("conformance:z", "echo", json!({})).await,
        Err(PushError::Closed)
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.connection_count(), 0, "no reconnect after close");
}

/// A token revoked while connected: the next reconnect is refused (403), and the client
/// says so and ends, instead of retrying a token Kandan will never accept again; a real
/// outage (the drop before) is still retried.
#[tokio::test]
async fn a_reconnect_refused_for_the_token_ends_the_client() {
    let server = server().await;
    let token = user_token(&server);
    let client = PhoenixClient::connect(config(&server, &token))
        .await
        .unwrap();
    let mut lifecycle = client.lifecycle();
    client.join("conformance:t", || json!({})).await.unwrap();
    server.drop_connections().await;
    next_lifecycle(&mut lifecycle, |e| {
        matches!(e, Lifecycle::Reconnected { .. })
    })
    .await;

    server.revoke_token(&token);
    server.drop_connections().await;
    let refused = next_lifecycle(&mut lifecycle, |e| {
        matches!(e, Lifecycle::Unauthorized { .. })
    })
    .await;
    let Lifecycle::Unauthorized { reason } = refused else {
        unreachable!()
    };
    assert!(reason.contains("HTTP 403"), "{reason}");
    assert!(!reason.contains(&token), "{reason}");
    next_lifecycle(&mut lifecycle, |e| *e == Lifecycle::Closed).await;
    // The socket task is gone: nothing is left to reconnect.
    assert_eq!(
        client.push("conformance:t", "echo", json!({})).await,
        Err(PushError::Closed)
    );
}
