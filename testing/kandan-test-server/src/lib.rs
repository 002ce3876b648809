//! A protocol-faithful fake Kandan server for tests and the local demo.
//!
//! It speaks Phoenix Channels V2 over `/socket/websocket` exactly as a Phoenix 1.8 server does
//! (so the official phoenix.js client works against it), serves the runner's OAuth and
//! validation endpoints, records everything clients send, and lets tests misbehave on purpose:
//! drop connections, restart on the same port, hold or delay replies, refuse joins.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use kandan_test_server::{KandanTestServer, ServerConfig};
//! let server = KandanTestServer::start(ServerConfig::default()).await?;
//! let token = server.issue_token("tester", Some(("acme", "codex")));
//! // connect to format!("{}/socket/websocket?token={token}&vsn=2.0.0", server.ws_url())
//! # Ok(()) }
//! ```

mod admin;
mod channels;
mod chat_store;
mod conformance_topic;
mod connection;
mod consent_page;
mod faults;
mod frame;
mod listener;
mod oauth;
mod recorder;
mod registry;
mod runner_topic;
mod server;
mod socket;
mod sync;
mod tokens;
mod users;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

pub use chat_store::ChatMessage;
pub use faults::Fault;
pub use recorder::{RecordedEvent, RecordedJoin};

use server::ServerCore;
use sync::lock;
use tokens::TokenScope;

/// How the server starts.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Defaults to `127.0.0.1:0` (loopback, any free port): the admin API must not be exposed.
    pub bind: SocketAddr,
    /// The first one is who auto-approved OAuth authorizes as.
    pub users: Vec<TestUser>,
    /// Skip the consent page and redirect straight back with a code.
    pub auto_approve_oauth: bool,
    /// Sockets that send nothing for this long are closed (Phoenix's default is 60 s).
    pub heartbeat_idle_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            users: vec![TestUser {
                id: 1,
                slug: "tester".to_owned(),
            }],
            auto_approve_oauth: true,
            heartbeat_idle_timeout: Duration::from_secs(60),
        }
    }
}

/// A Kandan user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestUser {
    pub id: i64,
    /// The username.
    pub slug: String,
}

/// A running server. Dropping it stops it too, but without waiting; prefer [`Self::shutdown`].
pub struct KandanTestServer {
    core: Arc<ServerCore>,
}

impl KandanTestServer {
    pub async fn start(config: ServerConfig) -> anyhow::Result<KandanTestServer> {
        let core = ServerCore::start(config).await?;
        tracing::info!(addr = %core.addr, "kandan test server listening");
        Ok(KandanTestServer { core })
    }

    pub fn addr(&self) -> SocketAddr {
        self.core.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn http_url(&self) -> String {
        format!("http://{}", self.core.addr)
    }

    /// `ws://127.0.0.1:PORT` (the socket lives at `/socket/websocket`).
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.core.addr)
    }

    /// A token for `user_slug` (created on the fly if not configured), optionally limited to
    /// `(workspace, channel)`; valid for the socket and the HTTP API.
    pub fn issue_token(&self, user_slug: &str, scope: Option<(&str, &str)>) -> String {
        let user = self.core.users.find_or_create(user_slug);
        let scope = scope.map(|(workspace, channel)| TokenScope {
            workspace: workspace.to_owned(),
            channel: channel.to_owned(),
        });
        self.core.tokens.issue(&user, scope)
    }

    /// Makes `token` invalid for new sockets and HTTP requests (open sockets stay up).
    pub fn revoke_token(&self, token: &str) {
        self.core.tokens.revoke(token);
    }

    /// Pushes to every socket joined to `topic`, each with its channel's join_ref.
    pub async fn push_to_topic(
        &self,
        topic: &str,
        event: &str,
        payload: Value,
    ) -> anyhow::Result<()> {
        match self.core.registry.push_to_topic(topic, event, &payload) {
            0 => anyhow::bail!("cannot push {event:?}: no socket has joined {topic:?}"),
            _ => Ok(()),
        }
    }

    /// Sends a `control` push to the runner `runner_id`.
    pub async fn push_control(&self, runner_id: &str, control: Value) -> anyhow::Result<()> {
        self.push_to_topic(&format!("local_runner:{runner_id}"), "control", control)
            .await
    }

    /// Broadcasts to every subscriber of `topic` (null join_ref and ref); nobody may be listening.
    pub async fn broadcast(&self, topic: &str, event: &str, payload: Value) {
        self.core.registry.broadcast(topic, event, &payload);
    }

    /// Every client message except `phoenix` heartbeats, in arrival order.
    pub fn events(&self) -> Vec<RecordedEvent> {
        self.core.recorder.events()
    }

    pub fn events_for(&self, topic: &str) -> Vec<RecordedEvent> {
        let mut events = self.events();
        events.retain(|event| event.topic == topic);
        events
    }

    /// The first event, already recorded or still to come, that matches `pred`.
    pub async fn wait_for_event(
        &self,
        pred: impl Fn(&RecordedEvent) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<RecordedEvent> {
        self.core.recorder.wait_for(pred, timeout).await
    }

    pub fn clear_events(&self) {
        self.core.recorder.clear_events();
    }

    /// Abruptly closes every socket (no close frame); returns once they are closed.
    pub async fn drop_connections(&self) {
        let dropped = self.core.registry.disconnect_all().await;
        tracing::info!(dropped, "dropped connections");
    }

    /// Stops listening and drops every socket, waits `downtime`, then listens on the same port
    /// again. Channel state is lost; tokens, recorded events and chat messages are kept.
    pub async fn restart(&self, downtime: Duration) {
        self.core.restart(downtime).await;
    }

    pub fn set_fault(&self, fault: Fault) {
        self.core.faults.set(fault);
    }

    pub fn clear_faults(&self) {
        self.core.faults.clear();
    }

    /// Sends `text` verbatim as a text frame to every socket.
    pub async fn send_raw_text(&self, text: &str) {
        self.core.registry.send_raw_text(text);
    }

    pub fn connection_count(&self) -> usize {
        self.core.registry.len()
    }

    /// Every `phx_join` received, accepted or not.
    pub fn joins(&self) -> Vec<RecordedJoin> {
        self.core.recorder.joins()
    }

    /// Messages posted to one channel (by runners' `session:post_thread_message`), in seq order.
    pub fn chat_messages(&self, workspace: &str, channel: &str) -> Vec<ChatMessage> {
        lock(&self.core.chat).channel_messages(workspace, channel)
    }

    pub async fn shutdown(self) {
        self.core.shutdown().await;
    }
}

impl Drop for KandanTestServer {
    fn drop(&mut self) {
        self.core.abort();
    }
}
