//! A deliberately dumb Phoenix V2 client for the integration tests: it sends exactly the frames a
//! test writes and hands back exactly what arrives, so the tests see the wire, not an abstraction.

// Each test binary uses a different part of this module; and like a test body, test support
// code should panic on the unexpected (clippy's in-test allowance does not reach helpers).
#![allow(dead_code, clippy::expect_used)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use kandan_test_server::{KandanTestServer, ServerConfig};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long to wait for a frame that should arrive.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to listen to conclude that nothing is coming.
pub const SILENCE: Duration = Duration::from_millis(300);

pub async fn start_server() -> KandanTestServer {
    start_with(ServerConfig::default()).await
}

pub async fn start_with(config: ServerConfig) -> KandanTestServer {
    KandanTestServer::start(config)
        .await
        .expect("server starts")
}

pub fn socket_url(server: &KandanTestServer, token: &str) -> String {
    format!(
        "{}/socket/websocket?token={token}&vsn=2.0.0",
        server.ws_url()
    )
}

/// A runner join payload that passes validation.
pub fn runner_join_payload() -> Value {
    json!({"clientName": "kandan-local-codex-runner", "version": "0.0.1", "capabilities": {"codexAppServer": true}})
}

/// The HTTP status a refused WebSocket upgrade got.
pub async fn upgrade_status(url: &str) -> u16 {
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => 101,
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
    }
}

pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn connect(server: &KandanTestServer, token: &str) -> Client {
        Client::connect_url(&socket_url(server, token)).await
    }

    pub async fn connect_url(url: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        Client { ws }
    }

    /// A connected client with a fresh token for the default user.
    pub async fn connect_new(server: &KandanTestServer) -> Client {
        let token = server.issue_token("tester", None);
        Client::connect(server, &token).await
    }

    pub async fn send(
        &mut self,
        join_ref: Option<&str>,
        msg_ref: Option<&str>,
        topic: &str,
        event: &str,
        payload: Value,
    ) {
        let frame = json!([join_ref, msg_ref, topic, event, payload]);
        self.send_text(&frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send frame");
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws
            .send(Message::binary(bytes))
            .await
            .expect("send binary frame");
    }

    /// The next raw text frame.
    pub async fn recv_text(&mut self) -> String {
        loop {
            let next = tokio::time::timeout(RECV_TIMEOUT, self.ws.next())
                .await
                .expect("a frame within the timeout")
                .expect("socket still open")
                .expect("valid websocket message");
            match next {
                Message::Text(text) => return text.as_str().to_owned(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next frame, as the 5-element JSON array.
    pub async fn recv(&mut self) -> Value {
        let text = self.recv_text().await;
        serde_json::from_str(&text).expect("frame is JSON")
    }

    /// Asserts that nothing arrives for a while.
    pub async fn expect_silence(&mut self) {
        if let Ok(next) = tokio::time::timeout(SILENCE, self.ws.next()).await {
            panic!("expected silence, got {next:?}");
        }
    }

    /// Sends `phx_join` with join_ref = ref and returns the reply frame.
    pub async fn join(&mut self, topic: &str, join_ref: &str, payload: Value) -> Value {
        self.send(Some(join_ref), Some(join_ref), topic, "phx_join", payload)
            .await;
        self.recv().await
    }

    /// Waits for the socket to end and says how: `Some(code)` for a close frame, `None` when the
    /// TCP connection just went away.
    pub async fn wait_closed(&mut self) -> Option<u16> {
        loop {
            let next = tokio::time::timeout(RECV_TIMEOUT, self.ws.next())
                .await
                .expect("socket ends within the timeout");
            match next {
                None => return None,
                Some(Ok(Message::Close(frame))) => return frame.map(|frame| frame.code.into()),
                Some(Ok(Message::Text(text))) => panic!("unexpected frame {text}"),
                Some(Ok(_)) => continue,
                Some(Err(_)) => return None,
            }
        }
    }
}

/// `{"status": status, "response": response}` as a full reply frame.
pub fn reply(
    join_ref: Option<&str>,
    msg_ref: &str,
    topic: &str,
    status: &str,
    response: Value,
) -> Value {
    json!([join_ref, msg_ref, topic, "phx_reply", {"status": status, "response": response}])
}

/// An HTTP client that does not follow redirects (tests look at them).
pub fn http_client() -> reqwest::Client {
    // reqwest is built without a rustls crypto provider and insists on one even for plain
    // HTTP; another test in the same binary may have installed it already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

/// A raw client joined to `local_runner:<id>`, with helpers for the chat-session events. It still
/// shows the wire: `request` insists that the very next frame is the reply to what it sent.
pub struct Runner {
    pub client: Client,
    pub topic: String,
    join_ref: String,
    next_ref: u64,
}

impl Runner {
    /// Connects with a fresh unscoped token for `user_slug` and joins `local_runner:<runner_id>`.
    pub async fn join(server: &KandanTestServer, user_slug: &str, runner_id: &str) -> Runner {
        let token = server.issue_token(user_slug, None);
        Runner::join_with_token(server, &token, runner_id).await
    }

    pub async fn join_with_token(
        server: &KandanTestServer,
        token: &str,
        runner_id: &str,
    ) -> Runner {
        let mut client = Client::connect(server, token).await;
        let topic = format!("local_runner:{runner_id}");
        let joined = client.join(&topic, "j", runner_join_payload()).await;
        assert_eq!(joined[4]["status"], json!("ok"), "runner join: {joined}");
        Runner {
            client,
            topic,
            join_ref: "j".into(),
            next_ref: 1,
        }
    }

    /// Pushes `event` and returns the reply's `{status, response}`.
    pub async fn request(&mut self, event: &str, payload: Value) -> Value {
        self.next_ref += 1;
        let msg_ref = self.next_ref.to_string();
        let topic = self.topic.clone();
        let join_ref = self.join_ref.clone();
        self.client
            .send(Some(&join_ref), Some(&msg_ref), &topic, event, payload)
            .await;
        let frame = self.client.recv().await;
        assert_eq!(
            (&frame[1], &frame[3]),
            (&json!(msg_ref), &json!("phx_reply")),
            "expected the reply to {event} (ref {msg_ref}), got {frame}"
        );
        frame[4].clone()
    }

    /// Like [`Self::request`], but the reply must be ok; returns its response.
    pub async fn ok(&mut self, event: &str, payload: Value) -> Value {
        let reply = self.request(event, payload).await;
        assert_eq!(reply["status"], json!("ok"), "{event} was refused: {reply}");
        reply["response"].clone()
    }

    /// Like [`Self::request`], but the reply must be an error; returns its reason.
    pub async fn refused(&mut self, event: &str, payload: Value) -> Value {
        let reply = self.request(event, payload).await;
        assert_eq!(
            reply["status"],
            json!("error"),
            "{event} was accepted: {reply}"
        );
        reply["response"]["reason"].clone()
    }

    /// `session:bind` to acme/codex; returns the reply's response.
    pub async fn bind(&mut self, thread_id: Option<&str>, after_seq: Option<i64>) -> Value {
        let payload = json!({"instanceId": "codex-1", "workspace": "acme", "channel": "codex",
            "thread_id": thread_id, "after_seq": after_seq, "listen_user": "tester"});
        self.ok("session:bind", payload).await
    }

    /// `session:post_thread_message` to acme/codex; returns `(seq, thread_id)`.
    pub async fn post(
        &mut self,
        thread_id: Option<&str>,
        body: &str,
        payload: Value,
    ) -> (i64, String) {
        let request = json!({"workspace": "acme", "channel": "codex", "thread_id": thread_id,
            "body": body, "payload": payload});
        let response = self.ok("session:post_thread_message", request).await;
        let seq = response["seq"].as_i64().expect("seq");
        let thread_id = response["thread_id"]
            .as_str()
            .expect("thread_id")
            .to_owned();
        (seq, thread_id)
    }

    /// The next frame, which must be a push on this topic with this runner's join_ref;
    /// returns `(event, payload)`.
    pub async fn recv_push(&mut self) -> (String, Value) {
        let frame = self.client.recv().await;
        assert_eq!(
            (&frame[0], &frame[1], &frame[2]),
            (&json!(self.join_ref), &Value::Null, &json!(self.topic)),
            "expected a push, got {frame}"
        );
        let event = frame[3].as_str().expect("event").to_owned();
        (event, frame[4].clone())
    }

    /// The next `session:message` push's payload.
    pub async fn recv_session_message(&mut self) -> Value {
        let (event, payload) = self.recv_push().await;
        assert_eq!(event, "session:message", "{payload}");
        payload
    }
}
