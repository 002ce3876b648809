//! Fault injection end to end: Kandan restarting again and again mid-turn, a Codex
//! app-server that hangs (wholly, or only its request loop) or answers garbage, misbehaving local servers and clients of the
//! preview, a full disk under the event log, and token stores that cannot be used. The
//! REAL codex runs against the mock model API throughout; the Kandan test server and the
//! rogue local servers inject the faults.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/capture.rs"]
mod capture;
#[path = "support/codex_proxy.rs"]
mod codex_proxy;
#[path = "support/memory.rs"]
mod memory;
#[path = "support/rogue_servers.rs"]
mod rogue_servers;
mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use linzumi_engine::process_tree;
use linzumi_engine::runner::Runner;
use serde_json::{Value, json};
use support::dev_server::{DevServer, preview_client};
use support::{CHANNEL, Harness, RUNNER_ID, TOPIC, WAIT, WORKSPACE, mock};

/// The runner's rows answering `seq` of one `kind`, in order.
fn rows_of(harness: &Harness, thread: &str, seq: i64, kind: &str) -> Vec<Value> {
    harness
        .rows_for(thread, seq)
        .into_iter()
        .filter(|row| row.payload["structured"]["kind"] == kind)
        .map(|row| row.payload["structured"].clone())
        .collect()
}

/// Waits until Kandan shows nobody typing in `thread`.
async fn typing_stops(harness: &Harness, thread: &str) {
    tokio::time::timeout(WAIT, async {
        while !harness.kandan.typing(WORKSPACE, CHANNEL, thread).is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the runner's typing=false reached Kandan");
}

// ---- Kandan restarting --------------------------------------------------------------

/// Kandan goes down five times while Codex streams a turn of nine items and previews are
/// being downloaded through the tunnel: every item still appears in the thread once, with
/// its whole text or output, the message ends `processed`, the typing flag is cleared, and
/// no download that looked complete was cut short.
#[tokio::test(flavor = "multi_thread")]
async fn kandan_restarting_again_and_again_mid_turn_loses_and_repeats_no_item() {
    let harness = Harness::new("restart-storm").await;
    let dev = DevServer::start(0);
    let mut options = harness.session_options();
    options.forward_ports = vec![dev.port];
    options.runtime.sandbox = Some("danger-full-access".into());
    options.runtime.approval_policy = Some("never".into());
    let mut runner = Runner::start(options).await.unwrap();
    harness
        .kandan
        .wait_for_tunnel(RUNNER_ID, WAIT)
        .await
        .unwrap();
    let thread = harness.bound_thread().await;

    // Preview downloads all along; each one that answers 200 must be whole.
    const SIZE: usize = 300_000;
    let stop = Arc::new(AtomicBool::new(false));
    let complete = Arc::new(AtomicUsize::new(0));
    let traffic = tokio::spawn({
        let client = preview_client(&harness.kandan, RUNNER_ID, dev.port);
        let url = harness.preview_url(dev.port, &format!("bytes?size={SIZE}"));
        let (stop, complete) = (stop.clone(), complete.clone());
        async move {
            while !stop.load(Ordering::SeqCst) {
                if let Ok(response) = client.get(&url).send().await
                    && response.status() == 200
                    && let Ok(body) = response.bytes().await
                {
                    // reqwest fails a body shorter than its content-length; check anyway.
                    assert_eq!(body.len(), SIZE, "a cut download passed for complete");
                    assert!(
                        body.iter()
                            .enumerate()
                            .all(|(i, byte)| usize::from(*byte) == (i % 65_536) % 251),
                        "a download came back corrupted"
                    );
                    complete.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });

    const PARTS: usize = 5;
    let texts: Vec<String> = (1..=PARTS)
        .map(|n| format!("part {n}: {}", "abcdefghij".repeat(5)))
        .collect();
    let mut steps: Vec<Value> = (0..PARTS - 1)
        .map(|n| {
            json!([{"text": texts[n], "deltas": 20, "delay_ms": 40},
                   {"exec": format!("echo marker-{n}"), "yield_ms": 500}])
        })
        .collect();
    steps.push(json!({"text": texts[PARTS - 1], "deltas": 20, "delay_ms": 40}));
    let seq = harness
        .say(&thread, "tester", &mock(Value::Array(steps)))
        .await;

    // Restart once each part has begun to show, so every restart lands mid-turn.
    for text in &texts {
        let prefix = text[..7].to_owned();
        harness
            .kandan
            .wait_for_thread(
                WORKSPACE,
                CHANNEL,
                |rows| {
                    rows.iter().any(|row| {
                        row.payload["reply_to_seq"] == seq
                            && row.payload["structured"]["text"]
                                .as_str()
                                .is_some_and(|t| t.starts_with(&prefix))
                    })
                },
                WAIT,
            )
            .await
            .unwrap_or_else(|error| panic!("{prefix} never showed: {error}"));
        harness.kandan.restart(Duration::from_millis(300)).await;
    }
    let state = harness.state_of(seq, "processed").await;
    assert_eq!(state["status"], "processed");

    let answers = rows_of(&harness, &thread, seq, "codex_assistant_message");
    let mut shown: Vec<&str> = answers
        .iter()
        .map(|row| row["text"].as_str().unwrap())
        .collect();
    shown.sort_unstable();
    assert_eq!(shown, texts, "each answer once, whole");
    assert!(answers.iter().all(|row| row["streaming"] == false));
    let commands = rows_of(&harness, &thread, seq, "codex_command");
    let mut outputs: Vec<&str> = commands
        .iter()
        .map(|row| row["output"].as_str().unwrap())
        .collect();
    outputs.sort_unstable();
    let expected: Vec<String> = (0..PARTS - 1).map(|n| format!("marker-{n}\n")).collect();
    assert_eq!(outputs, expected, "each command once, with its output");
    let items: BTreeSet<&str> = answers
        .iter()
        .chain(&commands)
        .map(|row| row["item_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        items.len(),
        answers.len() + commands.len(),
        "one row per item"
    );
    typing_stops(&harness, &thread).await;
    let log = harness.log_lines();
    assert!(
        !log.iter()
            .any(|line| line["event"] == "session.row_refused"),
        "no row was given up"
    );

    // The previews kept working across the restarts and work now.
    stop.store(true, Ordering::SeqCst);
    traffic.await.unwrap();
    assert!(harness.kandan.tunnel_connections(RUNNER_ID) > PARTS);
    harness
        .kandan
        .wait_for_tunnel(RUNNER_ID, WAIT)
        .await
        .unwrap();
    let before = complete.load(Ordering::SeqCst);
    let response = harness
        .preview_get(dev.port, &format!("bytes?size={SIZE}"))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().len(), SIZE);
    println!("{before} complete preview downloads during the restarts");
    runner.stop().await;
}

/// Messages written while the runner is not joined (Kandan is back but refuses the
/// runner's joins for a while, then lets it in) never reach it live: it binds again once
/// it has rejoined and answers them, in order, once each.
#[tokio::test(flavor = "multi_thread")]
async fn messages_written_while_the_runner_is_away_are_answered_when_it_is_back() {
    let harness = Harness::new("away").await;
    let mut runner = Runner::start(harness.session_options()).await.unwrap();
    let thread = harness.bound_thread().await;
    let first = harness.say(&thread, "tester", "before").await;
    harness.state_of(first, "processed").await;

    harness
        .kandan
        .set_fault(kandan_test_server::Fault::RejectJoins {
            topic: TOPIC.into(),
            reason: "maintenance".into(),
        });
    let joins = harness.kandan.joins().len();
    harness.kandan.drop_connections().await;
    // The runner is connected again but not joined: what is written now is not pushed.
    tokio::time::timeout(WAIT, async {
        while !harness.kandan.joins()[joins..]
            .iter()
            .any(|join| join.topic == TOPIC && !join.accepted)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    let away: Vec<i64> = [
        harness.say(&thread, "tester", "while away one").await,
        harness.say(&thread, "tester", "while away two").await,
    ]
    .into();
    harness.kandan.clear_faults();

    for (seq, text) in away.iter().zip(["while away one", "while away two"]) {
        harness.state_of(*seq, "processed").await;
        let answers = rows_of(&harness, &thread, *seq, "codex_assistant_message");
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0]["text"], format!("You said: {text}"));
    }
    let queued: Vec<i64> = harness
        .log_lines()
        .iter()
        .filter(|line| line["event"] == "session.message_queued")
        .map(|line| line["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(queued, [first, away[0], away[1]], "each once, in order");
    runner.stop().await;
}

// ---- the Codex app-server ---------------------------------------------------------------

/// Sends a signal to a whole process group, and SIGKILLs it when dropped (a stopped
/// app-server must not outlive a failed test).
struct Frozen(nix::unistd::Pid);

impl Frozen {
    fn stop(pid: u32) -> Frozen {
        let group = nix::unistd::Pid::from_raw(pid as i32);
        nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGSTOP).unwrap();
        Frozen(group)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(self.0, nix::sys::signal::Signal::SIGKILL);
    }
}

async fn wait_until_gone(pid: u32) {
    tokio::time::timeout(WAIT, async {
        while process_tree::alive(pid) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("process {pid} is still there"));
}

/// The app-server freezes mid-turn (SIGSTOP: it answers nothing, not even pings): the
/// runner notices, fails the message with the reason in the thread, reports it to Kandan,
/// replaces the app-server, and the next message is answered.
#[tokio::test(flavor = "multi_thread")]
async fn a_hung_app_server_is_reported_in_the_thread_and_replaced() {
    let harness = Harness::new("codex-hung").await;
    let mut options = harness.session_options();
    options.codex_ping_interval = Duration::from_secs(1);
    let mut runner = Runner::start(options).await.unwrap();
    let thread = harness.bound_thread().await;
    let seq = harness.say_and_keep_codex_busy(&thread).await;
    let old = runner.codex().pid.unwrap();
    let frozen = Frozen::stop(old);

    let state = harness.state_of(seq, "failed").await;
    let reason = state["reason"].as_str().unwrap();
    assert!(reason.contains("stopped answering"), "{reason}");
    assert!(reason.contains("the message was not completed"), "{reason}");
    let reported = harness
        .event(|event| event.event == "codex_error")
        .await
        .payload;
    assert!(
        reported["message"]
            .as_str()
            .is_some_and(|m| m.contains("stopped answering") && m.contains("restarting")),
        "{reported}"
    );
    // The frozen one is ended (SIGKILL reaches a stopped process), a new one serves.
    wait_until_gone(old).await;
    drop(frozen);
    let next = harness.say(&thread, "tester", "are you back?").await;
    harness.state_of(next, "processed").await;
    let answer = rows_of(&harness, &thread, next, "codex_assistant_message");
    assert_eq!(answer[0]["text"], "You said: are you back?");
    assert_ne!(runner.codex().pid, Some(old));
    runner.stop().await;
}

/// The app-server starts answering garbage mid-turn (through a relay in front of the real
/// one): the runner drops it, fails the message with the reason in the thread, starts a
/// new one, and the next message is answered by it.
#[tokio::test(flavor = "multi_thread")]
async fn an_app_server_answering_garbage_is_reported_in_the_thread_and_replaced() {
    let harness = Harness::new("codex-garbage").await;
    let proxy = codex_proxy::CodexProxy::start(harness.codex_source(), &harness.project.dir).await;
    let mut options = harness.session_options();
    options.codex = proxy.source();
    let mut runner = Runner::start(options).await.unwrap();
    let thread = harness.bound_thread().await;
    // Works through the relay.
    let first = harness.say(&thread, "tester", "hello").await;
    harness.state_of(first, "processed").await;

    let seq = harness.say_and_keep_codex_busy(&thread).await;
    assert_eq!(proxy.connections(), 1);
    proxy.garble();

    let state = harness.state_of(seq, "failed").await;
    let reason = state["reason"].as_str().unwrap();
    assert!(reason.contains("invalid JSON"), "{reason}");
    assert!(reason.contains("the message was not completed"), "{reason}");
    harness
        .event(|event| {
            event.event == "codex_error"
                && event.payload["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("invalid JSON") && m.contains("restarting"))
        })
        .await;
    let next = harness.say(&thread, "tester", "are you back?").await;
    harness.state_of(next, "processed").await;
    let answer = rows_of(&harness, &thread, next, "codex_assistant_message");
    assert_eq!(answer[0]["text"], "You said: are you back?");
    assert_eq!(proxy.connections(), 2, "a new app-server took over");
    runner.stop().await;
}

/// The app-server's request loop is stuck while its socket still answers pings (a relay in
/// front of the real one swallows the runner's messages): the next message's `turn/start`
/// goes unanswered, the runner gives up on the app-server after a few ping intervals,
/// reports it to Kandan, starts a new one and runs the message there; the next message
/// works too.
#[tokio::test(flavor = "multi_thread")]
async fn an_app_server_that_answers_pings_but_not_requests_is_replaced() {
    let harness = Harness::new("codex-deaf").await;
    let proxy = codex_proxy::CodexProxy::start(harness.codex_source(), &harness.project.dir).await;
    let mut options = harness.session_options();
    options.codex = proxy.source();
    options.codex_ping_interval = Duration::from_millis(500);
    let mut runner = Runner::start(options).await.unwrap();
    let thread = harness.bound_thread().await;
    let first = harness.say(&thread, "tester", "hello").await;
    harness.state_of(first, "processed").await;

    proxy.deafen();
    let seq = harness.say(&thread, "tester", "anyone there?").await;
    let reported = harness
        .event(|event| event.event == "codex_error")
        .await
        .payload;
    assert!(
        reported["message"].as_str().is_some_and(|m| {
            m.contains("answers pings but not requests") && m.contains("restarting")
        }),
        "{reported}"
    );
    harness.state_of(seq, "processed").await;
    let answer = rows_of(&harness, &thread, seq, "codex_assistant_message");
    assert_eq!(answer[0]["text"], "You said: anyone there?");
    assert_eq!(proxy.connections(), 2, "a new app-server took over");

    let next = harness.say(&thread, "tester", "are you back?").await;
    harness.state_of(next, "processed").await;
    let answer = rows_of(&harness, &thread, next, "codex_assistant_message");
    assert_eq!(answer[0]["text"], "You said: are you back?");
    runner.stop().await;
}

// ---- local servers and preview clients that misbehave -----------------------------------

/// Generous: a few flow-control windows and socket buffers per stream, for the whole
/// process (the Kandan test server and the clients live in it too). A relay that buffered
/// what it is offered would pass it many times over.
const MEMORY_BOUND: u64 = 64 * 1024 * 1024;

/// Polls `count` until it stops growing for a second (then returns it) or passes `limit`
/// (then returns what it reached, for the caller's assert to report).
async fn settled(count: impl Fn() -> u64, limit: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut last = count();
    let mut still = 0;
    while still < 10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = count();
        if now > limit {
            return now;
        }
        if now == last {
            still += 1;
        } else {
            (last, still) = (now, 0);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still growing after 15 s: {now} bytes"
        );
    }
    last
}

/// 300 responses cut off halfway by the local server (more than the 256 streams the
/// runner keeps at once): each fails at the client instead of passing for complete, the
/// tunnel stays up, every stream is let go (a normal request still gets through), and
/// memory stays bounded.
#[tokio::test(flavor = "multi_thread")]
async fn a_local_server_hanging_up_mid_response_leaks_no_stream_and_no_memory() {
    let harness = Harness::new("cut-responses").await;
    let rogue = rogue_servers::RogueServer::start(rogue_servers::Behavior::CutMidBody {
        announced: 1_000_000,
        sent: 300_000,
    })
    .await;
    let dev = DevServer::start(0);
    let mut runner = harness.start_forwarding(vec![rogue.port, dev.port]).await;
    let client = preview_client(&harness.kandan, RUNNER_ID, rogue.port);
    let url = harness.preview_url(rogue.port, "cut");
    // Warm up pools and buffers before the baseline.
    for _ in 0..5 {
        let response = client.get(&url).send().await.unwrap();
        assert!(response.bytes().await.is_err());
    }
    let memory = memory::PeakResident::start();

    const REQUESTS: usize = 300;
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (client, url, next) = (client.clone(), url.clone(), next.clone());
            tokio::spawn(async move {
                let mut cut = 0;
                while next.fetch_add(1, Ordering::SeqCst) < REQUESTS {
                    match client.get(&url).send().await {
                        Ok(response) => match response.bytes().await {
                            Ok(body) => panic!("a cut response passed for {} bytes", body.len()),
                            Err(_) => cut += 1,
                        },
                        Err(_) => cut += 1,
                    }
                }
                cut
            })
        })
        .collect();
    let mut cut = 0;
    for worker in workers {
        cut += worker.await.unwrap();
    }
    assert_eq!(cut, REQUESTS);
    assert!(rogue.accepted() >= REQUESTS as u64);

    // The same tunnel serves a healthy server: no stream was left holding a slot.
    let hello = preview_client(&harness.kandan, RUNNER_ID, dev.port)
        .get(harness.preview_url(dev.port, "api/hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(hello.status(), 200);
    assert_eq!(harness.kandan.tunnel_connections(RUNNER_ID), 1);
    let grew = memory.grew();
    println!(
        "resident size grew {} KiB over {REQUESTS} cut responses",
        grew / 1024
    );
    assert!(grew < MEMORY_BOUND, "resident size grew {grew} bytes");
    runner.stop().await;
}

/// A client of the preview that sends its request head and a few body bytes, then
/// stalls (a slowloris). Returns the HTTP status it was answered with.
async fn slow_upload(harness: &Harness, port: u16) -> (tokio::net::TcpStream, u16) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(harness.kandan.addr())
        .await
        .unwrap();
    let host = support::dev_server::preview_host(RUNNER_ID, port);
    let head = format!(
        "POST /echo HTTP/1.1\r\nhost: {host}:{}\r\ncontent-length: 1000000\r\n\r\n0123456789",
        harness.kandan.addr().port()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !answer.windows(4).any(|window| window == b"\r\n\r\n") {
        let read = tokio::time::timeout(WAIT, socket.read(&mut buffer))
            .await
            .expect("an answer to the head")
            .unwrap();
        if read == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..read]);
    }
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (socket, status)
}

/// Holds `count` stalled uploads open at once, retrying the refused ones; panics if that
/// many cannot be open together before the deadline.
async fn hold_stalled_uploads(
    harness: &Harness,
    port: u16,
    count: usize,
) -> Vec<tokio::net::TcpStream> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut held = Vec::new();
    while held.len() < count {
        let (socket, status) = slow_upload(harness, port).await;
        match status {
            200 => held.push(socket),
            // Kandan's or the runner's 256-stream limit: a slot is not free yet.
            502 | 503 => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "only {} stalled uploads could be open at once",
                    held.len()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("a stalled upload was answered {other}"),
        }
    }
    held
}

/// Slowloris clients on the preview: 256 uploads that stall after a few bytes hold every
/// stream the runner allows; when they go away, every one of those streams is let go
/// (256 new ones fit again) and memory stays bounded.
#[tokio::test(flavor = "multi_thread")]
async fn slowloris_clients_of_the_preview_hold_no_stream_after_they_leave() {
    let harness = Harness::new("slowloris").await;
    let dev = DevServer::start(0);
    let mut runner = harness.start_forwarding(vec![dev.port]).await;
    let memory = memory::PeakResident::start();

    let first = hold_stalled_uploads(&harness, dev.port, 256).await;
    // The 257th is refused while they hold every slot.
    let (_refused, status) = slow_upload(&harness, dev.port).await;
    assert!(matches!(status, 502 | 503), "answered {status}");
    drop(first);
    let second = hold_stalled_uploads(&harness, dev.port, 256).await;
    drop(second);

    let hello = preview_client(&harness.kandan, RUNNER_ID, dev.port);
    let url = harness.preview_url(dev.port, "api/hello");
    tokio::time::timeout(WAIT, async {
        loop {
            if hello.get(&url).send().await.unwrap().status() == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap();
    let grew = memory.grew();
    println!(
        "resident size grew {} KiB with 512 stalled uploads",
        grew / 1024
    );
    assert!(grew < MEMORY_BOUND, "resident size grew {grew} bytes");
    runner.stop().await;
}

/// Backpressure holds end to end: a preview WebSocket whose browser never reads while the
/// local server floods it, a local WebSocket server that never reads while the browser
/// floods it, and downloads whose client never reads an endless body. Each sender is
/// stopped after a few windows and socket buffers, not after what it offers, and the
/// process's memory stays bounded.
#[tokio::test(flavor = "multi_thread")]
async fn peers_that_never_read_stop_their_senders_and_memory_stays_bounded() {
    use futures_util::SinkExt;
    use rogue_servers::{Behavior, RogueServer};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let harness = Harness::new("never-read").await;
    let flood = RogueServer::start(Behavior::FloodWebSocket).await;
    let deaf = RogueServer::start(Behavior::DeafWebSocket).await;
    let endless = RogueServer::start(Behavior::EndlessBody).await;
    let mut runner = harness
        .start_forwarding(vec![flood.port, deaf.port, endless.port])
        .await;
    let memory = memory::PeakResident::start();
    let open_websocket = |port: u16| {
        let url = harness.preview_url(port, "ws").replace("http://", "ws://");
        let addr = harness.kandan.addr();
        async move {
            let request = url.into_client_request().unwrap();
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            tokio_tungstenite::client_async(request, stream)
                .await
                .unwrap()
                .0
        }
    };

    // The local server floods a browser that never reads.
    let _reader_that_never_reads = open_websocket(flood.port).await;
    let flooded = settled(|| flood.written(), MEMORY_BOUND).await;
    assert!(flooded > 0, "the flood started");
    assert!(
        flooded < MEMORY_BOUND,
        "the local server got {flooded} bytes out"
    );

    // The browser floods a local server that never reads.
    let mut sender = open_websocket(deaf.port).await;
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sending = tokio::spawn({
        let sent = sent.clone();
        async move {
            let chunk = vec![b'b'; 64 * 1024];
            while sender.send(Message::binary(chunk.clone())).await.is_ok() {
                sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
        }
    });
    let pushed = settled(|| sent.load(Ordering::SeqCst), MEMORY_BOUND).await;
    assert!(pushed > 0, "the browser's flood started");
    assert!(pushed < MEMORY_BOUND, "the browser got {pushed} bytes out");

    // Downloads nobody reads.
    let client = preview_client(&harness.kandan, RUNNER_ID, endless.port);
    let mut unread = Vec::new();
    for _ in 0..4 {
        let response = client
            .get(harness.preview_url(endless.port, "endless"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        unread.push(response);
    }
    let streamed = settled(|| endless.written(), 2 * MEMORY_BOUND).await;
    assert!(
        streamed < 2 * MEMORY_BOUND,
        "the local server got {streamed} bytes out to four clients that read nothing"
    );

    let grew = memory.grew();
    println!(
        "flood {} KiB, browser {} KiB, downloads {} KiB; resident size grew {} KiB",
        flooded / 1024,
        pushed / 1024,
        streamed / 1024,
        grew / 1024
    );
    assert!(grew < MEMORY_BOUND, "resident size grew {grew} bytes");
    sending.abort();
    drop(unread);
    runner.stop().await;
}

// ---- the event log's disk --------------------------------------------------------------

/// A 64 KiB tmpfs, unmounted when dropped; `None` where mounting is not allowed.
struct TinyDisk(std::path::PathBuf);

impl TinyDisk {
    fn mount(name: &str) -> Option<TinyDisk> {
        let dir = std::env::temp_dir().join(format!(
            "linzumi-tiny-disk-{name}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs"])
            .arg(&dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if mounted {
            Some(TinyDisk(dir))
        } else {
            let _ = std::fs::remove_dir(&dir);
            None
        }
    }

    /// Fills what is left with a file; returns it.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let filler = self.0.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = [0u8; 512];
        while file
            .write_all(&block)
            .and_then(|()| file.sync_all())
            .is_ok()
        {}
        filler
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn lines_of(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The disk under the event log fills up (a 64 KiB tmpfs, with the log of an earlier run
/// on it): the runner carries on, says so once on stderr, never leaves half a line in the
/// file, and logs again once there is room.
#[test]
fn a_full_disk_under_the_event_log_stops_nothing_and_tears_no_line() {
    let Some(disk) = TinyDisk::mount("event-log") else {
        // Not allowed to mount here: /dev/full fails every write the same way.
        return capture::run_capturing("linzumi_engine=warn", |captured| async move {
            let harness = Harness::new("dev-full").await;
            let mut options = harness.options();
            options.log_file = Some("/dev/full".into());
            let mut runner = Runner::start(options).await.unwrap();
            let thread_id = harness.start_thread(json!({})).await;
            let reply = harness
                .control_reply(json!({"type": "start_turn", "threadId": thread_id,
                    "input": support::text_input("hello")}))
                .await;
            assert_eq!(reply.payload["ok"], true, "{}", reply.payload);
            harness.notification("turn/completed", |_| true).await;
            runner.stop().await;
            assert_eq!(
                captured
                    .text()
                    .matches("cannot write the event log")
                    .count(),
                1,
                "{}",
                captured.text()
            );
        });
    };
    capture::run_capturing("linzumi_engine=info", |captured| async move {
        let _shown = ShowOnPanic(captured.clone());
        let harness = Harness::new("disk-full").await;
        let log = disk.0.join("runner.log");
        std::fs::write(
            &log,
            "{\"ts\":\"2026-01-01T00:00:00.000Z\",\"event\":\"earlier.run\"}\n",
        )
        .unwrap();
        let filler = disk.fill();
        let mut options = harness.options();
        options.log_file = Some(log.clone());
        let mut runner = Runner::start(options).await.unwrap();

        // A whole turn while little or nothing more fits.
        let thread_id = harness.start_thread(json!({})).await;
        let text = "x".repeat(400);
        let reply = harness
            .control_reply(json!({"type": "start_turn", "threadId": thread_id,
                "input": support::text_input(&mock(json!([{"text": text, "deltas": 40}])))}))
            .await;
        assert_eq!(reply.payload["ok"], true, "{}", reply.payload);
        harness.notification("turn/completed", |_| true).await;
        let full = lines_of(&log);
        for line in &full {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|error| panic!("a torn line {line:?}: {error}"));
        }
        let warnings = captured.text();
        assert!(
            warnings.contains("cannot write the event log"),
            "{warnings}"
        );
        // Said once per outage, not once per line.
        let outages: Vec<&str> = warnings
            .lines()
            .filter_map(|line| {
                if line.contains("cannot write the event log") {
                    Some("down")
                } else if line.contains("the event log is writable again") {
                    Some("up")
                } else {
                    None
                }
            })
            .collect();
        assert!(
            outages.windows(2).all(|pair| pair[0] != pair[1]),
            "{outages:?}"
        );

        // Room again: the next events are logged, each on a line of its own.
        std::fs::remove_file(filler).unwrap();
        let read = harness
            .control_reply(json!({"type": "read_thread", "threadId": thread_id}))
            .await;
        assert_eq!(read.event, "codex_response");
        tokio::time::timeout(WAIT, async {
            while !lines_of(&log)
                .iter()
                .any(|line| line.contains("read_thread"))
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("logging resumed");
        let lines = lines_of(&log);
        for line in &lines {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|error| panic!("a torn line {line:?}: {error}"));
        }
        assert!(lines[0].contains("earlier.run"));
        assert!(
            lines.len() > full.len(),
            "the lines after the outage were added"
        );
        assert!(captured.text().contains("the event log is writable again"));
        runner.stop().await;
        drop(disk);
    });
}

/// Prints what was captured when the test fails, to show why.
struct ShowOnPanic(capture::Captured);

impl Drop for ShowOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("captured log:\n{}", self.0.text());
        }
    }
}

// ---- token stores ----------------------------------------------------------------------

mod token_stores {
    use std::sync::{Arc, Mutex};

    use kandan_test_server::{KandanTestServer, ServerConfig};
    use linzumi_engine::auth::{
        self, AuthScope, BrowserOpener, FileTokenStore, OAuthOptions, StoredToken, TokenKey,
        TokenSource, TokenStore, TokenStoreError,
    };
    use linzumi_engine::kandan_url::KandanUrl;

    /// A browser that follows the authorize URL to the runner's callback.
    fn browser() -> BrowserOpener {
        let client = linzumi_engine::http::client_builder(
            linzumi_engine::http::untrusting_tls_config().unwrap(),
        )
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .unwrap();
        Arc::new(move |url: &url::Url| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let _ = client.get(url).send().await;
            });
            Ok(())
        })
    }

    fn oauth(kandan: &KandanUrl, said: &Arc<Mutex<Vec<String>>>) -> OAuthOptions {
        let mut options = OAuthOptions::new(
            kandan.clone(),
            linzumi_engine::http::client_for(kandan).unwrap(),
        );
        options.open_browser = browser();
        let said = said.clone();
        options.report = Arc::new(move |message: &str| said.lock().unwrap().push(message.into()));
        options.timeout = std::time::Duration::from_secs(10);
        options
    }

    /// A keyring that is not there (no Secret Service, a locked keychain): every call fails.
    struct NoKeyring {
        calls: Mutex<Vec<&'static str>>,
    }

    impl NoKeyring {
        fn fail(&self, call: &'static str) -> TokenStoreError {
            self.calls.lock().unwrap().push(call);
            TokenStoreError::Backend(
                "org.freedesktop.DBus.Error.ServiceUnknown: no keyring daemon".into(),
            )
        }
    }

    impl TokenStore for NoKeyring {
        fn load(&self, _: &TokenKey) -> Result<Option<StoredToken>, TokenStoreError> {
            Err(self.fail("load"))
        }
        fn save(&self, _: &TokenKey, _: &StoredToken) -> Result<(), TokenStoreError> {
            Err(self.fail("save"))
        }
        fn remove(&self, _: &TokenKey) -> Result<bool, TokenStoreError> {
            Err(self.fail("remove"))
        }
    }

    /// With no keyring the sign-in still works for this run: the browser flow runs, the
    /// person is told the sign-in could not be kept, and no message shows the token.
    #[tokio::test]
    async fn an_unavailable_keyring_costs_a_sign_in_not_the_run() {
        let server = KandanTestServer::start(ServerConfig::default())
            .await
            .unwrap();
        let kandan = KandanUrl::parse(&server.ws_url()).unwrap();
        let said = Arc::new(Mutex::new(Vec::new()));
        let keyring = Arc::new(NoKeyring {
            calls: Mutex::default(),
        });
        let store: Arc<dyn TokenStore> = keyring.clone();
        let scope = AuthScope::channel("acme", "codex");

        let resolved = auth::resolve_token(&oauth(&kandan, &said), &store, None, &scope)
            .await
            .unwrap();
        assert_eq!(resolved.source, TokenSource::OAuth);
        let http = linzumi_engine::http::client_for(&kandan).unwrap();
        assert!(
            auth::validate_token(&http, &kandan, &resolved.token, &scope)
                .await
                .unwrap()
        );
        assert_eq!(*keyring.calls.lock().unwrap(), ["load", "save"]);
        let said = said.lock().unwrap().join("\n");
        assert!(said.contains("no keyring daemon"), "{said}");
        assert!(said.contains("authorize again next time"), "{said}");
        assert!(!said.contains(resolved.token.expose()), "{said}");
        server.shutdown().await;
    }

    /// The auth cache cannot be read or written even by root (its folder is a file): the
    /// cached token is unusable, so the browser flow runs; the token is good for this run;
    /// the failed save is reported; and nothing was created or moved in its place.
    #[tokio::test]
    async fn an_auth_cache_that_cannot_be_reached_costs_a_sign_in_not_the_run() {
        let server = KandanTestServer::start(ServerConfig::default())
            .await
            .unwrap();
        let kandan = KandanUrl::parse(&server.ws_url()).unwrap();
        let dir = std::env::temp_dir().join(format!(
            "linzumi-auth-blocked-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        // `~/.kandan` is a file, so `~/.kandan/auth.json` can be neither read nor written.
        let not_a_folder = dir.join(".kandan");
        std::fs::write(&not_a_folder, "not a folder").unwrap();
        let said = Arc::new(Mutex::new(Vec::new()));
        let store: Arc<dyn TokenStore> =
            Arc::new(FileTokenStore::new(not_a_folder.join("auth.json")));

        let resolved =
            auth::resolve_token(&oauth(&kandan, &said), &store, None, &AuthScope::Unscoped)
                .await
                .unwrap();
        assert_eq!(resolved.source, TokenSource::OAuth);
        let said = said.lock().unwrap().join("\n");
        assert!(said.contains("Kandan auth cache"), "{said}");
        assert!(said.contains("authorize again next time"), "{said}");
        assert!(!said.contains(resolved.token.expose()), "{said}");
        assert_eq!(
            std::fs::read_to_string(&not_a_folder).unwrap(),
            "not a folder"
        );
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, [".kandan"]);
        std::fs::remove_dir_all(dir).unwrap();
        server.shutdown().await;
    }
}

/// The same holds for the relay over the runner topic (protocol §6.2.1), which Kandan
/// uses when the tunnel is down: a local server flooding a socket whose messages Kandan
/// does not acknowledge is stopped after the in-flight budget, and messages for a local
/// server that never reads end their socket, with a reason, instead of piling up.
#[tokio::test(flavor = "multi_thread")]
async fn the_topic_relay_holds_back_a_flood_and_ends_a_socket_nobody_reads() {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use rogue_servers::{Behavior, RogueServer};

    let harness = Harness::new("relay-never-read").await;
    let flood = RogueServer::start(Behavior::FloodWebSocket).await;
    let deaf = RogueServer::start(Behavior::DeafWebSocket).await;
    let mut runner = harness.start_forwarding(vec![flood.port, deaf.port]).await;
    let memory = memory::PeakResident::start();
    let open = |socket: &'static str, port: u16| {
        let harness = &harness;
        async move {
            harness
                .control(json!({"type": "forward_websocket_open", "socketId": socket,
                    "port": port, "path": "/ws"}))
                .await;
            let opened = harness
                .event(|event| {
                    event.event == "forward:websocket_opened" && event.payload["socketId"] == socket
                })
                .await;
            assert_eq!(opened.payload["ok"], true, "{}", opened.payload);
        }
    };

    // Kandan takes the messages in but never acknowledges them.
    harness
        .kandan
        .set_fault(kandan_test_server::Fault::HoldReplies {
            topic: TOPIC.into(),
            event: "forward:websocket_message".into(),
        });
    open("flood", flood.port).await;
    let flooded = settled(|| flood.written(), MEMORY_BOUND).await;
    let relayed = harness
        .kandan
        .events()
        .iter()
        .filter(|event| {
            event.event == "forward:websocket_message" && event.payload["socketId"] == "flood"
        })
        .count();
    assert!(relayed > 0, "the flood reached Kandan");
    assert!(
        flooded < MEMORY_BOUND,
        "the local server got {flooded} bytes out"
    );

    // Kandan sends to a local server that never reads, 1 MiB at a time: a refused
    // request after each batch comes back only once the runner has taken the batch in
    // (relay controls are handled in arrival order), so what is counted as sent is what
    // the runner was handed, not what waits in the test server's queue.
    open("deaf", deaf.port).await;
    let chunk = BASE64.encode(vec![b'd'; 64 * 1024]);
    let mut sent = 0u64;
    let closed = loop {
        for _ in 0..16 {
            harness
                .control(json!({"type": "forward_websocket_send", "socketId": "deaf",
                    "opcode": "binary", "bodyBase64": chunk}))
                .await;
            sent += 64 * 1024;
        }
        let barrier = format!("after-{sent}");
        harness
            .control(json!({"type": "forward_http_request", "requestId": barrier,
                "port": 9, "method": "GET", "path": "/"}))
            .await;
        harness
            .event(|event| {
                event.event == "forward:http_response" && event.payload["requestId"] == barrier
            })
            .await;
        let closed = harness.kandan.events().into_iter().find(|event| {
            event.event == "forward:websocket_closed" && event.payload["socketId"] == "deaf"
        });
        if let Some(closed) = closed {
            break closed;
        }
        assert!(
            sent < MEMORY_BOUND,
            "{sent} bytes sent to a local server that reads nothing and the socket is still open"
        );
    };
    let reason = closed.payload["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("not reading"), "{}", closed.payload);

    let grew = memory.grew();
    println!(
        "flood {} KiB ({relayed} messages unacknowledged), {} KiB sent before the deaf socket \
         ended; resident size grew {} KiB",
        flooded / 1024,
        sent / 1024,
        grew / 1024
    );
    assert!(grew < MEMORY_BOUND, "resident size grew {grew} bytes");
    runner.stop().await;
}

/// A push Kandan takes in and never answers (its channel process hung) is sent again,
/// and once the attempts are spent it is reported in the event log with its event and
/// reason: never dropped silently. Short push timeouts stand in for the minute of
/// outage the real ones ride out.
#[tokio::test(flavor = "multi_thread")]
async fn a_push_kandan_never_answers_is_sent_again_then_reported() {
    let harness = Harness::new("push-reported").await;
    let dev = DevServer::start(0);
    let mut options = harness.options();
    options.kandan.push_timeout = Duration::from_millis(200);
    options.forward_ports = vec![dev.port];
    let mut runner = Runner::start(options).await.unwrap();
    harness
        .kandan
        .set_fault(kandan_test_server::Fault::HoldReplies {
            topic: TOPIC.into(),
            event: "forward:http_response".into(),
        });
    harness
        .control(json!({"type": "forward_http_request", "requestId": "held",
            "port": dev.port, "method": "GET", "path": "/api/hello"}))
        .await;
    let reported = tokio::time::timeout(WAIT, async {
        loop {
            let reported = harness.log_lines().into_iter().find(|line| {
                line["event"] == "kandan.push_failed"
                    && line["pushEvent"] == "forward:http_response"
            });
            if let Some(line) = reported {
                return line;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the undeliverable push is reported");
    assert_eq!(reported["attempts"], 6, "{reported}");
    assert!(
        reported["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{reported}"
    );
    let sent = harness
        .kandan
        .events()
        .iter()
        .filter(|event| {
            event.event == "forward:http_response" && event.payload["requestId"] == "held"
        })
        .count();
    assert_eq!(sent, 6, "every attempt reached Kandan");
    runner.stop().await;
}
