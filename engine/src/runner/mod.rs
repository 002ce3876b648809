//! The runner: joins `local_runner:<runnerId>`, keeps a Codex app-server available, and
//! connects the two (seed `runner.ts`). Controls from Kandan become Codex requests;
//! Codex notifications become `codex_notification` events; approval requests become
//! `codex_request` events answered by a control. A chat session, when bound, takes over
//! the chat-related controls and notifications.
//!
//! [`Runner::start`] returns once Kandan is joined and Codex is ready; the work then runs
//! in a task until [`Runner::stop`], which ends every child process it started.
pub mod allowed_cwd;
pub mod approvals;
pub mod controls;
pub mod event_log;
pub mod instance;
pub mod outbox;
pub mod state;
pub mod turns;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{info, warn};

use crate::codex::jsonrpc::{RpcError, codes};
use crate::codex::protocol::{Notification, ServerRequest};
use crate::codex::{
    AppServerSource, CapabilityToken, ClientInfo, CodexEvent, CodexSupervisor, RuntimeOptions,
    SupervisorEvent,
};
use crate::editor::collaboration::CollaborationAccess;
use crate::editor::runtime::RuntimeCache;
use crate::editor::runtime_source::{EditorRuntime, RuntimeSource, RuntimeUpdate};
use crate::editor::{EditorAddress, EditorContext, LocalEditor};
use crate::forwarding::control_http;
use crate::forwarding::local_http::LocalHttp;
use crate::forwarding::routes::Routes;
use crate::forwarding::tunnel::{ForwardTunnel, TunnelConfig};
use crate::forwarding::websocket_relay::WebSocketRelays;
use crate::kandan_url::KandanUrl;
use crate::phoenix::{
    Backoff, ChannelMessage, ClientConfig, ConnectError, JoinError, Lifecycle, PhoenixClient,
};
use crate::protocol::controls::StartLocalEditor;
use crate::protocol::{CHAT_MESSAGE_EVENT, CONTROL_EVENT, KandanControl, runner_topic};
use crate::session::driver::Input as SessionInput;
use crate::session::{ChannelSession, ChatEvent, SessionContext, SessionError, SessionOptions};
use allowed_cwd::AllowedRoot;
use approvals::{PendingApproval, PendingApprovals};
use controls::{CODEX_ERROR, ControlEnv, ControlOutcome};
use event_log::EventLog;
use outbox::Outbox;
use state::RunnerState;
use turns::ActiveTurns;

/// What the runner calls itself in its join payload (seed `runner.ts`).
pub const CLIENT_NAME: &str = "kandan-local-codex-runner";
/// How often the runner pushes a heartbeat between reconnects.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);
/// How long the first Codex app-server may take to come up.
const CODEX_START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct RunnerOptions {
    /// The Kandan socket (URL with token, timings, TLS).
    pub kandan: ClientConfig,
    /// The streaming forward tunnel; `None` leaves forwarding to the runner topic.
    pub tunnel: Option<TunnelConfig>,
    /// The access token, so that the event log can mask it wherever it appears.
    pub token: String,
    pub runner_id: String,
    pub cwd: PathBuf,
    pub codex: AppServerSource,
    pub runtime: RuntimeOptions,
    pub log_file: Option<PathBuf>,
    pub allowed_roots: Vec<AllowedRoot>,
    pub forward_ports: Vec<u16>,
    pub tool_status: Option<Value>,
    pub heartbeat_interval: Duration,
    pub codex_restart: Backoff,
    /// How often the app-server is pinged; one that stays silent for this long after a
    /// ping is taken as hung and restarted.
    pub codex_ping_interval: Duration,
    /// Bind a Kandan chat thread (`--workspace`/`--channel`).
    pub channel_session: Option<SessionOptions>,
    /// The local editor; `None` answers `start_local_editor` with a refusal.
    pub editor: Option<EditorOptions>,
}

/// Where the editor comes from and where it keeps its files.
pub struct EditorOptions {
    pub source: RuntimeSource,
    /// The runner's own editor folder (user data, extensions, collaboration assets).
    pub data_dir: PathBuf,
    /// Where collaboration assets come from.
    pub kandan: KandanUrl,
}

impl EditorOptions {
    /// `--code-server-bin`, or else the runtime Kandan approves (cached per user); the
    /// runner's default data folder.
    pub fn new(
        kandan: &KandanUrl,
        token: &str,
        runner_id: &str,
        code_server_bin: Option<PathBuf>,
    ) -> Self {
        let source = match code_server_bin {
            Some(bin) => RuntimeSource::Custom(bin),
            None => RuntimeSource::Kandan {
                cache: RuntimeCache::default_location(),
                kandan: kandan.clone(),
                token: token.to_owned(),
            },
        };
        EditorOptions {
            source,
            data_dir: EditorOptions::default_data_dir(runner_id),
            kandan: kandan.clone(),
        }
    }

    /// `<local data dir>/linzumi/editor/<runner id>`.
    pub fn default_data_dir(runner_id: &str) -> PathBuf {
        dirs::data_local_dir()
            .unwrap_or_else(std::env::temp_dir)
            .join("linzumi")
            .join("editor")
            .join(sanitize(runner_id))
    }
}

/// A runner id as one safe path component.
pub(crate) fn sanitize(runner_id: &str) -> String {
    runner_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl RunnerOptions {
    /// Options with the defaults for everything a person does not usually choose.
    pub fn new(
        kandan: &KandanUrl,
        token: String,
        runner_id: String,
        cwd: PathBuf,
        codex: AppServerSource,
    ) -> Self {
        let tunnel = TunnelConfig::new(kandan.forward_tunnel_url(&runner_id), token.clone(), None);
        let kandan = ClientConfig::new(kandan, &token);
        RunnerOptions {
            kandan,
            tunnel: Some(tunnel),
            token,
            runner_id,
            cwd,
            codex,
            runtime: RuntimeOptions::default(),
            log_file: None,
            allowed_roots: Vec::new(),
            forward_ports: Vec::new(),
            tool_status: None,
            heartbeat_interval: HEARTBEAT_INTERVAL,
            codex_restart: Backoff::rejoin(),
            codex_ping_interval: crate::codex::client::PING_INTERVAL,
            channel_session: None,
            editor: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(transparent)]
    Kandan(#[from] ConnectError),
    #[error(transparent)]
    Join(#[from] JoinError),
    #[error("Codex did not start: {0}")]
    Codex(String),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("the editor could not be set up: {0}")]
    Editor(String),
    #[error(transparent)]
    EventLog(#[from] event_log::EventLogError),
}

/// Who answered an approval request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalActor {
    /// Someone in Kandan (a control or a chat command), as Kandan names them.
    Kandan {
        slug: Option<String>,
        user_id: Option<i64>,
    },
    /// The person at this computer (the desktop notification).
    LocalOwner,
}

impl ApprovalActor {
    pub fn describe(&self) -> String {
        match self {
            ApprovalActor::Kandan {
                slug: Some(slug), ..
            } => format!("kandan:{slug}"),
            ApprovalActor::Kandan {
                user_id: Some(id), ..
            } => format!("kandan:user-{id}"),
            ApprovalActor::Kandan { .. } => "kandan".into(),
            ApprovalActor::LocalOwner => "local".into(),
        }
    }
}

/// Where the current app-server is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CodexEndpoint {
    pub url: String,
    /// What a client (the Codex TUI) must send to be let in; see [`CapabilityToken`].
    pub token: Option<CapabilityToken>,
    pub pid: Option<u32>,
}

/// What a front (CLI, desktop) may want to show.
#[derive(Debug, Clone, PartialEq)]
pub enum RunnerEvent {
    KandanOffline {
        reason: String,
    },
    KandanOnline,
    /// Kandan refused the token on a reconnect (HTTP 401/403: revoked or expired). The
    /// runner no longer reaches Kandan and does not retry: stop it and sign in again.
    KandanUnauthorized {
        reason: String,
    },
    CodexLost {
        message: String,
    },
    CodexReady {
        url: String,
        pid: Option<u32>,
    },
    /// A Codex approval request waits for an answer (from Kandan or this computer).
    ApprovalRequested {
        request_id: String,
        kind: String,
        summary: String,
        reason: Option<String>,
        /// The chat message whose turn asks, when the request comes from one.
        asked_in: Option<ChatOrigin>,
    },
    ApprovalResolved {
        request_id: String,
        approved: bool,
        by: String,
    },
    /// Codex no longer waits for this answer: take the prompt down.
    ApprovalWithdrawn {
        request_id: String,
    },
    /// A chat message became a Codex turn.
    TurnStarted {
        seq: i64,
        origin: ChatOrigin,
    },
    /// A chat message's turn ended (`processed` or `failed`).
    TurnFinished {
        seq: i64,
        status: String,
    },
    /// A dev server waits for the listen user's yes or no.
    PortForwardRequested {
        request_id: String,
        port: u16,
        command: String,
        cwd: Option<String>,
    },
    PortForwardResolved {
        request_id: String,
        approved: bool,
        by: String,
    },
    /// A forwarded port was withdrawn; Kandan was told (`forward_port_revoked`).
    PortForwardRevoked {
        port: u16,
        reason: RevokeReason,
    },
    /// The shared folder is gone (moved, deleted, or replaced by a link elsewhere): the
    /// turn that was about to start in it was refused, and no other will start there.
    FolderMissing {
        path: PathBuf,
    },
    /// The editor runtime changed state, or downloads.
    EditorRuntime(RuntimeUpdate),
    /// code-server serves the folder; Kandan's preview of this port reaches it (`path`
    /// opens the folder).
    EditorStarted {
        port: u16,
        path: String,
    },
    /// The editor exited on its own (a replaced or stopped editor reports nothing).
    EditorExited {
        reason: String,
    },
    Stopped,
}

/// Who wrote the chat message a turn or an approval comes from, and how it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatOrigin {
    pub seq: i64,
    /// The author's Kandan user name, when Kandan names them.
    pub author: Option<String>,
    /// The start of the message: its first line, at most [`ChatOrigin::EXCERPT_CHARS`]
    /// characters (with `…` when cut).
    pub excerpt: String,
}

impl ChatOrigin {
    pub const EXCERPT_CHARS: usize = 80;

    /// The origin of message `seq` by `author` with the text `body`.
    pub fn new(seq: i64, author: Option<String>, body: &str) -> ChatOrigin {
        let line = body.trim().lines().next().unwrap_or_default().trim();
        let mut excerpt: String = line.chars().take(Self::EXCERPT_CHARS).collect();
        if excerpt.len() < line.len() || body.trim().lines().nth(1).is_some() {
            excerpt.push('…');
        }
        ChatOrigin {
            seq,
            author,
            excerpt,
        }
    }
}

/// Why a forwarded port was withdrawn (the `reason` of `forward_port_revoked`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeReason {
    /// Another process listens on the port now.
    ListenerChanged,
    /// The owner stopped the preview ([`Runner::stop_preview`]).
    StoppedByOwner,
}

impl RevokeReason {
    /// The protocol's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            RevokeReason::ListenerChanged => "listener_changed",
            RevokeReason::StoppedByOwner => "stopped_by_owner",
        }
    }
}

pub struct Runner {
    instance_id: String,
    runner_id: String,
    codex: Arc<Mutex<CodexEndpoint>>,
    events: broadcast::Sender<RunnerEvent>,
    stop: Option<oneshot::Sender<oneshot::Sender<()>>>,
    log_file: Option<PathBuf>,
    session: Option<ChannelSession>,
    editor: Option<LocalEditor>,
    /// The shared folder, where [`Runner::open_editor`] opens the editor.
    cwd: PathBuf,
}

impl Runner {
    pub async fn start(mut options: RunnerOptions) -> Result<Runner, RunnerError> {
        crate::secrets::remember(&options.token);
        // First: a log that is refused stops the start before anything runs.
        let log = Arc::new(match &options.log_file {
            Some(path) => EventLog::open(path, vec![options.token.clone()])?,
            None => EventLog::disabled(),
        });
        let state = Arc::new(Mutex::new(RunnerState {
            cwd: options.cwd.clone(),
            allowed_roots: options.allowed_roots.clone(),
            shared_roots: allowed_cwd::shared_roots(&options.allowed_roots, &options.cwd),
            forward_ports: options
                .forward_ports
                .iter()
                .copied()
                .collect::<BTreeSet<_>>(),
            managed_ports: BTreeSet::new(),
            tool_status: options.tool_status.clone(),
            editor_runtime: None,
            editor: None,
            app_server_pid: None,
        }));
        let (outcomes_tx, outcomes) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(64);
        // Before connecting: nothing to clean up if the editor cannot be set up.
        let editor_parts = match options.editor.take() {
            Some(editor) => {
                let access = CollaborationAccess {
                    http: crate::http::client_for(&editor.kandan)
                        .map_err(|error| RunnerError::Editor(error.to_string()))?,
                    kandan: editor.kandan.clone(),
                    token: options.token.clone(),
                };
                let runtime = editor_runtime(editor.source, &state, &events, &outcomes_tx);
                if let Ok(mut state) = state.lock() {
                    state.editor_runtime = Some(runtime.status());
                }
                Some((runtime, access, editor.data_dir))
            }
            None => None,
        };
        let topic = runner_topic(&options.runner_id);

        let kandan = PhoenixClient::connect(options.kandan.clone()).await?;
        let join_state = state.clone();
        let joined = kandan
            .join(topic.clone(), move || join_payload(&join_state))
            .await;
        let joined = match joined {
            Ok(joined) => joined,
            Err(error) => {
                kandan.close().await;
                return Err(error.into());
            }
        };
        log.log(
            "kandan.joined",
            json!({"topic": topic, "response": joined.response}),
        );

        let (mut supervisor, mut codex_events) = CodexSupervisor::start(
            options.codex.clone(),
            ClientInfo::default(),
            options.codex_restart.clone(),
            options.codex_ping_interval,
        );
        let codex = match first_ready(&mut codex_events).await {
            Ok(endpoint) => {
                if let Ok(mut state) = state.lock() {
                    state.app_server_pid = endpoint.pid;
                }
                endpoint
            }
            Err(message) => {
                supervisor.shutdown().await;
                kandan.close().await;
                return Err(RunnerError::Codex(message));
            }
        };

        let local = LocalHttp::default();
        let tunnel = options.tunnel.clone().and_then(|mut config| {
            config.tls = config.tls.or_else(|| options.kandan.tls.clone());
            let ports = state.clone();
            start_tunnel(config, local.clone(), move || {
                ports.lock().map(|state| state.routes()).unwrap_or_default()
            })
        });
        let instance_id = format!("codex-{}", uuid::Uuid::new_v4());
        let runner_id = options.runner_id.clone();
        let (stop_tx, stop_rx) = oneshot::channel();
        let codex = Arc::new(Mutex::new(codex));
        let outbox = Outbox::new(kandan.clone(), topic, log.clone());
        let log_file = log.path().map(PathBuf::from);
        let lifecycle = kandan.lifecycle();
        let session = match options.channel_session.clone() {
            Some(session_options) => {
                let context = SessionContext {
                    options: session_options,
                    runner_id: options.runner_id.clone(),
                    instance_id: instance_id.clone(),
                    cwd: options.cwd.clone(),
                    runtime: options.runtime.clone(),
                    outbox: outbox.clone(),
                    codex: supervisor.client_watch(),
                    events: events.clone(),
                    log: log.clone(),
                    state: state.clone(),
                };
                match ChannelSession::attach(context).await {
                    Ok(session) => Some(session),
                    Err(error) => {
                        supervisor.shutdown().await;
                        kandan.close().await;
                        return Err(error.into());
                    }
                }
            }
            None => None,
        };
        let editor = editor_parts.map(|(runtime, access, data_dir)| {
            runtime.prepare_in_background();
            LocalEditor::new(EditorContext {
                instance_id: instance_id.clone(),
                runtime,
                data_dir,
                access,
                state: state.clone(),
                emit: emit_to(&outcomes_tx),
                events: events.clone(),
            })
        });
        let loop_cwd = options.cwd.clone();
        let loop_state = Loop {
            editor: editor.clone(),
            local,
            in_flight: control_http::InFlight::default(),
            starting: Arc::default(),
            relays: WebSocketRelays::default(),
            _tunnel: tunnel,
            outcomes: outcomes_tx,
            instance_id: instance_id.clone(),
            options,
            outbox,
            log,
            state,
            supervisor,
            turns: Arc::default(),
            approvals: Arc::default(),
            seq: 0,
            codex: codex.clone(),
            events: events.clone(),
            session: session.clone(),
        };
        let first_pid = codex.lock().ok().and_then(|endpoint| endpoint.pid);
        loop_state.announce_instance(first_pid, false);
        tokio::spawn(loop_state.run(joined.messages, codex_events, lifecycle, outcomes, stop_rx));
        Ok(Runner {
            instance_id,
            runner_id,
            codex,
            events,
            stop: Some(stop_tx),
            log_file,
            session,
            editor,
            cwd: loop_cwd,
        })
    }

    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    pub fn runner_id(&self) -> &str {
        &self.runner_id
    }

    /// The app-server right now: its `ws://` URL (for `codex --remote`) and process id.
    /// Both change when Codex is restarted.
    pub fn codex(&self) -> CodexEndpoint {
        self.codex
            .lock()
            .map(|endpoint| endpoint.clone())
            .unwrap_or_default()
    }

    pub fn log_file(&self) -> Option<&PathBuf> {
        self.log_file.as_ref()
    }

    pub fn events(&self) -> broadcast::Receiver<RunnerEvent> {
        self.events.subscribe()
    }

    /// The Codex thread the chat session drives, if one is bound.
    pub fn chat_codex_thread_id(&self) -> Option<String> {
        self.session.as_ref()?.codex_thread_id()
    }

    /// Answers a port-forward prompt from this computer; the first answer wins.
    pub async fn resolve_port_forward(
        &self,
        request_id: &str,
        approve: bool,
    ) -> Result<(), String> {
        match &self.session {
            Some(session) => session.resolve_port_forward(request_id, approve).await,
            None => Err("no chat session is bound".into()),
        }
    }

    /// Stops the preview of an approved dev-server port (the owner's "Stop preview"):
    /// Kandan may no longer forward to it and is told (`forward_port_revoked`, reason
    /// `stopped_by_owner`); the same listener is not offered again.
    pub async fn stop_preview(&self, port: u16) -> Result<(), String> {
        match &self.session {
            Some(session) => session.stop_preview(port).await,
            None => Err("no chat session is bound".into()),
        }
    }

    /// Answers a Codex approval request from this computer; the first answer wins.
    pub async fn resolve_approval(&self, request_id: &str, approve: bool) -> Result<(), String> {
        match &self.session {
            Some(session) => session.resolve_approval(request_id, approve).await,
            None => Err("no chat session is bound".into()),
        }
    }

    /// Where the editor serves, starting it on the shared folder first if none runs. A
    /// start goes the same way as Kandan's `start_local_editor`, so Kandan hears of it.
    pub async fn open_editor(&self) -> Result<EditorAddress, String> {
        let editor = self
            .editor
            .as_ref()
            .ok_or_else(|| "the editor is not enabled for this runner".to_owned())?;
        if let Some(address) = editor.running() {
            return Ok(address);
        }
        editor
            .start(StartLocalEditor {
                instance_id: Some(self.instance_id.clone()),
                request_id: None,
                cwd: self.cwd.display().to_string(),
                browser_base_url: None,
                collaboration: None,
            })
            .await
    }

    /// Declines pending approvals, ends Codex and every process it started, and leaves
    /// Kandan.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let (done_tx, done_rx) = oneshot::channel();
            if stop.send(done_tx).is_ok() {
                let _ = done_rx.await;
            }
        }
    }
}

/// The join `version` every seed release sends: it names the protocol, not the build.
const PROTOCOL_VERSION: &str = "0.0.1";

fn join_payload(state: &Mutex<RunnerState>) -> Value {
    let capabilities = state::capabilities_of(state);
    json!({
        "clientName": CLIENT_NAME,
        "version": PROTOCOL_VERSION,
        "runnerVersion": env!("CARGO_PKG_VERSION"),
        "capabilities": capabilities,
    })
}

async fn first_ready(
    events: &mut mpsc::UnboundedReceiver<SupervisorEvent>,
) -> Result<CodexEndpoint, String> {
    let wait = async {
        while let Some(event) = events.recv().await {
            match event {
                SupervisorEvent::Ready { address, pid, .. } => {
                    return Ok(CodexEndpoint {
                        url: address.url,
                        token: address.token,
                        pid,
                    });
                }
                SupervisorEvent::StartFailed { message, .. } => return Err(message),
                _ => {}
            }
        }
        Err("the Codex supervisor stopped".to_owned())
    };
    tokio::time::timeout(CODEX_START_TIMEOUT, wait)
        .await
        .unwrap_or_else(|_| Err(format!("not ready within {CODEX_START_TIMEOUT:?}")))
}

struct Loop {
    editor: Option<LocalEditor>,
    local: LocalHttp,
    in_flight: control_http::InFlight,
    starting: Arc<tokio::sync::Mutex<()>>,
    relays: WebSocketRelays,
    /// Kept for its lifetime: dropping it closes the tunnel.
    _tunnel: Option<ForwardTunnel>,
    /// Results of controls (and forwarding events) to push, in the order they come.
    outcomes: mpsc::UnboundedSender<ControlOutcome>,
    instance_id: String,
    options: RunnerOptions,
    outbox: Outbox,
    log: Arc<EventLog>,
    state: Arc<Mutex<RunnerState>>,
    supervisor: CodexSupervisor,
    turns: Arc<Mutex<ActiveTurns>>,
    approvals: Arc<Mutex<PendingApprovals>>,
    /// `codex_notification` sequence: strictly increasing for the runner's lifetime.
    seq: u64,
    codex: Arc<Mutex<CodexEndpoint>>,
    events: broadcast::Sender<RunnerEvent>,
    session: Option<ChannelSession>,
}

impl Loop {
    async fn run(
        mut self,
        mut controls: mpsc::UnboundedReceiver<ChannelMessage>,
        mut codex: mpsc::UnboundedReceiver<SupervisorEvent>,
        mut lifecycle: broadcast::Receiver<Lifecycle>,
        mut outcomes: mpsc::UnboundedReceiver<ControlOutcome>,
        mut stop: oneshot::Receiver<oneshot::Sender<()>>,
    ) {
        let mut heartbeat = tokio::time::interval(self.options.heartbeat_interval);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let done = loop {
            tokio::select! {
                Some(message) = controls.recv() => self.on_kandan_message(message),
                Some(event) = codex.recv() => self.on_codex(event),
                Some(outcome) = outcomes.recv() => self.on_outcome(outcome),
                event = lifecycle.recv() => self.on_lifecycle(event),
                _ = heartbeat.tick() => self.push_heartbeat(),
                done = &mut stop => break done.ok(),
            }
        };
        self.shutdown().await;
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    fn on_kandan_message(&mut self, message: ChannelMessage) {
        if message.event == CHAT_MESSAGE_EVENT {
            if let Some(session) = &self.session {
                let event = crate::json::reject_reserved_key(&message.payload)
                    .map_err(|error| error.to_string())
                    .and_then(|()| {
                        serde_json::from_value::<ChatEvent>(message.payload)
                            .map_err(|error| error.to_string())
                    });
                match event {
                    Ok(event) => session.send(SessionInput::Chat(event)),
                    Err(error) => {
                        warn!(%error, "dropped a malformed session:message");
                        self.log
                            .log("kandan.message_refused", json!({"message": error}));
                    }
                }
            }
            return;
        }
        if message.event != CONTROL_EVENT {
            return;
        }
        let control = match KandanControl::parse(&message.payload) {
            Ok(control) => control,
            Err(error) => {
                warn!(%error, "refused a control from Kandan");
                self.log.log(
                    "kandan.control_refused",
                    json!({"message": error.to_string(), "control": message.payload}),
                );
                // Name the control's type when it has one, so Kandan can match the error.
                let mut reply =
                    json!({"instanceId": self.instance_id, "message": error.to_string()});
                if let Some(kind) = message.payload.get("type").and_then(Value::as_str) {
                    reply["controlType"] = Value::String(kind.to_owned());
                }
                self.outbox.send(CODEX_ERROR, reply);
                return;
            }
        };
        self.log
            .log("kandan.control", json!({"control": message.payload}));
        if !control.targets(&self.instance_id) {
            self.log.log(
                "kandan.control_ignored",
                json!({"reason": "instance_id_mismatch", "instanceId": self.instance_id,
                    "controlInstanceId": control.instance_id(), "controlType": control.kind()}),
            );
            warn!(
                control = control.kind(),
                "ignored a control for another runner instance"
            );
            return;
        }
        let env = ControlEnv {
            instance_id: self.instance_id.clone(),
            codex: self.supervisor.client(),
            state: self.state.clone(),
            turns: self.turns.clone(),
            approvals: self.approvals.clone(),
            runtime: self.options.runtime.clone(),
            local: self.local.clone(),
            relays: self.relays.clone(),
            emit: emit_to(&self.outcomes),
            editor: self.editor.clone(),
            in_flight: self.in_flight.clone(),
            starting: self.starting.clone(),
        };
        let Some(control) = controls::relay_in_order(&env, control) else {
            return;
        };
        let outcomes = self.outcomes.clone();
        let session = self.session.clone();
        tokio::spawn(async move {
            // The chat session answers the controls it owns; the runner the rest.
            let handled = match session {
                Some(session) => {
                    let (reply, answer) = oneshot::channel();
                    session.send(SessionInput::Control(control.clone(), reply));
                    answer.await.ok().flatten()
                }
                None => None,
            };
            let outcome = match handled {
                Some(outcome) => outcome,
                None => controls::handle(env, control).await,
            };
            let _ = outcomes.send(outcome);
        });
    }

    fn on_outcome(&mut self, outcome: ControlOutcome) {
        match outcome {
            ControlOutcome::Reply { event, payload } => self.outbox.send(event, payload),
            ControlOutcome::InFlight {
                event,
                payload,
                permit,
            } => self.outbox.send_holding(event, payload, permit),
            ControlOutcome::Heartbeat => self.push_heartbeat(),
            ControlOutcome::HeartbeatAndReply { event, payload } => {
                self.push_heartbeat();
                self.outbox.send(event, payload);
            }
            ControlOutcome::KillInstance { reply } => {
                self.supervisor.restart();
                self.outbox.send(controls::CODEX_RESPONSE, reply);
            }
            ControlOutcome::Done => {}
        }
    }

    fn on_codex(&mut self, event: SupervisorEvent) {
        match event {
            SupervisorEvent::Codex(CodexEvent::Notification { method, params }) => {
                self.on_notification(method, params);
            }
            SupervisorEvent::Codex(CodexEvent::Request { id, method, params }) => {
                self.on_server_request(id, method, params);
            }
            SupervisorEvent::Codex(CodexEvent::Closed { .. }) => {}
            SupervisorEvent::Lost { message, requested } => {
                self.clear_codex_state();
                if let Some(session) = &self.session {
                    session.send(SessionInput::CodexLost {
                        message: message.clone(),
                    });
                }
                self.log.log(
                    "codex.lost",
                    json!({"message": message, "requested": requested}),
                );
                if !requested {
                    self.outbox.send(
                        CODEX_ERROR,
                        json!({"instanceId": self.instance_id, "message": format!("{message}; restarting Codex")}),
                    );
                }
                let reason = if requested {
                    instance::StopReason::Killed
                } else {
                    instance::StopReason::Exited
                };
                self.outbox.send(
                    instance::STOPPED,
                    instance::stopped_payload(&self.instance_id, reason, Some(&message)),
                );
                let _ = self.events.send(RunnerEvent::CodexLost { message });
            }
            SupervisorEvent::StartFailed { message, retry_in } => {
                self.log
                    .log("codex.start_failed", json!({"message": message}));
                self.outbox.send(
                    CODEX_ERROR,
                    json!({"instanceId": self.instance_id,
                        "message": format!("Codex did not start: {message}; retrying in {}s", retry_in.as_secs())}),
                );
            }
            SupervisorEvent::Ready {
                address,
                pid,
                restart,
            } => {
                let url = address.url.clone();
                info!(%url, restart, "Codex ready");
                if let Ok(mut state) = self.state.lock() {
                    state.app_server_pid = pid;
                }
                if let Ok(mut current) = self.codex.lock() {
                    *current = CodexEndpoint {
                        url: url.clone(),
                        token: address.token,
                        pid,
                    };
                }
                self.log.log(
                    "codex.ready",
                    json!({"url": url, "pid": pid, "restart": restart}),
                );
                let _ = self.events.send(RunnerEvent::CodexReady { url, pid });
                if restart && let Some(session) = &self.session {
                    session.send(SessionInput::CodexReady);
                }
                self.push_heartbeat();
                self.announce_instance(pid, restart);
            }
        }
    }

    /// `instance_started`, once the shared folders' threads are listed (in a task: Codex
    /// answers while the loop keeps serving).
    fn announce_instance(&self, pid: Option<u32>, restart: bool) {
        let Some(codex) = self.supervisor.client() else {
            return;
        };
        let shared = self
            .state
            .lock()
            .map(|state| state.shared_roots.clone())
            .unwrap_or_default();
        let instance_id = self.instance_id.clone();
        let cwd = self.options.cwd.clone();
        let outcomes = self.outcomes.clone();
        tokio::spawn(async move {
            let threads = instance::discover_threads(&codex, &shared).await;
            let _ = outcomes.send(ControlOutcome::Reply {
                event: instance::STARTED,
                payload: instance::started_payload(&instance_id, &cwd, pid, restart, threads),
            });
        });
    }

    fn on_notification(&mut self, method: String, params: Value) {
        self.seq += 1;
        match Notification::decode(&method, &params) {
            Ok(Notification::ServerRequestResolved(resolved)) => {
                // Codex withdrew the request (turn ended, interrupted, answered elsewhere).
                let key = approvals::request_key(&resolved.request_id);
                if let Ok(mut approvals) = self.approvals.lock() {
                    approvals.take(&key);
                }
            }
            Ok(notification) => {
                if let Ok(mut turns) = self.turns.lock() {
                    turns.observe(&notification);
                }
            }
            Err(error) => warn!(%method, %error, "Codex notification with an unexpected shape"),
        }
        let metadata = codex_ids(&params);
        self.log.log(
            "codex.notification",
            json!({"seq": self.seq, "method": method, "metadata": metadata}),
        );
        if let Some(session) = &self.session {
            session.send(SessionInput::Notification { method, params });
            return;
        }
        // The seed's `params ?? {}`.
        let params = if params.is_null() { json!({}) } else { params };
        self.outbox.send(
            "codex_notification",
            json!({"instanceId": self.instance_id, "seq": self.seq, "method": method,
                "params": params, "metadata": metadata, "receivedAt": now_iso()}),
        );
    }

    fn on_server_request(&mut self, id: Value, method: String, params: Value) {
        if let Some(session) = &self.session {
            session.send(SessionInput::Request { id, method, params });
            return;
        }
        let Some(codex) = self.supervisor.client() else {
            return;
        };
        let request = match ServerRequest::decode(&method, &params) {
            Ok(ServerRequest::Unsupported) => {
                let error = RpcError {
                    code: codes::METHOD_NOT_FOUND,
                    message: format!("the Linzumi runner does not handle {method}"),
                    data: None,
                };
                let _ = codex.respond_error(&id, &error);
                self.log
                    .log("codex.request_unsupported", json!({"method": method}));
                return;
            }
            Ok(request) => request,
            Err(error) => {
                let error = RpcError {
                    code: codes::INVALID_REQUEST,
                    message: format!("malformed {method}: {error}"),
                    data: None,
                };
                let _ = codex.respond_error(&id, &error);
                return;
            }
        };
        let request_id = match self.approvals.lock() {
            Ok(mut approvals) => approvals.insert(PendingApproval {
                rpc_id: id,
                method: method.clone(),
                request,
            }),
            Err(_) => return,
        };
        self.log.log(
            "codex.approval_requested",
            json!({"requestId": request_id, "method": method}),
        );
        self.outbox.send(
            "codex_request",
            json!({"instanceId": self.instance_id, "requestId": request_id, "method": method,
                "params": params, "metadata": codex_ids(&params), "receivedAt": now_iso()}),
        );
    }

    fn on_lifecycle(&mut self, event: Result<Lifecycle, broadcast::error::RecvError>) {
        match event {
            Ok(Lifecycle::Reconnected { generation }) => {
                self.log
                    .log("kandan.reconnected", json!({"generation": generation}));
                let _ = self.events.send(RunnerEvent::KandanOnline);
                self.push_heartbeat();
            }
            Ok(Lifecycle::Disconnected { reason }) => {
                self.log
                    .log("kandan.disconnected", json!({"message": reason}));
                let _ = self.events.send(RunnerEvent::KandanOffline { reason });
            }
            Ok(Lifecycle::Unauthorized { reason }) => {
                self.log
                    .log("kandan.unauthorized", json!({"message": reason}));
                let _ = self.events.send(RunnerEvent::KandanUnauthorized { reason });
            }
            Ok(Lifecycle::ChannelRejoined { topic }) if topic == self.outbox.topic() => {
                // Kandan dropped the chat messages meant for the topic while it was not
                // joined: the session binds again to catch up on them (protocol §5.1).
                if let Some(session) = &self.session {
                    session.send(SessionInput::KandanReconnected);
                }
            }
            _ => {}
        }
    }

    /// `model`/`reasoningEffort` are the chat session's, null without one (seed
    /// `channelSession?.model ?? null`); `fast` is the runner's.
    fn push_heartbeat(&self) {
        let capabilities = state::capabilities_of(&self.state);
        let chat = self.session.as_ref().and_then(ChannelSession::runtime);
        let (model, effort) = chat
            .map(|runtime| (runtime.model, runtime.reasoning_effort))
            .unwrap_or_default();
        self.outbox.send(
            "heartbeat",
            json!({"instanceId": self.instance_id, "cwd": self.options.cwd,
                "model": model, "reasoningEffort": effort,
                "fast": self.options.runtime.fast, "capabilities": capabilities}),
        );
    }

    /// The app-server is gone: its turns and approval requests went with it.
    fn clear_codex_state(&self) {
        if let Ok(mut turns) = self.turns.lock() {
            turns.clear();
        }
        if let Ok(mut approvals) = self.approvals.lock() {
            approvals.drain();
        }
    }

    async fn shutdown(&mut self) {
        if let Some(session) = &self.session {
            session.stop().await;
        }
        if let Some(editor) = &self.editor {
            editor.shutdown().await;
        }
        self.relays.close_all();
        self._tunnel = None;
        let pending = self
            .approvals
            .lock()
            .map(|mut approvals| approvals.drain())
            .unwrap_or_default();
        if let Some(codex) = self.supervisor.client() {
            for approval in pending {
                let _ = codex.respond(&approval.rpc_id, &approval.request.answer(false));
            }
        }
        self.supervisor.shutdown().await;
        self.outbox.send(
            instance::STOPPED,
            instance::stopped_payload(&self.instance_id, instance::StopReason::RunnerStopped, None),
        );
        self.log
            .log("runner.stopped", json!({"instanceId": self.instance_id}));
        self.outbox.client().close().await;
        let _ = self.events.send(RunnerEvent::Stopped);
    }
}

/// Pushes through the runner loop, in order with its other pushes.
fn emit_to(
    outcomes: &mpsc::UnboundedSender<ControlOutcome>,
) -> crate::forwarding::websocket_relay::Emit {
    let outcomes = outcomes.clone();
    crate::forwarding::websocket_relay::Emit::new(move |event, payload, permit| {
        let _ = outcomes.send(match permit {
            Some(permit) => ControlOutcome::InFlight {
                event,
                payload,
                permit: controls::InFlight(permit),
            },
            None => ControlOutcome::Reply { event, payload },
        });
    })
}

/// The editor runtime, reporting its state to Kandan (a heartbeat with the new
/// capabilities) and its state and progress to the fronts.
fn editor_runtime(
    source: RuntimeSource,
    state: &Arc<Mutex<RunnerState>>,
    events: &broadcast::Sender<RunnerEvent>,
    outcomes: &mpsc::UnboundedSender<ControlOutcome>,
) -> EditorRuntime {
    let state = state.clone();
    let events = events.clone();
    let outcomes = outcomes.clone();
    EditorRuntime::new(
        source,
        Arc::new(move |update| {
            if let RuntimeUpdate::Status(status) = &update {
                if let Ok(mut state) = state.lock() {
                    state.editor_runtime = Some(status.clone());
                }
                let _ = outcomes.send(ControlOutcome::Heartbeat);
            }
            let _ = events.send(RunnerEvent::EditorRuntime(update));
        }),
    )
}

/// Starts the forward tunnel, trusting the same roots as the Kandan socket.
fn start_tunnel(
    mut config: TunnelConfig,
    local: LocalHttp,
    ports: impl Fn() -> Routes + Send + Sync + 'static,
) -> Option<ForwardTunnel> {
    if config.url.scheme() == "wss" && config.tls.is_none() {
        match crate::tls::client_config_from_env() {
            Ok(tls) => config.tls = Some(tls),
            Err(error) => {
                warn!(%error, "no TLS trust for the forward tunnel; previews go over the runner topic only");
                return None;
            }
        }
    }
    Some(ForwardTunnel::start(config, Arc::new(ports), local))
}

/// The ids found in a notification's params (seed `extractCodexIds`).
pub fn codex_ids(params: &Value) -> Value {
    let mut ids = serde_json::Map::new();
    for key in ["threadId", "turnId", "itemId", "processId", "requestId"] {
        if let Some(value) = params.get(key) {
            ids.insert(key.into(), value.clone());
        }
    }
    Value::Object(ids)
}

fn now_iso() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_extracted_from_params() {
        assert_eq!(
            codex_ids(&json!({"threadId": "t", "turnId": "u", "itemId": "i", "delta": "x"})),
            json!({"threadId": "t", "turnId": "u", "itemId": "i"})
        );
        assert_eq!(codex_ids(&json!({"thread": {}})), json!({}));
    }
}
