//! Tests that try to get in: forwarding somewhere the runner must not go, folders outside
//! the allowed roots, controls for another runner instance, approvals from someone who is
//! not the listen user, frames and messages over the limits, and the token turning up in
//! what the runner prints or logs. The REAL codex runs against the mock model API; Kandan
//! is the test server, and the "attacker" speaks to it (or through it) like anyone could.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/capture.rs"]
mod capture;
mod editor;
#[path = "../support/rogue_servers.rs"]
mod rogue_servers;
#[path = "../support/mod.rs"]
mod support;

mod ceilings;
mod codex_port;
mod event_log;
mod floods;
mod folders;
mod frames;
mod owner;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use linzumi_engine::runner::Runner;
use serde_json::{Value, json};
use support::dev_server::{DevServer, free_port, preview_host};
use support::{CHANNEL, Harness, RUNNER_ID, TOPIC, WAIT, WORKSPACE, mock, text_input};

/// One raw HTTP/1.1 request to the preview of `port`, the way any client could send it;
/// returns the status and the body.
async fn raw_preview(harness: &Harness, port: u16, target: &str, headers: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(harness.kandan.addr())
        .await
        .unwrap();
    let request = format!(
        "GET {target} HTTP/1.1\r\nhost: {}:{}\r\n{headers}connection: close\r\n\r\n",
        preview_host(RUNNER_ID, port),
        harness.kandan.addr().port()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, socket.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return (status, body.to_owned());
    }
    // Chunked: size line, data, CRLF, until the zero-size chunk.
    let mut rest = body;
    let mut decoded = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        decoded.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    (status, decoded)
}

/// `forward_http_request` over the runner topic; returns the `forward:http_response`.
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

fn decoded_json(answer: &Value) -> Value {
    let body = BASE64
        .decode(answer["bodyBase64"].as_str().unwrap())
        .unwrap();
    serde_json::from_slice(&body).unwrap()
}

/// An address of this computer that is not 127.0.0.1: a global one if there is one, else
/// 127.0.0.2 (loopback, but not the address the runner dials).
fn other_local_address() -> std::net::IpAddr {
    let output = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output();
    output
        .ok()
        .and_then(|output| {
            String::from_utf8_lossy(&output.stdout)
                .split_whitespace()
                .skip_while(|word| *word != "inet")
                .nth(1)
                .and_then(|cidr| cidr.split('/').next()?.parse().ok())
        })
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 2]))
}

/// Every way of naming another target through the preview (the forward tunnel) or the
/// runner topic ends at 127.0.0.1 on an approved port, or is refused: network-path and
/// backslash paths, `*`, absolute URLs in the request line, Host/Origin/forwarding
/// headers, host names and addresses in the control, unapproved ports (the codex
/// app-server's own among them), and an approved port that only listens on another
/// address of this computer.
#[tokio::test(flavor = "multi_thread")]
async fn forwarding_goes_nowhere_but_approved_ports_on_127_0_0_1() {
    let harness = Harness::new("forward-targets").await;
    let dev = DevServer::start(0);
    let elsewhere = other_local_address();
    let listener = tokio::net::TcpListener::bind((elsewhere, 0)).await.unwrap();
    let remote = rogue_servers::RogueServer::serve(
        listener,
        rogue_servers::Behavior::CutMidBody {
            announced: 10,
            sent: 10,
        },
    );
    // Nothing listens on 127.0.0.1 at the port the other address serves.
    drop(std::net::TcpListener::bind(("127.0.0.1", remote.port)).unwrap());
    let unapproved = DevServer::start(free_port());
    let mut runner = harness.start_forwarding(vec![dev.port, remote.port]).await;
    let loopback = format!("127.0.0.1:{}", dev.port);

    // Through the preview.
    let (status, body) = raw_preview(&harness, dev.port, "/api/hello", "").await;
    assert_eq!(status, 200, "{body}");
    for target in ["//evil.example/api/hello", "/\\evil.example/api/hello", "*"] {
        let (status, body) = raw_preview(&harness, dev.port, target, "").await;
        assert_eq!(status, 502, "{target}: {body}");
        assert!(body.contains("path_not_origin_form"), "{target}: {body}");
    }
    for target in [
        "http://evil.example/api/hello",
        "http://169.254.169.254:80/api/hello",
        "http://localhost.evil.example/api/hello",
    ] {
        let (status, body) = raw_preview(
            &harness,
            dev.port,
            target,
            "origin: https://evil.example\r\nx-forwarded-host: evil.example\r\nforwarded: host=evil.example\r\n",
        )
        .await;
        assert_eq!(status, 200, "{target}: {body}");
        let seen: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(seen["host"], loopback.as_str(), "{target}");
        assert_eq!(
            seen["origin"],
            format!("http://{loopback}").as_str(),
            "{target}"
        );
    }
    let (status, body) = raw_preview(&harness, unapproved.port, "/api/hello", "").await;
    assert_eq!(status, 502);
    assert!(body.contains("port_not_allowed"), "{body}");
    let (status, body) = raw_preview(&harness, remote.port, "/api/hello", "").await;
    assert_eq!(status, 502);
    assert!(body.contains("connect_failed"), "{body}");

    // Over the runner topic: names and addresses in the control are not targets.
    let answer = forward_http(
        &harness,
        json!({"port": dev.port, "method": "GET", "path": "/api/hello",
            "host": "evil.example", "hostname": "169.254.169.254", "address": "10.0.0.1",
            "url": "http://evil.example/api/hello", "target": "evil.example:80",
            "headers": [["Host", "evil.example"], ["HOST", "169.254.169.254"],
                ["Origin", "https://evil.example"], ["x-kept", "yes"]]}),
    )
    .await;
    assert_eq!(answer["ok"], true, "{answer}");
    let seen = decoded_json(&answer);
    assert_eq!(seen["host"], loopback.as_str());
    assert_eq!(seen["headers"]["x-kept"], "yes");
    assert_eq!(
        seen["headers"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| k.eq_ignore_ascii_case("host"))
            .count(),
        1
    );
    let codex_port: u16 = runner
        .codex()
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    for (request, code) in [
        (
            json!({"port": unapproved.port, "method": "GET", "path": "/api/hello"}),
            "port_not_allowed",
        ),
        (
            json!({"port": codex_port, "method": "GET", "path": "/"}),
            "port_not_allowed",
        ),
        (
            json!({"port": harness.kandan.addr().port(), "method": "GET", "path": "/"}),
            "port_not_allowed",
        ),
        (
            json!({"port": remote.port, "method": "GET", "path": "/api/hello"}),
            "connect_failed",
        ),
        (
            json!({"port": dev.port, "method": "GET", "path": "http://evil.example/"}),
            "path_not_origin_form",
        ),
        (
            json!({"port": dev.port, "method": "GET", "path": "//169.254.169.254/latest"}),
            "path_not_origin_form",
        ),
        (
            json!({"port": dev.port, "method": "GET", "path": "/api/hello\r\nHost: evil.example"}),
            "path_not_origin_form",
        ),
        (
            json!({"port": dev.port, "method": "GET", "path": "/api/hello",
                "queryString": "a=1 HTTP/1.1\r\nHost: evil.example"}),
            "bad_request",
        ),
    ] {
        let answer = forward_http(&harness, request.clone()).await;
        assert_eq!(answer["ok"], false, "{request} was let through: {answer}");
        assert!(
            answer["error"].as_str().unwrap().starts_with(code),
            "{request}: {answer}"
        );
    }
    // The Codex app-server's port cannot be reached as a WebSocket either.
    harness
        .control(json!({"type": "forward_websocket_open", "socketId": "codex", "port": codex_port, "path": "/"}))
        .await;
    let refused = harness
        .event(|event| {
            event.event == "forward:websocket_opened" && event.payload["socketId"] == "codex"
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
    assert_eq!(remote.accepted(), 0, "the runner dialed {elsewhere}");
    runner.stop().await;
}

/// `start_instance` with folders that look inside the allowed root but are not: `..`
/// out of it, a symlink inside it pointing out, a sibling whose name starts with the
/// root's, the root in another case, a relative path, an encoded `..`, a NUL byte. None
/// starts a Codex thread; the honest spellings of folders inside do.
#[tokio::test]
async fn start_instance_cannot_leave_the_allowed_roots() {
    let harness = Harness::new("cwd-tricks").await;
    let root = harness.project.dir.clone();
    std::fs::create_dir_all(root.join("inside/deeper")).unwrap();
    let sibling = std::path::PathBuf::from(format!("{}-evil", root.display()));
    std::fs::create_dir_all(&sibling).unwrap();
    let outside = tempfile_dir("cwd-outside");
    std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("inside/deeper/escape")).unwrap();
    let mut runner = harness.start_runner().await;
    let root_text = root.display().to_string();
    let upper = root_text.to_uppercase();
    assert_ne!(upper, root_text);

    for cwd in [
        format!(
            "{root_text}/../{}",
            sibling.file_name().unwrap().to_string_lossy()
        ),
        format!("{root_text}/inside/../../.."),
        format!("{root_text}/escape"),
        format!("{root_text}/escape/."),
        format!("{root_text}/inside/deeper/escape"),
        sibling.display().to_string(),
        upper,
        "inside".to_owned(),
        "./inside".to_owned(),
        format!("{root_text}/%2e%2e/%2e%2e"),
        format!("{root_text}/inside\0/../../.."),
        "/".to_owned(),
        outside.display().to_string(),
    ] {
        let reply = harness
            .control_reply(json!({"type": "start_instance", "cwd": cwd}))
            .await;
        assert_eq!(
            reply.event, "codex_response",
            "{cwd:?}: {:?}",
            reply.payload
        );
        assert_eq!(reply.payload["ok"], false, "{cwd:?} was let in");
        assert!(reply.payload.get("response").is_none(), "{cwd:?}");
    }
    for (cwd, resolved) in [
        (
            format!("{root_text}/inside/deeper/../."),
            root.join("inside"),
        ),
        (format!("{root_text}//inside/"), root.join("inside")),
        (
            format!("{root_text}/inside/deeper"),
            root.join("inside/deeper"),
        ),
    ] {
        let reply = harness
            .control_reply(json!({"type": "start_instance", "cwd": cwd}))
            .await;
        assert_eq!(reply.payload["ok"], true, "{cwd:?}: {:?}", reply.payload);
        assert_eq!(reply.payload["cwd"], resolved.display().to_string());
        assert_eq!(
            reply.payload["response"]["thread"]["cwd"],
            resolved.display().to_string()
        );
    }
    runner.stop().await;
    std::fs::remove_dir_all(sibling).unwrap();
    std::fs::remove_dir_all(outside).unwrap();
}

fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "linzumi-{name}-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::canonicalize(dir).unwrap()
}

/// Controls naming another (stale) runner instance are ignored, whatever they ask: none
/// kills or stops Codex, widens the allowed roots, starts or interrupts a turn, or answers
/// an approval; each is logged as ignored. The same approval is then answered by a control
/// for the current instance.
#[tokio::test]
async fn controls_for_another_instance_change_nothing() {
    let harness = Harness::new("stale-instance").await;
    let mut runner = harness.start_full_access_runner().await;
    let thread_id = harness
        .start_thread(json!({"approvalPolicy": "untrusted", "sandbox": "danger-full-access"}))
        .await;
    let started = harness
        .control_reply(json!({"type": "start_turn", "threadId": thread_id,
            "input": text_input(&mock(json!([{"exec": "touch pwned.txt && echo done"}])))}))
        .await;
    assert_eq!(started.payload["ok"], true, "{:?}", started.payload);
    let request = harness.event(|event| event.event == "codex_request").await;
    let request_id = request.payload["requestId"].as_str().unwrap().to_owned();
    let codex = runner.codex();
    let events_before = harness.kandan.events_for(TOPIC).len();
    let turns_before = harness
        .notifications()
        .iter()
        .filter(|n| n["method"] == "turn/started")
        .count();

    let stale = "codex-00000000-0000-4000-8000-000000000000";
    let controls = [
        json!({"type": "resolve_codex_approval_request", "instanceId": stale,
            "threadId": thread_id, "requestId": request_id, "decision": "approve"}),
        json!({"type": "update_runner_config", "instanceId": stale, "allowedCwds": ["/"]}),
        json!({"type": "start_turn", "instanceId": stale, "threadId": thread_id,
            "input": text_input("another turn")}),
        json!({"type": "interrupt_turn", "instanceId": stale, "threadId": thread_id}),
        json!({"type": "kill_instance", "instanceId": stale}),
        json!({"type": "stop_instance", "instanceId": stale}),
    ];
    for control in &controls {
        harness.control(control.clone()).await;
    }
    // Controls are handled in order: once this one is answered, the stale ones were seen.
    let etc = harness
        .control_reply(json!({"type": "start_instance", "cwd": "/etc"}))
        .await;
    assert_eq!(etc.payload["ok"], false, "the roots were widened");
    let ignored: Vec<Value> = harness
        .log_lines()
        .into_iter()
        .filter(|line| line["event"] == "kandan.control_ignored")
        .collect();
    assert_eq!(ignored.len(), controls.len(), "{ignored:?}");
    assert!(
        ignored
            .iter()
            .all(|line| line["reason"] == "instance_id_mismatch")
    );
    let answered: Vec<_> = harness
        .kandan
        .events_for(TOPIC)
        .into_iter()
        .skip(events_before)
        .filter(|event| {
            event.payload["instanceId"] == stale
                || (event.event == "codex_response"
                    && event.payload["controlType"] != "start_instance")
        })
        .collect();
    assert!(answered.is_empty(), "{answered:?}");
    assert_eq!(runner.codex(), codex, "Codex was not restarted");
    assert!(!harness.project.dir.join("pwned.txt").exists());
    let turns_after = harness
        .notifications()
        .iter()
        .filter(|n| n["method"] == "turn/started")
        .count();
    assert_eq!(turns_after, turns_before);

    // The request is still open, and the current instance can answer it.
    let reply = harness
        .control_reply(json!({"type": "resolve_codex_approval_request",
            "instanceId": runner.instance_id(), "threadId": thread_id,
            "requestId": request_id, "decision": "deny"}))
        .await;
    assert_eq!(reply.payload["ok"], true, "{:?}", reply.payload);
    harness.notification("turn/completed", |_| true).await;
    assert!(!harness.project.dir.join("pwned.txt").exists());
    runner.stop().await;
}

/// An approval only the listen user may give: another person's chat command, the listen
/// user's command in another thread, and controls naming another person (by slug, by id,
/// or both) all leave it waiting; the command is not run until the listen user answers.
#[tokio::test]
async fn approvals_come_only_from_the_listen_user_in_the_bound_thread() {
    let harness = Harness::new("approval-actors").await;
    let mut options = harness.session_options();
    options.runtime.approval_policy = Some("untrusted".into());
    options.runtime.sandbox = Some("danger-full-access".into());
    let mut runner = Runner::start(options).await.unwrap();
    let thread = harness.bound_thread().await;
    let seq = harness
        .say(
            &thread,
            "tester",
            &mock(json!([{"exec": "touch approved-by-mallory.txt"}])),
        )
        .await;
    let waiting = harness
        .state_where(seq, |state| state["reason"] == "awaiting approval")
        .await;
    let request_id = waiting["approval_request_id"].as_str().unwrap().to_owned();

    let meddling = harness
        .say(&thread, "mallory", &format!("/kandan approve {request_id}"))
        .await;
    assert_eq!(
        harness.state_of(meddling, "ignored").await["reason"],
        "not_listen_user"
    );
    let elsewhere = harness
        .kandan
        .post_user_message(
            WORKSPACE,
            CHANNEL,
            None,
            "tester",
            &format!("/kandan approve {request_id}"),
        )
        .await
        .unwrap();
    tokio::time::timeout(WAIT, async {
        while !harness
            .log_lines()
            .iter()
            .any(|line| line["event"] == "session.message_ignored" && line["seq"] == elsewhere.seq)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the command in another thread was ignored");
    for actor in [
        json!({"actorSlug": "mallory", "actorUserId": 99}),
        json!({"actorSlug": "mallory"}),
        json!({"actorUserId": 99}),
    ] {
        let mut control = json!({"type": "resolve_codex_approval_request", "threadId": "t",
            "sourceSeq": seq, "requestId": request_id, "decision": "approve"});
        control
            .as_object_mut()
            .unwrap()
            .extend(actor.as_object().unwrap().clone());
        let reply = harness.control_reply(control).await;
        assert_eq!(reply.payload["error"], "sender_not_allowed", "{actor}");
    }
    let still = harness.kandan.thread(WORKSPACE, CHANNEL, &thread);
    let state = still
        .iter()
        .find(|m| m.seq == seq)
        .unwrap()
        .state
        .clone()
        .unwrap();
    assert_eq!(state["reason"], "awaiting approval");
    assert!(!harness.project.dir.join("approved-by-mallory.txt").exists());

    let deny = harness
        .say(&thread, "tester", &format!("/kandan deny {request_id}"))
        .await;
    harness.state_of(deny, "processed").await;
    harness.state_of(seq, "processed").await;
    assert!(!harness.project.dir.join("approved-by-mallory.txt").exists());
    runner.stop().await;
}

/// Frames from Kandan over the limits: one over 8 MiB (a `kill_instance` padded out) is
/// dropped and the connection stays; one over tungstenite's 32 MiB ends the connection,
/// which is made again. Neither is acted on, and the runner keeps answering.
#[tokio::test]
async fn oversized_frames_from_kandan_are_never_acted_on() {
    let harness = Harness::new("oversized-frames").await;
    let mut runner = harness.start_runner().await;
    let codex = runner.codex();
    let raw = |control: Value| json!([null, null, TOPIC, "control", control]).to_string();
    let harness = &harness;
    let probe = |name: &'static str| async move {
        harness
            .event(|event| {
                event.event == "codex_error"
                    && event.payload["message"]
                        .as_str()
                        .is_some_and(|m| m.contains(name))
            })
            .await
    };

    // A raw frame within the limits is a control like any other.
    harness
        .kandan
        .send_raw_text(&raw(json!({"type": "probe_before"})))
        .await;
    probe("probe_before").await;

    let padding = "k".repeat(9 * 1024 * 1024);
    harness
        .kandan
        .send_raw_text(&raw(json!({"type": "kill_instance", "padding": padding})))
        .await;
    harness
        .kandan
        .send_raw_text(&raw(json!({"type": "probe_after_8_mib"})))
        .await;
    probe("probe_after_8_mib").await;
    assert_eq!(
        harness
            .kandan
            .joins()
            .iter()
            .filter(|join| join.topic == TOPIC)
            .count(),
        1,
        "the connection stayed up"
    );

    let padding = "k".repeat(33 * 1024 * 1024);
    harness
        .kandan
        .send_raw_text(&raw(json!({"type": "kill_instance", "padding": padding})))
        .await;
    drop(padding);
    tokio::time::timeout(WAIT, async {
        while harness
            .kandan
            .joins()
            .iter()
            .filter(|join| join.topic == TOPIC && join.accepted)
            .count()
            < 2
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the runner joined again");
    let read = harness.control_reply(json!({"type": "format_disk"})).await;
    assert_eq!(read.event, "codex_error");
    assert!(!harness.kandan.events_for(TOPIC).iter().any(|event| {
        event.event == "codex_response" && event.payload["controlType"] == "kill_instance"
    }));
    assert_eq!(runner.codex(), codex, "Codex was never killed");
    runner.stop().await;
}

/// A local WebSocket server sending one 20 MiB message to a preview: the runner refuses
/// to take in more than 8 MiB of one message, closes the browser's socket instead of
/// relaying it, and the tunnel keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_message_from_a_local_websocket_is_not_relayed() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let harness = Harness::new("huge-message").await;
    let huge = rogue_servers::RogueServer::start(rogue_servers::Behavior::HugeWebSocketMessage(
        20 * 1024 * 1024,
    ))
    .await;
    let dev = DevServer::start(0);
    let mut runner = harness.start_forwarding(vec![huge.port, dev.port]).await;
    let url = harness
        .preview_url(huge.port, "ws")
        .replace("http://", "ws://");
    let stream = tokio::net::TcpStream::connect(harness.kandan.addr())
        .await
        .unwrap();
    let (mut socket, _) =
        tokio_tungstenite::client_async(url.into_client_request().unwrap(), stream)
            .await
            .unwrap();
    let first = tokio::time::timeout(WAIT, socket.next()).await.unwrap();
    match first {
        Some(Ok(Message::Close(frame))) => {
            let code = frame.map(|frame| u16::from(frame.code));
            assert!(matches!(code, Some(1009 | 1011)), "{code:?}");
        }
        None | Some(Err(_)) => {}
        Some(Ok(other)) => panic!("relayed a {} byte message", other.len()),
    }
    assert_eq!(huge.accepted(), 1, "the local server was reached");
    let hello = harness.preview_get(dev.port, "api/hello").await;
    assert_eq!(hello.status(), 200);
    assert_eq!(harness.kandan.tunnel_connections(RUNNER_ID), 1);
    runner.stop().await;
}

/// The access token never shows where a person or a crash report could see it: not in
/// anything printed through `tracing` at any level (the engine's and its libraries'), not
/// in the event log, not in the errors a
/// start fails with (shown and debug-printed), and not in the environment or command line
/// of the Codex app-server (where a command Codex runs could read it). The run goes
/// through every path that handles the token: joining, the forward tunnel, a Kandan
/// restart, a dropped tunnel, a control that quotes the token, the token being revoked
/// while connected, and starts that fail on a revoked token and on a dead Kandan.
#[test]
fn the_token_never_shows_in_logs_errors_or_the_codex_environment() {
    // Everything in the process at every level (RUST_LOG=trace), but the stand-in servers.
    let filter = "trace,kandan_test_server=off,mock_model_api=off,axum=off";
    capture::run_capturing(filter, |captured| async move {
        let harness = Harness::new("token-leaks").await;
        let token = harness.token.clone();
        assert!(token.len() >= 16, "a token worth looking for: {token}");
        let dev = DevServer::start(0);
        let mut options = harness.session_options();
        options.forward_ports = vec![dev.port];
        let mut runner = Runner::start(options).await.unwrap();
        harness
            .kandan
            .wait_for_tunnel(RUNNER_ID, WAIT)
            .await
            .unwrap();
        let thread = harness.bound_thread().await;
        let seq = harness.say(&thread, "tester", "hello").await;
        harness.state_of(seq, "processed").await;
        let hello = harness.preview_get(dev.port, "api/hello").await;
        assert_eq!(hello.status(), 200);

        // Where Codex runs, the token is nowhere.
        let codex_pid = runner.codex().pid.unwrap();
        for pid in linzumi_engine::process_tree::tree(codex_pid) {
            for file in ["environ", "cmdline"] {
                let bytes = std::fs::read(format!("/proc/{pid}/{file}")).unwrap_or_default();
                assert!(
                    !String::from_utf8_lossy(&bytes).contains(&token),
                    "the token is in the {file} of process {pid}"
                );
            }
        }

        // A control quoting the token (malformed, so it is logged whole).
        harness
            .control(json!({"type": "start_turn", "note": token, "input": []}))
            .await;
        harness.event(|event| event.event == "codex_error").await;
        harness.kandan.restart(Duration::from_millis(200)).await;
        harness.kandan.drop_tunnels().await;
        harness
            .kandan
            .wait_for_tunnel(RUNNER_ID, WAIT)
            .await
            .unwrap();
        let after = harness.say(&thread, "tester", "still there?").await;
        harness.state_of(after, "processed").await;

        // Revoked while connected: every reconnect is refused.
        harness.kandan.revoke_token(&token);
        harness.kandan.drop_connections().await;
        tokio::time::timeout(WAIT, async {
            while !captured.text().contains("401") {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("a refused reconnect was reported");
        runner.stop().await;

        // Starts that fail.
        let mut errors = Vec::new();
        match Runner::start(harness.options()).await {
            Ok(_) => panic!("a revoked token was accepted"),
            Err(error) => errors.push(format!("{error}\n{error:?}")),
        }
        let mut options = harness.options();
        let dead = free_port();
        options.kandan = linzumi_engine::phoenix::ClientConfig::new(
            &linzumi_engine::kandan_url::KandanUrl::parse(&format!("ws://127.0.0.1:{dead}"))
                .unwrap(),
            &token,
        );
        match Runner::start(options).await {
            Ok(_) => panic!("a dead Kandan was reached"),
            Err(error) => errors.push(format!("{error}\n{error:?}")),
        }

        let printed = captured.text();
        let log = std::fs::read_to_string(&harness.log_file).unwrap();
        // The paths that handle the token did run and were written down.
        assert!(printed.contains("token=REDACTED"), "{printed}");
        assert!(printed.contains("forward tunnel"), "{printed}");
        assert!(log.contains("[REDACTED]"), "the quoted token was masked");
        assert!(
            errors[0].contains("401") || errors[0].contains("403"),
            "{errors:?}"
        );
        for (what, text) in [("stderr", &printed), ("the event log", &log)]
            .into_iter()
            .chain(errors.iter().map(|error| ("a start error", error)))
        {
            assert!(!text.contains(&token), "the token is in {what}:\n{text}");
        }
    });
}
