//! A load generator that speaks the Codex app-server's side of the protocol over a
//! WebSocket: it answers the requests the runner makes and sends notifications as fast
//! (or as evenly) as a benchmark asks. Real codex cannot produce 100,000 deltas on
//! demand; this can, so the runner's own cost is what gets measured.
#![allow(dead_code)] // each benchmark uses a different part

use std::time::SystemTime;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

pub const THREAD: &str = "bench-thread";

pub struct FakeCodex {
    pub url: String,
    outgoing: mpsc::UnboundedSender<String>,
    /// How many `turn/start` requests have arrived.
    pub turns: watch::Receiver<u64>,
}

impl FakeCodex {
    pub async fn start() -> FakeCodex {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("ws://{}", listener.local_addr().expect("address"));
        let (outgoing, mut queue) = mpsc::unbounded_channel::<String>();
        let (turns_tx, turns) = watch::channel(0u64);
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.expect("accept");
            let mut ws = tokio_tungstenite::accept_async(socket)
                .await
                .expect("upgrade");
            loop {
                tokio::select! {
                    Some(text) = queue.recv() => {
                        if ws.feed(Message::Text(text.into())).await.is_err() { return; }
                        // Write out whatever is queued, then flush once.
                        while let Ok(text) = queue.try_recv() {
                            if ws.feed(Message::Text(text.into())).await.is_err() { return; }
                        }
                        if ws.flush().await.is_err() { return; }
                    }
                    message = ws.next() => match message {
                        Some(Ok(Message::Text(text))) => {
                            let Ok(request) = serde_json::from_str::<Value>(text.as_str()) else { continue };
                            let Some(id) = request.get("id").cloned() else { continue };
                            let method = request["method"].as_str().unwrap_or_default();
                            let result = answer(method);
                            if method == "turn/start" {
                                turns_tx.send_modify(|count| *count += 1);
                            }
                            let reply = json!({"id": id, "result": result}).to_string();
                            if ws.send(Message::Text(reply.into())).await.is_err() { return; }
                        }
                        Some(Ok(_)) => {}
                        _ => return,
                    },
                }
            }
        });
        FakeCodex {
            url,
            outgoing,
            turns,
        }
    }

    /// Queues a notification; returns when it was handed to the socket writer.
    pub fn notify(&self, method: &str, params: Value) -> SystemTime {
        let text = json!({"method": method, "params": params}).to_string();
        let _ = self.outgoing.send(text);
        SystemTime::now()
    }

    /// Waits for the runner's `turn/start` number `n`.
    pub async fn turn_started(&mut self, n: u64) {
        self.turns
            .wait_for(|count| *count >= n)
            .await
            .expect("fake codex stopped");
    }
}

fn answer(method: &str) -> Value {
    match method {
        "initialize" => json!({"userAgent": "fake-codex/0", "codexHome": "/tmp",
            "platformFamily": "unix", "platformOs": "linux"}),
        "thread/start" | "thread/resume" => json!({"thread": {"id": THREAD}}),
        "turn/start" => json!({"turn": {"id": "bench-turn", "status": "inProgress", "items": []}}),
        _ => json!({}),
    }
}

/// The notifications of one assistant message streamed as `deltas`.
pub fn turn_started() -> (&'static str, Value) {
    (
        "turn/started",
        json!({"threadId": THREAD, "turn": {"id": "bench-turn", "status": "inProgress", "items": []}}),
    )
}

pub fn delta(text: &str) -> (&'static str, Value) {
    (
        "item/agentMessage/delta",
        json!({"threadId": THREAD, "turnId": "bench-turn", "itemId": "msg-1", "delta": text}),
    )
}

pub fn message_completed(text: &str) -> (&'static str, Value) {
    (
        "item/completed",
        json!({"threadId": THREAD, "turnId": "bench-turn", "completedAtMs": 0,
            "item": {"type": "agentMessage", "id": "msg-1", "text": text}}),
    )
}

pub fn turn_completed() -> (&'static str, Value) {
    (
        "turn/completed",
        json!({"threadId": THREAD, "turn": {"id": "bench-turn", "status": "completed", "items": []}}),
    )
}
