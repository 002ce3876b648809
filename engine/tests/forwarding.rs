//! Port forwarding end to end: dev servers (the Node server of `testing/dev-server`) that
//! the REAL codex starts are found, asked about in the chat, and served through the Kandan
//! test server's preview over the forward tunnel; the control path refuses what it must.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt, StreamExt};
use kandan_test_server::ChatMessage;
use linzumi_engine::runner::{RevokeReason, Runner, RunnerEvent};
use serde_json::{Value, json};
use support::dev_server::{self, DevServer, free_port, preview_client};
use support::{CHANNEL, Harness, RUNNER_ID, WAIT, WORKSPACE, browser_tests, mock};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const PROMPT: &str = "local_runner_port_forward_request";
const READY: &str = "local_runner_port_forward_ready";

/// A chat session whose Codex may run servers (no sandbox, no approvals), with its
/// forward tunnel up.
async fn dev_session(name: &str) -> (Harness, Runner, String) {
    dev_session_forwarding(name, Vec::new()).await
}

/// [`dev_session`] whose owner forwards `forward_ports` (`--forward-port`).
async fn dev_session_forwarding(name: &str, forward_ports: Vec<u16>) -> (Harness, Runner, String) {
    let harness = Harness::new(name).await;
    let mut options = harness.session_options();
    options.runtime.sandbox = Some("danger-full-access".into());
    options.runtime.approval_policy = Some("never".into());
    options.forward_ports = forward_ports;
    let runner = Runner::start(options).await.unwrap();
    harness
        .kandan
        .wait_for_tunnel(RUNNER_ID, WAIT)
        .await
        .unwrap();
    let thread = harness.bound_thread().await;
    (harness, runner, thread)
}

/// Has Codex start the dev server on each port (it keeps running after the turn).
async fn codex_starts_dev_servers(harness: &Harness, thread: &str, ports: &[u16]) {
    let mut steps: Vec<Value> = ports
        .iter()
        .map(|port| json!({"exec": dev_server::command(*port), "yield_ms": 1500}))
        .collect();
    steps.push(json!({"text": "The dev server is up."}));
    let seq = harness
        .say(thread, "tester", &mock(Value::Array(steps)))
        .await;
    harness.state_of(seq, "processed").await;
}

fn rows_of_kind(harness: &Harness, thread: &str, kind: &str, port: u16) -> Vec<ChatMessage> {
    harness
        .kandan
        .thread(WORKSPACE, CHANNEL, thread)
        .into_iter()
        .filter(|m| {
            m.payload["structured"]["kind"] == kind && m.payload["structured"]["port"] == port
        })
        .collect()
}

/// Waits until there are `count` rows of `kind` about `port`; returns them.
async fn wait_rows(
    harness: &Harness,
    thread: &str,
    kind: &str,
    port: u16,
    count: usize,
) -> Vec<ChatMessage> {
    harness
        .kandan
        .wait_for_thread(
            WORKSPACE,
            CHANNEL,
            |messages| {
                messages
                    .iter()
                    .filter(|m| {
                        m.thread_id == thread
                            && m.payload["structured"]["kind"] == kind
                            && m.payload["structured"]["port"] == port
                    })
                    .count()
                    >= count
            },
            WAIT,
        )
        .await
        .unwrap_or_else(|error| panic!("no {count} {kind} rows for port {port}: {error}"));
    rows_of_kind(harness, thread, kind, port)
}

fn request_id(row: &ChatMessage) -> String {
    row.payload["structured"]["request_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Opens a WebSocket to `path` on the port's preview origin, the way a browser would.
async fn preview_websocket(
    harness: &Harness,
    port: u16,
    path: &str,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let url = harness
        .kandan
        .preview_url(RUNNER_ID, port)
        .replace("http://", "ws://");
    let mut request = format!("{url}{}", path.trim_start_matches('/'))
        .into_client_request()
        .unwrap();
    let origin = harness.kandan.preview_url(RUNNER_ID, port);
    request
        .headers_mut()
        .insert("origin", origin.trim_end_matches('/').parse().unwrap());
    let stream = tokio::net::TcpStream::connect(harness.kandan.addr())
        .await
        .unwrap();
    let (socket, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    socket
}

async fn next_message(
    socket: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
) -> Message {
    tokio::time::timeout(WAIT, socket.next())
        .await
        .expect("a message within the wait")
        .expect("the socket is open")
        .expect("no socket error")
}

async fn expect_not_forwarded(harness: &Harness, port: u16) {
    let refused = harness.preview_get(port, "/api/hello").await;
    assert_eq!(refused.status(), 502);
    let body = refused.text().await.unwrap();
    assert!(body.contains("port_not_allowed"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dev_server_codex_starts_is_asked_about_approved_and_previewed() {
    let (harness, mut runner, thread) = dev_session("approve").await;
    let mut events = runner.events();
    let port = free_port();
    codex_starts_dev_servers(&harness, &thread, &[port]).await;

    // The owner is asked in the thread, as the seed words it.
    let prompt = wait_rows(&harness, &thread, PROMPT, port, 1)
        .await
        .remove(0);
    let structured = &prompt.payload["structured"];
    assert!(
        structured["command"].as_str().unwrap().contains("node"),
        "{structured}"
    );
    assert_eq!(structured["cwd"], harness.project.dir.display().to_string());
    let request_id = request_id(&prompt);
    assert!(
        prompt
            .body
            .contains(&format!("/kandan approve-port-forward {request_id}")),
        "{}",
        prompt.body
    );
    let waiting = harness
        .state_where(prompt.seq, |state| state["reason"] == "awaiting approval")
        .await;
    assert_eq!(waiting["approval_kind"], "local_runner_port_forward");
    assert_eq!(waiting["approval_request_id"], request_id.as_str());
    assert_eq!(waiting["approval_choices"][0]["label"], "Open preview");
    let requested = harness
        .event(|event| event.event == "forward_port_requested" && event.payload["port"] == port)
        .await;
    assert_eq!(requested.payload["pid"], structured["pid"]);
    // The desktop app is told too, to ask through a notification.
    let announced = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(RunnerEvent::PortForwardRequested {
                request_id,
                port: p,
                ..
            }) = events.recv().await
                && p == port
            {
                return request_id;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(announced, request_id);

    // Not forwarded before the answer.
    expect_not_forwarded(&harness, port).await;

    // Only the listen user may answer.
    let refused = harness
        .control_reply(
            json!({"type": "resolve_port_forward_request", "requestId": request_id,
            "decision": "approve", "actorSlug": "mallory", "actorUserId": 99}),
        )
        .await;
    assert_eq!(refused.payload["error"], "sender_not_allowed");
    expect_not_forwarded(&harness, port).await;
    let approved = harness
        .control_reply(
            json!({"type": "resolve_port_forward_request", "requestId": request_id,
            "decision": "approve", "actorSlug": "tester", "actorUserId": 1}),
        )
        .await;
    assert_eq!(approved.payload["ok"], true, "{}", approved.payload);
    assert_eq!(
        approved.payload["port"], port,
        "the seed's approve reply names the port"
    );
    let resolved = harness
        .event(|event| event.event == "forward_port_resolved")
        .await;
    assert_eq!(resolved.payload["requestId"], request_id.as_str());
    assert!(
        resolved.payload["capabilities"]["allowedPorts"]
            .as_array()
            .unwrap()
            .contains(&json!(port)),
        "{}",
        resolved.payload
    );
    harness.state_of(prompt.seq, "processed").await;

    // The ready row links the preview, and the link leads to the port's own origin.
    let ready = wait_rows(&harness, &thread, READY, port, 1).await.remove(0);
    let link = format!("/local-runners/{RUNNER_ID}/ports/{port}/preview");
    assert!(ready.body.contains(&link), "{}", ready.body);
    let plain =
        linzumi_engine::http::client(linzumi_engine::http::untrusting_tls_config().unwrap())
            .unwrap();
    let redirect = plain
        .get(format!("{}{link}", harness.kandan.http_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 302);
    assert_eq!(
        redirect.headers()["location"],
        harness.kandan.preview_url(RUNNER_ID, port).as_str()
    );

    // Page, asset and API through the preview; the dev server sees a loopback Host.
    let page = harness.preview_get(port, "/").await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Linzumi preview test"));
    let asset = harness.preview_get(port, "/app.js").await;
    assert_eq!(asset.headers()["content-type"], "text/javascript");
    let api = harness.preview_get(port, "/api/hello?x=1&y=two").await;
    assert_eq!(api.headers()["x-dev-server"], "yes");
    let api: Value = api.json().await.unwrap();
    assert_eq!(api["hello"], "world");
    assert_eq!(api["query"], "?x=1&y=two");
    assert_eq!(api["host"], format!("127.0.0.1:{port}"));
    // The path form of the preview reaches the same server.
    let by_path: Value = preview_client(&harness.kandan, RUNNER_ID, port)
        .get(format!(
            "{}api/hello",
            harness.kandan.preview_path_url(RUNNER_ID, port)
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_path["hello"], "world");
    // An upload larger than one flow-control window comes back whole.
    let upload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let echoed = preview_client(&harness.kandan, RUNNER_ID, port)
        .post(harness.preview_url(port, "echo"))
        .body(upload.clone())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(echoed.as_ref() == upload.as_slice(), "the echo differs");

    // A WebSocket through the preview: text, a message bigger than one frame, close codes.
    let mut socket = preview_websocket(&harness, port, "/ws").await;
    socket.send(Message::text("hi")).await.unwrap();
    assert_eq!(next_message(&mut socket).await, Message::text("echo: hi"));
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
    socket.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(next_message(&mut socket).await, Message::binary(big));
    socket.send(Message::text("close 4001 bye")).await.unwrap();
    match next_message(&mut socket).await {
        Message::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 4001);
            assert_eq!(frame.reason, "bye");
        }
        other => panic!("expected the server's close, got {other:?}"),
    }
    // And a close from the browser reaches the dev server with its code and reason.
    let mut socket = preview_websocket(&harness, port, "/ws").await;
    socket
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::from(4002),
            reason: "leaving".into(),
        })))
        .await
        .unwrap();
    match next_message(&mut socket).await {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 4002),
        other => panic!("expected the close reply, got {other:?}"),
    }
    // The first socket's close may be recorded after this one's: look for ours.
    let ours = json!({"code": 4002, "reason": "leaving"});
    tokio::time::timeout(WAIT, async {
        loop {
            let closes: Value = harness
                .preview_get(port, "/api/closes")
                .await
                .json()
                .await
                .unwrap();
            if closes.as_array().unwrap().contains(&ours) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();

    let answered = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(RunnerEvent::PortForwardResolved { approved, by, .. }) = events.recv().await {
                return (approved, by);
            }
        }
    })
    .await
    .unwrap();
    assert!(answered.0);
    assert!(answered.1.contains("tester"), "{}", answered.1);
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_answers_and_a_denied_listener_is_not_asked_again() {
    let (harness, mut runner, thread) = dev_session("chat-answers").await;
    let (open, private) = (free_port(), free_port());
    codex_starts_dev_servers(&harness, &thread, &[open, private]).await;
    let open_prompt = wait_rows(&harness, &thread, PROMPT, open, 1)
        .await
        .remove(0);
    let private_prompt = wait_rows(&harness, &thread, PROMPT, private, 1)
        .await
        .remove(0);

    let approve = harness
        .say(
            &thread,
            "tester",
            &format!("/kandan approve-port-forward {}", request_id(&open_prompt)),
        )
        .await;
    harness.state_of(approve, "processed").await;
    harness.state_of(open_prompt.seq, "processed").await;
    let api: Value = harness
        .preview_get(open, "/api/hello")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(api["hello"], "world");

    // Someone else's chat command changes nothing.
    let meddling = harness
        .say(
            &thread,
            "mallory",
            &format!(
                "/kandan approve-port-forward {}",
                request_id(&private_prompt)
            ),
        )
        .await;
    harness.state_of(meddling, "ignored").await;
    expect_not_forwarded(&harness, private).await;

    let deny = harness
        .say(
            &thread,
            "tester",
            &format!("/kandan deny-port-forward {}", request_id(&private_prompt)),
        )
        .await;
    harness.state_of(deny, "processed").await;
    let denied = harness.state_of(private_prompt.seq, "failed").await;
    assert_eq!(denied["reason"], "port_forward_denied");
    expect_not_forwarded(&harness, private).await;

    // A second answer finds nothing to answer.
    let late = harness
        .say(
            &thread,
            "tester",
            &format!(
                "/kandan approve-port-forward {}",
                request_id(&private_prompt)
            ),
        )
        .await;
    let late = harness.state_of(late, "failed").await;
    assert_eq!(late["reason"], "port_forward_request_not_found");
    expect_not_forwarded(&harness, private).await;

    // The watcher scans every 200 ms: ten scans later, still one prompt for the denied
    // listener and one for the approved one.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rows_of_kind(&harness, &thread, PROMPT, private).len(), 1);
    assert_eq!(rows_of_kind(&harness, &thread, PROMPT, open).len(), 1);
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_answer_wins_between_the_desktop_and_the_chat() {
    let (harness, mut runner, thread) = dev_session("first-answer").await;
    let mut events = runner.events();
    let port = free_port();
    codex_starts_dev_servers(&harness, &thread, &[port]).await;
    let request_id = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(RunnerEvent::PortForwardRequested { request_id, .. }) = events.recv().await {
                return request_id;
            }
        }
    })
    .await
    .unwrap();
    let prompt = wait_rows(&harness, &thread, PROMPT, port, 1)
        .await
        .remove(0);

    // The owner answers the desktop notification first...
    runner
        .resolve_port_forward(&request_id, true)
        .await
        .unwrap();
    harness.state_of(prompt.seq, "processed").await;
    wait_rows(&harness, &thread, READY, port, 1).await;
    // ...so the chat prompt and Kandan's control find it answered.
    let chat = harness
        .say(
            &thread,
            "tester",
            &format!("/kandan deny-port-forward {request_id}"),
        )
        .await;
    assert_eq!(
        harness.state_of(chat, "failed").await["reason"],
        "port_forward_request_not_found"
    );
    let control = harness
        .control_reply(
            json!({"type": "resolve_port_forward_request", "requestId": request_id,
            "decision": "deny", "actorSlug": "tester", "actorUserId": 1}),
        )
        .await;
    assert_eq!(control.payload["error"], "port_forward_request_not_found");
    assert_eq!(
        runner.resolve_port_forward(&request_id, false).await,
        Err("port_forward_request_not_found".into())
    );
    let api: Value = harness
        .preview_get(port, "/api/hello")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(api["hello"], "world");
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listener_restarted_by_another_process_is_revoked_and_asked_again() {
    let (harness, mut runner, thread) = dev_session("revoke").await;
    let mut events = runner.events();
    let port = free_port();
    codex_starts_dev_servers(&harness, &thread, &[port]).await;
    let first = wait_rows(&harness, &thread, PROMPT, port, 1)
        .await
        .remove(0);
    let approve = harness
        .say(
            &thread,
            "tester",
            &format!("/kandan approve-port-forward {}", request_id(&first)),
        )
        .await;
    harness.state_of(approve, "processed").await;
    assert_eq!(harness.preview_get(port, "/api/hello").await.status(), 200);

    // The approved server goes away and another process takes its port.
    let first_pid = first.payload["structured"]["pid"].as_i64().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first_pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    codex_starts_dev_servers(&harness, &thread, &[port]).await;

    let revoked = harness
        .event(|event| event.event == "forward_port_revoked")
        .await;
    assert_eq!(revoked.payload["port"], port);
    assert_eq!(revoked.payload["pid"], first_pid);
    // The desktop takes the port's preview link down.
    tokio::time::timeout(support::WAIT, async {
        while !matches!(
            events.recv().await,
            Ok(RunnerEvent::PortForwardRevoked { port: revoked, reason: RevokeReason::ListenerChanged })
                if revoked == port
        ) {}
    })
    .await
    .unwrap();
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
    let prompts = wait_rows(&harness, &thread, PROMPT, port, 2).await;
    let second = &prompts[1];
    assert_ne!(second.payload["structured"]["pid"], first_pid);
    expect_not_forwarded(&harness, port).await;

    let approve = harness
        .say(
            &thread,
            "tester",
            &format!("/kandan approve-port-forward {}", request_id(second)),
        )
        .await;
    harness.state_of(approve, "processed").await;
    assert_eq!(harness.preview_get(port, "/api/hello").await.status(), 200);
    runner.stop().await;
}

/// Seed `approvedForwardPorts`: the owner's `--forward-port` ports are approved ports, so
/// a different process taking one over is revoked and asked about like any other.
#[tokio::test(flavor = "multi_thread")]
async fn an_explicit_port_taken_over_by_another_process_is_revoked_and_asked_again() {
    let port = free_port();
    let (harness, mut runner, thread) = dev_session_forwarding("explicit-revoke", vec![port]).await;

    codex_starts_dev_servers(&harness, &thread, &[port]).await;
    assert_eq!(harness.preview_get(port, "/api/hello").await.status(), 200);
    assert!(rows_of_kind(&harness, &thread, PROMPT, port).is_empty());
    let first_pid = dev_server_pid(port);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first_pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    codex_starts_dev_servers(&harness, &thread, &[port]).await;

    let revoked = harness
        .event(|event| event.event == "forward_port_revoked")
        .await;
    assert_eq!(revoked.payload["port"], port);
    assert_eq!(revoked.payload["pid"], first_pid);
    assert_eq!(revoked.payload["command"], "node", "seed: the process name");
    let prompt = wait_rows(&harness, &thread, PROMPT, port, 1)
        .await
        .remove(0);
    assert_eq!(prompt.payload["structured"]["command"], "node");
    assert!(
        prompt.payload["structured"]["command_line"]
            .as_str()
            .unwrap()
            .contains("--port"),
        "{:?}",
        prompt.payload
    );
    expect_not_forwarded(&harness, port).await;
    runner.stop().await;
}

/// The pid of the test dev server started with `--port <port>` (from /proc).
fn dev_server_pid(port: u16) -> u32 {
    let needle = format!("--port\0{port}");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|line| String::from_utf8_lossy(&line).contains(&needle))
                .unwrap_or(false)
        })
        .expect("the dev server runs")
}

async fn forward_http(harness: &Harness, mut request: Value) -> Value {
    let id = uuid::Uuid::new_v4().to_string();
    request["type"] = json!("forward_http_request");
    request["requestId"] = json!(id);
    harness.control(request).await;
    harness
        .event(|event| {
            event.event == "forward:http_response" && event.payload["requestId"] == id.as_str()
        })
        .await
        .payload
}

#[tokio::test(flavor = "multi_thread")]
async fn explicit_ports_are_forwarded_and_the_control_path_refuses_what_it_must() {
    let harness = Harness::new("control-path").await;
    let dev = DevServer::start(0);
    let mut runner = harness.start_forwarding(vec![dev.port]).await;

    // Allowed from the start: no prompt.
    assert_eq!(
        harness.preview_get(dev.port, "/api/hello").await.status(),
        200
    );

    // One request over the runner topic: the Host and Origin a browser sent for Kandan's
    // origin become the local server's, and hop-by-hop headers stop at the runner.
    let answer = forward_http(
        &harness,
        json!({"port": dev.port, "method": "GET", "path": "/api/hello", "queryString": "a=1",
            "headers": {"host": "evil.example", "origin": "https://evil.example",
                "connection": "x-secret", "x-secret": "1", "x-kept": "yes"}}),
    )
    .await;
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(answer["status"], 200);
    let body: Value = serde_json::from_slice(
        &BASE64
            .decode(answer["bodyBase64"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(body["host"], format!("127.0.0.1:{}", dev.port));
    assert_eq!(body["origin"], format!("http://127.0.0.1:{}", dev.port));
    assert_eq!(body["query"], "?a=1");
    assert_eq!(body["headers"]["x-kept"], "yes");
    assert!(body["headers"].get("x-secret").is_none(), "{body}");

    let upload = b"posted through the control path".to_vec();
    let echoed = forward_http(
        &harness,
        json!({"port": dev.port, "method": "POST", "path": "/echo",
            "bodyBase64": BASE64.encode(&upload)}),
    )
    .await;
    assert_eq!(
        BASE64
            .decode(echoed["bodyBase64"].as_str().unwrap())
            .unwrap(),
        upload
    );

    // A port nobody approved, targets off this machine, bodies over the limit (larger
    // ones take the tunnel).
    let unapproved = free_port();
    let _other = DevServer::start(unapproved);
    for (request, expected) in [
        (
            json!({"port": unapproved, "method": "GET", "path": "/"}),
            "port_not_allowed",
        ),
        (
            json!({"port": dev.port, "method": "GET", "path": "http://example.com/"}),
            "path_not_origin_form",
        ),
        (
            json!({"port": dev.port, "method": "GET", "path": "//example.com/api/hello"}),
            "path_not_origin_form",
        ),
        (
            json!({"port": dev.port, "method": "GET", "path": "/\\example.com"}),
            "path_not_origin_form",
        ),
        (
            json!({"port": dev.port, "method": "GET", "path": "api/hello"}),
            "path_not_origin_form",
        ),
        (
            json!({"port": dev.port, "method": "POST", "path": "/echo",
                "bodyBase64": BASE64.encode(vec![0u8; 5 * 1024 * 1024])}),
            "body_too_large",
        ),
        (
            json!({"port": dev.port, "method": "GET", "path": "/bytes",
                "queryString": "size=5000000"}),
            "body_too_large",
        ),
    ] {
        let answer = forward_http(&harness, request.clone()).await;
        assert_eq!(answer["ok"], false, "{request} was let through");
        assert!(
            answer["error"].as_str().unwrap().starts_with(expected),
            "{request}: {answer}"
        );
    }
    expect_not_forwarded(&harness, unapproved).await;

    // A control for another (stale) runner instance is not acted on.
    harness
        .control(
            json!({"type": "forward_http_request", "instanceId": "codex-stale",
            "requestId": "stale", "port": dev.port, "method": "GET", "path": "/api/hello"}),
        )
        .await;
    tokio::time::timeout(WAIT, async {
        loop {
            if harness.log_lines().iter().any(|line| {
                line["event"] == "kandan.control_ignored"
                    && line["reason"] == "instance_id_mismatch"
            }) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    assert!(
        !harness
            .kandan
            .events()
            .iter()
            .any(|event| event.payload["requestId"] == "stale")
    );

    // WebSocket frames over the runner topic.
    harness
        .control(
            json!({"type": "forward_websocket_open", "socketId": "s1", "port": dev.port,
            "path": "/ws", "headers": {"sec-websocket-protocol": "linzumi-test"}}),
        )
        .await;
    let opened = harness
        .event(|event| {
            event.event == "forward:websocket_opened" && event.payload["socketId"] == "s1"
        })
        .await;
    assert_eq!(opened.payload["ok"], true, "{}", opened.payload);
    assert_eq!(
        opened.payload["protocol"], "linzumi-test",
        "{}",
        opened.payload
    );
    harness
        .control(json!({"type": "forward_websocket_send", "socketId": "s1",
            "opcode": "text", "bodyBase64": BASE64.encode("over the topic")}))
        .await;
    let echoed = harness
        .event(|event| {
            event.event == "forward:websocket_message" && event.payload["socketId"] == "s1"
        })
        .await;
    assert_eq!(echoed.payload["opcode"], "text", "{}", echoed.payload);
    assert_eq!(
        BASE64
            .decode(echoed.payload["bodyBase64"].as_str().unwrap())
            .unwrap(),
        b"echo: over the topic"
    );
    harness
        .control(json!({"type": "forward_websocket_close", "socketId": "s1"}))
        .await;
    harness
        .event(|event| {
            event.event == "forward:websocket_closed" && event.payload["socketId"] == "s1"
        })
        .await;
    harness
        .control(json!({"type": "forward_websocket_open", "socketId": "s2", "port": unapproved, "path": "/ws"}))
        .await;
    let refused = harness
        .event(|event| {
            event.event == "forward:websocket_opened" && event.payload["socketId"] == "s2"
        })
        .await;
    assert_eq!(refused.payload["ok"], false);
    assert!(
        refused.payload["error"]
            .as_str()
            .unwrap()
            .starts_with("port_not_allowed"),
        "{}",
        refused.payload
    );
    runner.stop().await;
}

/// Kandan may send a socket's open and its first messages back to back: each reaches the
/// local server, in the order sent, and each echo comes back in that order.
#[tokio::test(flavor = "multi_thread")]
async fn relayed_websocket_messages_keep_their_order() {
    let harness = Harness::new("relay-order").await;
    let dev = DevServer::start(0);
    let mut runner = harness.start_forwarding(vec![dev.port]).await;
    harness
        .control(
            json!({"type": "forward_websocket_open", "socketId": "ordered",
            "port": dev.port, "path": "/ws"}),
        )
        .await;
    const MESSAGES: usize = 200;
    for index in 0..MESSAGES {
        harness
            .control(
                json!({"type": "forward_websocket_send", "socketId": "ordered",
                "opcode": "text", "bodyBase64": BASE64.encode(format!("m{index}"))}),
            )
            .await;
    }
    let echoes = tokio::time::timeout(WAIT, async {
        loop {
            let events = harness.kandan.events();
            if let Some(closed) = events.iter().find(|event| {
                event.event == "forward:websocket_closed" && event.payload["socketId"] == "ordered"
            }) {
                panic!("the socket closed: {}", closed.payload);
            }
            let echoes: Vec<String> = events
                .iter()
                .filter(|event| {
                    event.event == "forward:websocket_message"
                        && event.payload["socketId"] == "ordered"
                })
                .map(|event| {
                    let body = event.payload["bodyBase64"].as_str().unwrap();
                    String::from_utf8(BASE64.decode(body).unwrap()).unwrap()
                })
                .collect();
            if echoes.len() >= MESSAGES {
                return echoes;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("every echo");
    let expected: Vec<String> = (0..MESSAGES)
        .map(|index| format!("echo: m{index}"))
        .collect();
    assert_eq!(echoes, expected);
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dev_server_killed_mid_request_gives_502_and_the_tunnel_stays_up() {
    let harness = Harness::new("killed").await;
    let port = free_port();
    let mut dev = DevServer::start(port);
    let mut runner = harness.start_forwarding(vec![port]).await;

    let hanging = tokio::spawn({
        let client = preview_client(&harness.kandan, RUNNER_ID, port);
        let url = harness.preview_url(port, "hang");
        async move { client.get(url).send().await }
    });
    // Let the request reach the dev server, then kill it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    dev.kill();
    let response = hanging.await.unwrap().unwrap();
    assert_eq!(response.status(), 502);
    let body = response.text().await.unwrap();
    assert!(body.contains("upstream_error"), "{body}");

    // Nothing listens now: still a clear 502.
    let gone = harness.preview_get(port, "/api/hello").await;
    assert_eq!(gone.status(), 502);
    assert!(gone.text().await.unwrap().contains("connect_failed"));

    // The server comes back: the same tunnel serves it.
    let _dev = DevServer::start(port);
    assert_eq!(harness.preview_get(port, "/api/hello").await.status(), 200);
    assert_eq!(harness.kandan.tunnel_connections(RUNNER_ID), 1);
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kandan_dropping_the_tunnel_mid_transfer_is_survived() {
    let harness = Harness::new("tunnel-drop").await;
    let dev = DevServer::start(0);
    let mut runner = harness.start_forwarding(vec![dev.port]).await;

    let mut download = harness.preview_get(dev.port, "/bytes?size=200000000").await;
    assert_eq!(download.status(), 200);
    let first = download.chunk().await.unwrap().unwrap();
    assert!(!first.is_empty());
    harness.kandan.drop_tunnels().await;
    // The transfer fails rather than passing for complete.
    let rest = async {
        while let Some(_chunk) = download.chunk().await? {}
        Ok::<_, reqwest::Error>(())
    };
    assert!(rest.await.is_err(), "a cut transfer must not look complete");

    // The runner reconnects with backoff and the preview works again.
    tokio::time::timeout(WAIT, async {
        while harness.kandan.tunnel_connections(RUNNER_ID) < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    harness
        .kandan
        .wait_for_tunnel(RUNNER_ID, WAIT)
        .await
        .unwrap();
    let api: Value = harness
        .preview_get(dev.port, "/api/hello")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(api["hello"], "world");
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn chromium_loads_a_preview_whose_websocket_goes_through_the_tunnel() {
    let (harness, mut runner, thread) = dev_session("chromium").await;
    let mut events = runner.events();
    let port = free_port();
    codex_starts_dev_servers(&harness, &thread, &[port]).await;
    let request_id = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(RunnerEvent::PortForwardRequested { request_id, .. }) = events.recv().await {
                return request_id;
            }
        }
    })
    .await
    .unwrap();
    // Approved the way the desktop notification does.
    runner
        .resolve_port_forward(&request_id, true)
        .await
        .unwrap();

    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.artifacts");
    let output = tokio::process::Command::new("node")
        .arg(browser_tests().join("preview.mjs"))
        .arg(harness.kandan.preview_url(RUNNER_ID, port))
        .arg(&artifacts)
        .output()
        .await
        .expect("node is installed by scripts/setup.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(seen["title"], "Linzumi preview test");
    assert_eq!(
        seen["origin"],
        harness
            .kandan
            .preview_url(RUNNER_ID, port)
            .trim_end_matches('/')
    );
    runner.stop().await;
}
