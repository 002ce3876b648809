//! The server's shared state — what every HTTP handler and socket sees — and the lifecycle of
//! its listening socket (start, restart on the same port, shutdown).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::{Router, middleware};

use crate::chat_sessions::ChatSessions;
use crate::chat_store::{Actor, ChannelKey, ChatError, ChatMessage, NewMessage};
use crate::editor_assets::{self, EditorAssets};
use crate::editor_runtime::{self, EditorRuntimes};
use crate::faults::Faults;
use crate::guard::{self, AdminKey};
use crate::listener::{self, RunningListener};
use crate::oauth::AuthorizationCodes;
use crate::recorder::Recorder;
use crate::registry::Registry;
use crate::runner_owners::RunnerOwners;
use crate::tokens::TokenStore;
use crate::tunnels::Tunnels;
use crate::users::Users;
use crate::{DemoConfig, ServerConfig, admin, demo_page, oauth, preview, socket, tunnel_endpoint};

pub(crate) struct ServerCore {
    pub(crate) auto_approve_oauth: bool,
    pub(crate) heartbeat_idle_timeout: Duration,
    pub(crate) tunnel_ping_interval: Duration,
    pub(crate) tunnel_idle_timeout: Duration,
    pub(crate) users: Users,
    pub(crate) tokens: TokenStore,
    pub(crate) oauth_codes: AuthorizationCodes,
    pub(crate) faults: Faults,
    pub(crate) recorder: Recorder,
    pub(crate) registry: Registry,
    /// The runners' live forward tunnels.
    pub(crate) tunnels: Tunnels,
    /// Who owns each runner id: server data, so it outlives sockets and restarts.
    pub(crate) runner_owners: RunnerOwners,
    /// The chat and the runners' bindings: server data, so they outlive sockets and restarts.
    pub(crate) chat: ChatSessions,
    /// The editor runtimes offered for download (test configuration).
    pub(crate) editor_runtimes: EditorRuntimes,
    /// The editor's collaboration assets (test configuration).
    pub(crate) editor_assets: EditorAssets,
    pub(crate) demo: Option<DemoConfig>,
    /// Needed for the admin API and the demo page (and to approve OAuth) when set.
    pub(crate) admin_key: Option<AdminKey>,
    /// The bound address; a restart reopens exactly this one.
    pub(crate) addr: SocketAddr,
    /// `None` once shut down. Held for the whole of a restart so restarts do not interleave.
    listener: tokio::sync::Mutex<Option<RunningListener>>,
}

impl ServerCore {
    pub(crate) async fn start(config: ServerConfig) -> anyhow::Result<Arc<ServerCore>> {
        let tcp = listener::bind(config.bind).await?;
        let core = Arc::new(ServerCore {
            auto_approve_oauth: config.auto_approve_oauth,
            heartbeat_idle_timeout: config.heartbeat_idle_timeout,
            tunnel_ping_interval: config.tunnel_ping_interval,
            tunnel_idle_timeout: config.tunnel_idle_timeout,
            users: Users::new(config.users),
            tokens: TokenStore::default(),
            oauth_codes: AuthorizationCodes::default(),
            faults: Faults::default(),
            recorder: Recorder::default(),
            registry: Registry::default(),
            tunnels: Tunnels::default(),
            runner_owners: RunnerOwners::default(),
            chat: ChatSessions::default(),
            editor_runtimes: EditorRuntimes::default(),
            editor_assets: EditorAssets::default(),
            demo: config.demo,
            admin_key: config.admin_key,
            addr: tcp.local_addr()?,
            listener: tokio::sync::Mutex::new(None),
        });
        let running = listener::spawn(tcp, router(Arc::clone(&core)));
        *core.listener.lock().await = Some(running);
        Ok(core)
    }

    /// Posts `body` as the user `user_slug` (created on the fly if unknown), as a human does in
    /// Kandan's UI: stored, then pushed to the runners bound to the channel.
    pub(crate) fn post_user_message(
        &self,
        key: &ChannelKey,
        thread_id: Option<String>,
        user_slug: &str,
        body: String,
    ) -> Result<ChatMessage, ChatError> {
        let user = self.users.find_or_create(user_slug);
        let new = NewMessage {
            thread_id,
            actor: Actor {
                slug: user.slug,
                user_id: user.id,
                runner_id: None,
            },
            body,
            payload: serde_json::Value::Null,
            reply_to_seq: None,
            client_id: None,
        };
        self.chat.post(&self.registry, key, new)
    }

    /// Drops every socket and forward tunnel; returns how many there were.
    pub(crate) async fn disconnect_all(&self) -> usize {
        let (sockets, tunnels) = tokio::join!(
            self.registry.disconnect_all(),
            self.tunnels.disconnect_all()
        );
        sockets + tunnels
    }

    /// Stops the listener. Tunnels are dropped at the same time: their streams feed the HTTP
    /// responses the listener waits for. Whatever connected meanwhile is dropped after.
    async fn stop_listening(&self, running: RunningListener) {
        tokio::join!(running.stop(), self.tunnels.disconnect_all());
        self.disconnect_all().await;
    }

    /// Stops accepting, drops every socket and tunnel (and with them all channel state), waits
    /// `downtime`, then listens on the same address again. Tokens, recorded events, the chat,
    /// the runners' chat bindings and runner ownership survive, as a real server's database
    /// would.
    pub(crate) async fn restart(self: &Arc<Self>, downtime: Duration) {
        let mut slot = self.listener.lock().await;
        let Some(running) = slot.take() else {
            tracing::warn!("restart requested after shutdown; ignoring");
            return;
        };
        self.stop_listening(running).await;
        tokio::time::sleep(downtime).await;
        match listener::bind(self.addr).await {
            Ok(tcp) => *slot = Some(listener::spawn(tcp, router(Arc::clone(self)))),
            Err(err) => {
                tracing::error!(%err, addr = %self.addr, "could not listen again after restart")
            }
        }
    }

    pub(crate) async fn shutdown(&self) {
        let running = self.listener.lock().await.take();
        match running {
            Some(running) => self.stop_listening(running).await,
            None => {
                self.disconnect_all().await;
            }
        }
    }

    /// Best-effort synchronous stop, for `Drop`.
    pub(crate) fn abort(&self) {
        if let Ok(mut slot) = self.listener.try_lock()
            && let Some(running) = slot.take()
        {
            running.abort();
        }
        self.registry.kill_all();
        self.tunnels.kill_all();
    }
}

/// The routes behind the checks of [`guard`]: the Host check outermost, then the preview
/// router, then (for the server's own routes) the Origin check, and the admin key on the
/// admin API and the demo page.
fn router(core: Arc<ServerCore>) -> Router {
    let keyed = || middleware::from_fn_with_state(Arc::clone(&core), guard::admin_key);
    Router::new()
        .merge(socket::routes())
        .merge(oauth::routes())
        .merge(tunnel_endpoint::routes())
        .merge(preview::routes())
        .merge(demo_page::routes().route_layer(keyed()))
        .merge(editor_runtime::routes())
        .merge(editor_assets::routes())
        .nest("/__admin", admin::routes().route_layer(keyed()))
        .with_state(Arc::clone(&core))
        .layer(middleware::from_fn(guard::same_origin))
        // Wraps every route and the fallback: preview hosts never reach them.
        .layer(middleware::from_fn_with_state(
            Arc::clone(&core),
            preview::dispatch,
        ))
        .layer(middleware::from_fn_with_state(core, guard::host))
}
