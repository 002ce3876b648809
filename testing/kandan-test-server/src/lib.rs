//! A protocol-faithful fake Kandan server for tests and the local demo.
//!
//! It speaks Phoenix Channels V2 over `/socket/websocket` exactly as a Phoenix 1.8 server does
//! (so the official phoenix.js client works against it), serves the runner's OAuth and
//! validation endpoints, records everything clients send, and lets tests misbehave on purpose:
//! drop connections, restart on the same port, hold or delay replies, refuse joins.
//!
//! It also keeps a chat (protocol §5): runners bind to a channel with `session:bind`, post and
//! update rows, report message states and typing; tests post as humans
//! ([`KandanTestServer::post_user_message`]) and await what the runner wrote
//! ([`KandanTestServer::wait_for_thread`]). `GET /demo` shows a channel as a live chat page.
//!
//! Port previews (protocol §6.4): runners open a forward tunnel, and requests to
//! [`KandanTestServer::preview_url`] (`p<port>-<runnerId>.preview.localhost`) or
//! [`KandanTestServer::preview_path_url`] are streamed through it, WebSockets included.
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
mod bearer;
mod channels;
mod chat_admin;
mod chat_sessions;
mod chat_store;
mod conformance_topic;
mod connection;
mod consent_page;
mod demo_page;
mod editor_assets;
pub mod editor_runtime;
mod faults;
mod frame;
mod guard;
mod html;
mod listener;
mod oauth;
mod preview;
mod preview_http;
mod preview_websocket;
mod recorder;
mod registry;
mod runner_owners;
mod runner_session;
mod runner_topic;
mod server;
mod socket;
mod sync;
mod timestamp;
mod tokens;
mod tunnel;
mod tunnel_codec;
mod tunnel_connection;
mod tunnel_endpoint;
mod tunnels;
mod users;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

pub use chat_store::ChatMessage;
pub use editor_runtime::{EditorRuntimeDownload, EditorRuntimeFixture};
pub use faults::Fault;
pub use guard::{ADMIN_KEY_HEADER, ADMIN_KEY_PARAM, AdminKey};
pub use recorder::{RecordedEvent, RecordedJoin};

use chat_store::ChannelKey;
use server::ServerCore;
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
    /// Serve the live chat page `GET /demo` for this channel; `None`: `/demo` answers 404.
    pub demo: Option<DemoConfig>,
    /// How often the server `PING`s each forward tunnel (protocol §6.4: 15 s).
    pub tunnel_ping_interval: Duration,
    /// A forward tunnel that sends nothing for this long is dropped (protocol §6.4: 45 s).
    pub tunnel_idle_timeout: Duration,
    /// The per-run secret for `/__admin/*` and `/demo` (and for approving OAuth, which then
    /// always shows the consent page). The binary and `linzumi demo` always set one; tests
    /// that start the server in-process may leave it `None`. Either way only loopback
    /// `Host` names are served and state-changing requests from other origins are refused.
    pub admin_key: Option<AdminKey>,
}

/// The channel the demo page shows, and who its reply box and buttons post as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoConfig {
    pub workspace: String,
    pub channel: String,
    pub user_slug: String,
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
            demo: None,
            tunnel_ping_interval: Duration::from_secs(15),
            tunnel_idle_timeout: Duration::from_secs(45),
            admin_key: None,
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

    /// The demo page, `http://127.0.0.1:PORT/demo`, with `?key=<admin key>` when the server
    /// has one: the link to print and open.
    pub fn demo_url(&self) -> String {
        let mut url = format!("{}/demo", self.http_url());
        if let Some(key) = &self.core.admin_key {
            url.push_str(&format!("?{ADMIN_KEY_PARAM}={}", key.expose()));
        }
        url
    }

    /// The admin key, if the server has one (see [`ServerConfig::admin_key`]).
    pub fn admin_key(&self) -> Option<&str> {
        self.core.admin_key.as_ref().map(AdminKey::expose)
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

    /// Revokes every token of `user_slug`, however it was issued (OAuth included); returns
    /// how many. Open sockets stay up, as with [`Self::revoke_token`].
    pub fn revoke_user_tokens(&self, user_slug: &str) -> usize {
        self.core.tokens.revoke_user(user_slug)
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

    /// Abruptly closes every socket and forward tunnel (no close frame); returns once they are
    /// closed.
    pub async fn drop_connections(&self) {
        let dropped = self.core.disconnect_all().await;
        tracing::info!(dropped, "dropped connections");
    }

    /// Stops listening and drops every socket and tunnel, waits `downtime`, then listens on the
    /// same port again. Channel state is lost (runners must re-join and re-bind); tokens,
    /// recorded events, the chat, the runners' chat bindings and runner ownership are kept.
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

    /// Every message of one channel (posted by runners or people), in seq order, with its
    /// current body, payload and state.
    pub fn chat_messages(&self, workspace: &str, channel: &str) -> Vec<ChatMessage> {
        self.core
            .chat
            .messages(&ChannelKey::new(workspace, channel))
    }

    /// Posts `body` as `user_slug` (created on the fly if unknown), as a person does in Kandan:
    /// stored, then pushed as `session:message` to every runner bound to the channel.
    /// `thread_id: None` starts a new thread. Fails if the thread is not in the channel.
    pub async fn post_user_message(
        &self,
        workspace: &str,
        channel: &str,
        thread_id: Option<&str>,
        user_slug: &str,
        body: &str,
    ) -> anyhow::Result<ChatMessage> {
        let key = ChannelKey::new(workspace, channel);
        self.core
            .post_user_message(
                &key,
                thread_id.map(str::to_owned),
                user_slug,
                body.to_owned(),
            )
            .map_err(|err| {
                anyhow::anyhow!("cannot post to {workspace}/{channel} thread {thread_id:?}: {err}")
            })
    }

    /// One thread's messages in seq order (empty if there is no such thread).
    pub fn thread(&self, workspace: &str, channel: &str, thread_id: &str) -> Vec<ChatMessage> {
        self.core
            .chat
            .thread(&ChannelKey::new(workspace, channel), thread_id)
    }

    /// The channel's thread ids, oldest thread first.
    pub fn threads(&self, workspace: &str, channel: &str) -> Vec<String> {
        self.core.chat.threads(&ChannelKey::new(workspace, channel))
    }

    /// The channel's messages (all threads, seq order) as soon as `pred` holds for them —
    /// checked now and after every change to the chat, never by polling.
    pub async fn wait_for_thread(
        &self,
        workspace: &str,
        channel: &str,
        pred: impl Fn(&[ChatMessage]) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<Vec<ChatMessage>> {
        let key = ChannelKey::new(workspace, channel);
        self.core.chat.wait_for(&key, pred, timeout).await
    }

    /// How many times the message `seq` was replaced by `session:update_thread_message`
    /// (0 for an unknown message).
    pub fn message_updates(&self, workspace: &str, channel: &str, seq: i64) -> usize {
        self.core
            .chat
            .message(&ChannelKey::new(workspace, channel), seq)
            .map_or(0, |message| message.updated_count)
    }

    /// The runners whose `session:typing` flag is on in a thread.
    pub fn typing(&self, workspace: &str, channel: &str, thread_id: &str) -> Vec<String> {
        let mut typing = self.core.chat.typing(&ChannelKey::new(workspace, channel));
        typing.retain(|entry| entry.thread_id == thread_id);
        typing.into_iter().map(|entry| entry.runner_id).collect()
    }

    /// `http://p<port>-<runnerId>.preview.localhost:<server port>/`: the port's preview origin.
    /// Browsers resolve `*.localhost` to loopback themselves; Rust clients need
    /// `reqwest::ClientBuilder::resolve(host, server.addr())`.
    pub fn preview_url(&self, runner_id: &str, port: u16) -> String {
        preview::preview_url(self.core.addr.port(), runner_id, port)
    }

    /// `http://127.0.0.1:<server port>/preview/<runnerId>/<port>/`: the same preview by path.
    pub fn preview_path_url(&self, runner_id: &str, port: u16) -> String {
        format!("{}/preview/{runner_id}/{port}/", self.http_url())
    }

    /// Waits until `runner_id` has a live forward tunnel (checked now and on every tunnel
    /// change, never by polling).
    pub async fn wait_for_tunnel(&self, runner_id: &str, timeout: Duration) -> anyhow::Result<()> {
        self.core.tunnels.wait_connected(runner_id, timeout).await
    }

    pub fn tunnel_connected(&self, runner_id: &str) -> bool {
        self.core.tunnels.is_connected(runner_id)
    }

    /// How many times `runner_id` has opened a forward tunnel (accepted upgrades).
    pub fn tunnel_connections(&self, runner_id: &str) -> usize {
        self.core.tunnels.connections(runner_id)
    }

    /// Abruptly closes every forward tunnel at the TCP level; their open streams fail. Returns
    /// once the sockets are closed.
    pub async fn drop_tunnels(&self) {
        let dropped = self.core.tunnels.disconnect_all().await;
        tracing::info!(dropped, "dropped forward tunnels");
    }

    /// Offers `fixture` as the approved code-server runtime for its platform (replacing what
    /// was offered for that platform): `GET /api/v2/local-codex-runner/editor-runtime` answers
    /// its manifest and `/downloads/editor-runtime/<file>` its archive.
    pub fn set_editor_runtime(&self, fixture: EditorRuntimeFixture) {
        self.core.editor_runtimes.set(fixture);
    }

    /// Offers no editor runtime for any platform (the manifest endpoint answers 404).
    pub fn clear_editor_runtimes(&self) {
        self.core.editor_runtimes.clear();
    }

    /// How many editor runtime archives were served (good or spoiled), across all platforms.
    pub fn editor_runtime_downloads(&self) -> u32 {
        self.core.editor_runtimes.downloads_served()
    }

    /// Every editor runtime download request answered, refused ones included, in order.
    pub fn editor_runtime_download_log(&self) -> Vec<EditorRuntimeDownload> {
        self.core.editor_runtimes.download_log()
    }

    /// Serves `bytes` at `/editor-assets/<path>` (bearer-authenticated): the editor's
    /// collaboration extension and server. Returns the path to put in a control.
    pub fn set_editor_asset(&self, path: &str, bytes: Vec<u8>) -> String {
        self.core.editor_assets.set(path, bytes);
        format!(
            "{}/{}",
            editor_assets::ASSET_PREFIX,
            path.trim_start_matches('/')
        )
    }

    /// The editor asset paths fetched so far, in order.
    pub fn editor_assets_served(&self) -> Vec<String> {
        self.core.editor_assets.served()
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
