//! The chat session task: binds the Kandan thread, turns the listen user's messages into
//! Codex turns one at a time, streams Codex's work back as rows, and carries approvals
//! both ways (seed `channelSession.ts`).
//!
//! All state lives in this task. Anything slow (posting a row, `turn/start`, re-binding)
//! runs as a spawned future whose result comes back as an input, so the loop never
//! blocks: an interrupt can arrive while a turn is still starting, and Codex's
//! notifications keep flowing while Kandan answers.
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{info, warn};

use super::approvals::{self, Approvals, PendingApproval};
use super::bounded_map::BoundedMap;
use super::chat_commands::ChatCommand;
use super::codex_items;
use super::folder_check::SharedFolder;
use super::intake::{self, ChatEvent, Intake, IntakeContext, ListenUser};
use super::message_queue::{MessageQueue, QueuedMessage};
use super::message_state::{self, MessageState, ProcessingReason};
use super::port_prompts::{self, PortPrompts};
use super::transcript::{RowKey, RowView, Transcript, Write};
use super::turn_state::{StartOutcome, TurnState};
use crate::codex::jsonrpc::{RpcError, codes};
use crate::codex::protocol::{
    Notification, ServerRequest, ThreadResumeParams, ThreadSetNameParams, ThreadStartParams,
    TurnInterruptParams, TurnStatus, TurnSteerParams, methods, text_input,
};
use crate::codex::{CodexClient, CodexError, RuntimeOptions};
use crate::phoenix::PushError;
use crate::ports::watcher::{self, PortWatcher};
use crate::ports::{PortCandidate, Review, listen_table};
use crate::protocol::controls::{Decision, KandanControl};
use crate::runner::controls::{CODEX_RESPONSE, ControlOutcome};
use crate::runner::event_log::EventLog;
use crate::runner::outbox::Outbox;
use crate::runner::state::RunnerState;
use crate::runner::{ApprovalActor, ChatOrigin, RevokeReason, RunnerEvent};

/// How often deltas are written to Kandan, unless `--stream-flush-ms` says otherwise.
pub const STREAM_FLUSH: Duration = Duration::from_millis(150);
/// How often "Codex is typing" is repeated while it works.
pub const TYPING_INTERVAL: Duration = Duration::from_secs(5);
/// How many turns' reply targets are remembered (seed `maxForwardedTurnIds`).
const TURN_MEMORY: usize = 64;
/// How long attaching may wait for the Codex app-server.
const CODEX_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct SessionOptions {
    pub workspace: String,
    pub channel: String,
    /// `--kandan-thread-id`: bind this thread instead of starting one.
    pub thread_id: Option<String>,
    pub listen_user: ListenUser,
    pub stream_flush: Duration,
    pub typing_interval: Duration,
    /// Offer dev servers Codex starts (seed: on for chat sessions).
    pub watch_ports: bool,
}

impl SessionOptions {
    pub fn new(workspace: String, channel: String, listen_user: ListenUser) -> SessionOptions {
        SessionOptions {
            workspace,
            channel,
            thread_id: None,
            listen_user,
            stream_flush: STREAM_FLUSH,
            typing_interval: TYPING_INTERVAL,
            watch_ports: true,
        }
    }
}

/// What the session needs from the runner.
pub struct SessionContext {
    pub options: SessionOptions,
    pub runner_id: String,
    pub instance_id: String,
    pub cwd: PathBuf,
    pub runtime: RuntimeOptions,
    pub outbox: Outbox,
    pub codex: watch::Receiver<Option<CodexClient>>,
    pub events: broadcast::Sender<RunnerEvent>,
    pub log: Arc<EventLog>,
    /// What the runner offers; approved dev servers join its forwarding ports.
    pub state: Arc<std::sync::Mutex<RunnerState>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the Codex app-server is not available: {0}")]
    Codex(String),
    #[error("Kandan refused to bind {workspace}/{channel}: {reason}")]
    Bind {
        workspace: String,
        channel: String,
        reason: String,
    },
    #[error("Kandan did not accept the thread's first message: {0}")]
    Root(String),
}

pub enum Input {
    Chat(ChatEvent),
    Control(KandanControl, oneshot::Sender<Option<ControlOutcome>>),
    Notification {
        method: String,
        params: Value,
    },
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    CodexLost {
        message: String,
    },
    CodexReady,
    KandanReconnected,
    Resolve {
        request_id: String,
        approve: bool,
        actor: ApprovalActor,
        reply: oneshot::Sender<Result<(), String>>,
    },
    ResolvePortForward {
        request_id: String,
        approve: bool,
        actor: ApprovalActor,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// The owner stops the preview of an approved port.
    StopPreview {
        port: u16,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Stop(oneshot::Sender<()>),
    PortPromptPosted {
        request_id: String,
        result: Result<i64, PushError>,
    },
    /// Codex had not yet made the turn it announced active; ask again.
    RetryInterrupt {
        turn_id: String,
        attempt: u32,
    },
    Posted {
        key: RowKey,
        result: Result<i64, PushError>,
    },
    TurnStart {
        seq: i64,
        result: Result<String, CodexError>,
    },
    ThreadReady {
        result: Result<String, String>,
    },
    Rebound {
        result: Result<Value, PushError>,
    },
}

/// The handle the runner uses.
#[derive(Clone)]
pub struct ChannelSession {
    inputs: mpsc::UnboundedSender<Input>,
    codex_thread: Arc<std::sync::Mutex<Option<String>>>,
    /// The chat's Codex settings as `update_session_settings` left them (heartbeats).
    runtime: Arc<std::sync::Mutex<RuntimeOptions>>,
}

impl ChannelSession {
    /// Starts the Codex thread, binds the Kandan thread (posting its root when there is
    /// none), and starts the session task.
    pub async fn attach(context: SessionContext) -> Result<ChannelSession, SessionError> {
        let codex = wait_for_codex(&context.codex).await?;
        let codex_thread = resume_or_start(&codex, &context.runtime, &context.cwd, None)
            .await
            .map_err(SessionError::Codex)?;
        // Named after the chat, which also makes the thread resumable by the Codex TUI
        // before its first turn.
        let name = ThreadSetNameParams {
            thread_id: codex_thread.clone(),
            name: format!(
                "Kandan {}/{}",
                context.options.workspace, context.options.channel
            ),
        };
        if let Err(error) = codex
            .call::<_, Value>(methods::THREAD_NAME_SET, &name)
            .await
        {
            warn!(%error, "could not name the Codex thread");
        }
        let options = &context.options;
        let bound = context
            .outbox
            .request(
                "session:bind",
                json!({"instanceId": context.instance_id, "workspace": options.workspace,
                    "channel": options.channel, "thread_id": options.thread_id,
                    "after_seq": null, "listen_user": options.listen_user.slug()}),
            )
            .await
            .map_err(|error| SessionError::Bind {
                workspace: options.workspace.clone(),
                channel: options.channel.clone(),
                reason: error.to_string(),
            })?;
        let cursor_seq = bound.get("cursor_seq").and_then(Value::as_i64).unwrap_or(0);
        let listen_user_id = bound.get("listen_user_id").and_then(Value::as_i64);
        let (mut thread_id, mut root_seq) = (
            bound
                .get("thread_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            bound.get("root_seq").and_then(Value::as_i64),
        );
        if thread_id.is_none() {
            let root = post_root(&context, &codex_thread).await?;
            thread_id = Some(root.1);
            root_seq = Some(root.0);
        }
        let (inputs, receiver) = mpsc::unbounded_channel();
        let shared_thread = Arc::new(std::sync::Mutex::new(Some(codex_thread.clone())));
        let shared_runtime = Arc::new(std::sync::Mutex::new(context.runtime.clone()));
        context.log.log(
            "session.bound",
            json!({"workspace": options.workspace, "channel": options.channel,
                "thread_id": thread_id, "root_seq": root_seq, "cursor_seq": cursor_seq,
                "codex_thread_id": codex_thread}),
        );
        let (port_watcher, offers) = if context.options.watch_ports {
            let state = context.state.clone();
            let (watcher, offers) = PortWatcher::start(
                Arc::new(move || {
                    let pid = state.lock().ok().and_then(|state| state.app_server_pid);
                    pid.into_iter().collect()
                }),
                listen_table::system(),
                watcher::SCAN_INTERVAL,
                watcher::DEBOUNCE,
            );
            (Some(watcher), Some(offers))
        } else {
            (None, None)
        };
        let mut port_prompts = PortPrompts::default();
        if let Ok(state) = context.state.lock() {
            // The owner's --forward-port ports are approved ports: kept while their
            // first listener stays, revoked and asked again when another one takes over.
            for port in &state.forward_ports {
                port_prompts.decisions.approved.insert(*port, None);
            }
        }
        let driver = Driver {
            inputs: inputs.clone(),
            port_prompts,
            _port_watcher: port_watcher,
            listen_user_id,
            thread_id,
            root_seq: root_seq.unwrap_or(cursor_seq),
            cursor_seq,
            last_seen_seq: cursor_seq,
            codex_thread: Some(codex_thread),
            codex_ready: true,
            shared_thread: shared_thread.clone(),
            shared_runtime: shared_runtime.clone(),
            runtime: context.runtime.clone(),
            turn: TurnState::Idle,
            active: None,
            completing: None,
            reason: None,
            queue: MessageQueue::default(),
            transcript: Transcript::default(),
            approvals: Approvals::default(),
            reply_targets: BoundedMap::new(TURN_MEMORY),
            tui_turns: HashSet::new(),
            flush_at: None,
            typing: false,
            closed: false,
            folder: SharedFolder::remember(&context.cwd),
            folder_missing: false,
            context,
        };
        tokio::spawn(driver.run(receiver, offers));
        Ok(ChannelSession {
            inputs,
            codex_thread: shared_thread,
            runtime: shared_runtime,
        })
    }

    pub fn send(&self, input: Input) {
        // After a stop the task is gone; late inputs have nowhere to go.
        let _ = self.inputs.send(input);
    }

    /// The chat's current Codex settings.
    pub fn runtime(&self) -> Option<RuntimeOptions> {
        self.runtime.lock().ok().map(|runtime| runtime.clone())
    }

    /// The Codex thread the chat drives (for opening the Codex TUI on it).
    pub fn codex_thread_id(&self) -> Option<String> {
        self.codex_thread
            .lock()
            .ok()
            .and_then(|thread| thread.clone())
    }

    /// Answers an approval request from this computer (the desktop notification).
    pub async fn resolve_approval(&self, request_id: &str, approve: bool) -> Result<(), String> {
        let (reply, answer) = oneshot::channel();
        self.send(Input::Resolve {
            request_id: request_id.to_owned(),
            approve,
            actor: ApprovalActor::LocalOwner,
            reply,
        });
        answer
            .await
            .unwrap_or_else(|_| Err("the chat session has stopped".into()))
    }

    /// Answers a port-forward prompt from this computer; the first answer wins.
    pub async fn resolve_port_forward(
        &self,
        request_id: &str,
        approve: bool,
    ) -> Result<(), String> {
        let (reply, answer) = oneshot::channel();
        self.send(Input::ResolvePortForward {
            request_id: request_id.to_owned(),
            approve,
            actor: ApprovalActor::LocalOwner,
            reply,
        });
        answer
            .await
            .unwrap_or_else(|_| Err("the chat session has stopped".into()))
    }

    /// Withdraws an approved port from Kandan (the owner's "Stop preview").
    pub async fn stop_preview(&self, port: u16) -> Result<(), String> {
        let (reply, answer) = oneshot::channel();
        self.send(Input::StopPreview { port, reply });
        answer
            .await
            .unwrap_or_else(|_| Err("the chat session has stopped".into()))
    }

    pub async fn stop(&self) {
        let (reply, done) = oneshot::channel();
        self.send(Input::Stop(reply));
        let _ = done.await;
    }
}

struct Completing {
    turn_id: String,
    seq: i64,
    outcome: MessageState,
}

struct Driver {
    context: SessionContext,
    inputs: mpsc::UnboundedSender<Input>,
    port_prompts: PortPrompts,
    /// Kept for its lifetime: dropping it stops the scans.
    _port_watcher: Option<PortWatcher>,
    listen_user_id: Option<i64>,
    thread_id: Option<String>,
    root_seq: i64,
    cursor_seq: i64,
    last_seen_seq: i64,
    /// The Codex thread; kept across an app-server restart so it can be resumed.
    codex_thread: Option<String>,
    codex_ready: bool,
    shared_thread: Arc<std::sync::Mutex<Option<String>>>,
    shared_runtime: Arc<std::sync::Mutex<RuntimeOptions>>,
    runtime: RuntimeOptions,
    turn: TurnState,
    /// The chat message of the current turn.
    active: Option<QueuedMessage>,
    completing: Option<Completing>,
    /// The processing reason last published for the active message.
    reason: Option<ProcessingReason>,
    queue: MessageQueue,
    transcript: Transcript,
    approvals: Approvals,
    /// Which chat message each turn's rows reply to.
    reply_targets: BoundedMap<String, i64>,
    /// Turns typed in the Codex TUI on the same thread.
    tui_turns: HashSet<String>,
    flush_at: Option<Instant>,
    typing: bool,
    closed: bool,
    /// The shared folder; once it is found missing no turn starts.
    folder: SharedFolder,
    folder_missing: bool,
}

impl Driver {
    async fn run(
        mut self,
        mut inputs: mpsc::UnboundedReceiver<Input>,
        mut offers: Option<mpsc::UnboundedReceiver<PortCandidate>>,
    ) {
        let mut typing = tokio::time::interval(self.context.options.typing_interval);
        typing.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !self.closed {
            let flush_at = self.flush_at;
            tokio::select! {
                input = inputs.recv() => match input {
                    Some(input) => self.on_input(input),
                    None => self.stop(),
                },
                Some(offer) = next_offer(&mut offers) => self.on_port_offer(offer),
                () = sleep_until(flush_at) => self.flush(),
                _ = typing.tick(), if self.working() => self.push_typing(true),
            }
        }
    }

    fn on_input(&mut self, input: Input) {
        match input {
            Input::Chat(event) => self.on_chat(event),
            Input::Control(control, reply) => {
                let _ = reply.send(self.on_control(control));
            }
            Input::Notification { method, params } => self.on_notification(&method, &params),
            Input::Request { id, method, params } => self.on_request(id, &method, &params),
            Input::CodexLost { message } => self.on_codex_lost(&message),
            Input::CodexReady => self.on_codex_ready(),
            Input::KandanReconnected => self.rebind(),
            Input::Resolve {
                request_id,
                approve,
                actor,
                reply,
            } => {
                let _ = reply.send(self.resolve(&request_id, None, approve, &actor));
            }
            Input::ResolvePortForward {
                request_id,
                approve,
                actor,
                reply,
            } => {
                let _ = reply.send(
                    self.resolve_port_forward(&request_id, approve, &actor)
                        .map(|_| ()),
                );
            }
            Input::StopPreview { port, reply } => {
                let _ = reply.send(self.stop_preview(port));
            }
            Input::Stop(done) => {
                self.stop();
                let _ = done.send(());
            }
            Input::Posted { key, result } => self.on_posted(&key, result),
            Input::PortPromptPosted { request_id, result } => {
                self.on_port_prompt_posted(&request_id, result);
            }
            Input::RetryInterrupt { turn_id, attempt } => {
                if matches!(&self.turn, TurnState::Active { turn_id: active, .. } if *active == turn_id)
                {
                    self.send_interrupt_attempt(turn_id, attempt);
                }
            }
            Input::TurnStart { seq, result } => self.on_turn_start(seq, result),
            Input::ThreadReady { result } => self.on_thread_ready(result),
            Input::Rebound { result } => match result {
                Ok(reply) => self
                    .context
                    .log
                    .log("session.rebound", json!({"reply": reply})),
                Err(error) => warn!(%error, "could not bind the Kandan thread again"),
            },
        }
    }

    fn working(&self) -> bool {
        !self.turn.is_idle() || !self.tui_turns.is_empty()
    }

    // ---- chat ---------------------------------------------------------------------------

    fn on_chat(&mut self, event: ChatEvent) {
        let seen = event.seq <= self.last_seen_seq;
        self.last_seen_seq = self.last_seen_seq.max(event.seq);
        let context = IntakeContext {
            bound_thread: self.thread_id.as_deref(),
            cursor_seq: self.cursor_seq,
            listen: &self.context.options.listen_user,
        };
        let intake = intake::classify(&event, &context, seen);
        let in_thread = event.thread_id.is_some() && event.thread_id == self.thread_id;
        match intake {
            Intake::Ignore(reason) => {
                self.context.log.log(
                    "session.message_ignored",
                    json!({"seq": event.seq, "reason": reason, "actor_slug": event.actor_slug}),
                );
                // Only messages a person wrote in this thread get a visible "ignored".
                if in_thread && reason == "not_listen_user" {
                    self.publish_state_for(&event, &MessageState::Ignored(reason.into()));
                }
            }
            Intake::Command(Err(reason)) => {
                self.publish_state_for(&event, &MessageState::Failed(reason));
            }
            Intake::Command(Ok(command)) => {
                let state = match self.on_command(command, &event) {
                    Ok(()) => MessageState::Processed,
                    Err(reason) => MessageState::Failed(reason),
                };
                self.publish_state_for(&event, &state);
            }
            Intake::Turn => {
                let message = QueuedMessage {
                    seq: event.seq,
                    actor_slug: event.actor_slug,
                    actor_user_id: event.actor_user_id,
                    body: event.body,
                };
                self.context.log.log(
                    "session.message_queued",
                    json!({"seq": message.seq, "queue_depth": self.queue.len() + 1}),
                );
                self.publish_state(message.seq, &message, &MessageState::Queued);
                self.queue.enqueue(message);
                self.drain();
            }
        }
    }

    fn on_command(&mut self, command: ChatCommand, event: &ChatEvent) -> Result<(), String> {
        let actor = ApprovalActor::Kandan {
            slug: event.actor_slug.clone(),
            user_id: event.actor_user_id,
        };
        match command {
            ChatCommand::Approve(id) => self.resolve(&id, None, true, &actor),
            ChatCommand::Deny(id) => self.resolve(&id, None, false, &actor),
            ChatCommand::Interrupt => self.interrupt_active(),
            ChatCommand::Steer(text) => self.steer(text),
            ChatCommand::ApprovePortForward(id) => {
                self.resolve_port_forward(&id, true, &actor).map(|_| ())
            }
            ChatCommand::DenyPortForward(id) => {
                self.resolve_port_forward(&id, false, &actor).map(|_| ())
            }
        }
    }

    /// Starts the next queued message's turn when nothing else is running.
    fn drain(&mut self) {
        if !self.turn.is_idle()
            || self.completing.is_some()
            || !self.tui_turns.is_empty()
            || !self.codex_ready
            || self.folder_missing
        {
            return;
        }
        let (Some(codex), Some(codex_thread)) = (self.codex(), self.codex_thread.clone()) else {
            return;
        };
        let Some(message) = self.queue.dequeue() else {
            if self.typing {
                self.push_typing(false);
            }
            return;
        };
        let seq = message.seq;
        if !self.folder.intact() {
            self.refuse_missing_folder(&message);
            return;
        }
        self.turn = TurnState::Starting {
            queued_seq: seq,
            interrupt_after_start: false,
        };
        self.set_reason(&message, ProcessingReason::StartingTurn);
        let _ = self.context.events.send(RunnerEvent::TurnStarted {
            seq,
            origin: ChatOrigin::new(seq, message.actor_slug.clone(), &message.body),
        });
        self.active = Some(message.clone());
        self.push_typing(true);
        let params = self.runtime.turn_overrides(
            &codex_thread,
            vec![text_input(&message.body)],
            &self.context.cwd,
        );
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            let result = match params {
                Ok(params) => codex
                    .call::<_, crate::codex::protocol::TurnResult>(methods::TURN_START, &params)
                    .await
                    .map(|result| result.turn.id),
                Err(error) => Err(CodexError::Decode {
                    method: methods::TURN_START.into(),
                    reason: error.to_string(),
                }),
            };
            let _ = inputs.send(Input::TurnStart { seq, result });
        });
    }

    /// The shared folder was moved, deleted or replaced: `message` fails with a reason its
    /// author can read, the owner's front hears of it, and no later turn starts.
    fn refuse_missing_folder(&mut self, message: &QueuedMessage) {
        self.folder_missing = true;
        warn!(path = %self.folder.path().display(), "the shared folder is gone; no turn starts");
        self.context
            .log
            .log("session.folder_missing", json!({"seq": message.seq}));
        let failed = MessageState::Failed(
            "the shared folder is no longer on the owner's computer (moved or deleted)".into(),
        );
        self.publish_state(message.seq, message, &failed);
        let _ = self.context.events.send(RunnerEvent::FolderMissing {
            path: self.folder.path().to_owned(),
        });
        self.push_typing(false);
    }

    fn on_turn_start(&mut self, seq: i64, result: Result<String, CodexError>) {
        match result {
            Ok(turn_id) => {
                if self.turn.owns_turn(&turn_id) {
                    // turn/started already told us.
                    return;
                }
                self.turn_known(turn_id);
            }
            Err(error) => {
                if self.turn.interruptible_queued_seq() != Some(seq) {
                    return;
                }
                let message = self.active.take();
                self.turn = TurnState::Idle;
                self.reason = None;
                if let CodexError::Rpc { error: rpc, .. } = &error
                    && crate::codex::thread_not_loaded(&rpc.message)
                    && let Some(message) = message
                {
                    // The Codex thread is gone: start a new one and retry this message.
                    warn!(%error, "the Codex thread was lost; starting a new one");
                    self.queue.requeue_front(message);
                    self.restart_codex_thread(None);
                    return;
                }
                if let (CodexError::Closed { .. }, Some(message)) = (&error, &message) {
                    // The app-server went away before it took the turn: the message waits
                    // for the next one (the supervisor is starting it) instead of failing.
                    warn!(%error, "Codex went away before starting the turn; it will be retried");
                    self.queue.requeue_front(message.clone());
                    self.publish_state(seq, message, &MessageState::Queued);
                    return;
                }
                if let Some(message) = message {
                    let failed =
                        MessageState::Failed(format!("Codex could not start the turn: {error}"));
                    self.publish_state(seq, &message, &failed);
                    let _ = self.context.events.send(RunnerEvent::TurnFinished {
                        seq,
                        status: failed.status_name().into(),
                    });
                }
                self.drain();
            }
        }
    }

    /// The session's turn now has an id (from turn/start's answer or turn/started).
    fn turn_known(&mut self, turn_id: String) {
        match self.turn.started(turn_id.clone()) {
            StartOutcome::Run => {
                if let Some(seq) = self.turn.queued_seq_for_turn(&turn_id) {
                    self.reply_targets.insert(turn_id, seq);
                }
            }
            StartOutcome::InterruptNow => {
                if let Some(seq) = self.turn.queued_seq_for_turn(&turn_id) {
                    self.reply_targets.insert(turn_id.clone(), seq);
                }
                self.send_interrupt(turn_id);
            }
            StartOutcome::Stale => {}
        }
    }

    // ---- codex --------------------------------------------------------------------------

    fn on_notification(&mut self, method: &str, params: &Value) {
        let notification = match Notification::decode(method, params) {
            Ok(notification) => notification,
            Err(error) => {
                warn!(%method, %error, "Codex notification with an unexpected shape");
                return;
            }
        };
        if let Notification::ServerRequestResolved(resolved) = &notification {
            if let Some(approval) = self.approvals.take_by_rpc_id(&resolved.request_id) {
                self.withdraw(&approval);
            }
            return;
        }
        let thread = params.get("threadId").and_then(Value::as_str);
        if thread.is_none() || thread != self.codex_thread.as_deref() {
            return;
        }
        match &notification {
            Notification::TurnStarted(event) => {
                let turn_id = event.turn.id.clone();
                if matches!(self.turn, TurnState::Starting { .. }) {
                    self.turn_known(turn_id);
                } else if self.turn.is_idle() && !self.reply_targets.contains_key(&turn_id) {
                    // A turn this session did not start: typed in the Codex TUI.
                    info!(%turn_id, "mirroring a turn typed in the Codex TUI");
                    self.tui_turns.insert(turn_id.clone());
                    self.reply_targets.insert(turn_id, self.root_seq);
                    self.push_typing(true);
                }
                return;
            }
            Notification::TurnCompleted(event) => {
                let message = event.turn.error.as_ref().map(|error| error.message.clone());
                self.on_turn_completed(&event.turn.id, event.turn.status, message);
                return;
            }
            _ => {}
        }
        let Some(turn_id) = params.get("turnId").and_then(Value::as_str) else {
            return;
        };
        let Some(&reply_to) = self.reply_targets.get(turn_id) else {
            return;
        };
        let mirror = self.tui_turns.contains(turn_id);
        if codex_items::apply(&mut self.transcript, &notification, reply_to, mirror).arm_flush {
            self.arm_flush();
        }
        if let Some(reason) = message_state::reason_for_notification(method, params)
            && self.turn.owns_turn(turn_id)
            && self.approvals.is_empty()
            && let Some(message) = self.active.clone()
        {
            self.set_reason(&message, reason);
        }
    }

    fn on_turn_completed(&mut self, turn_id: &str, status: TurnStatus, error: Option<String>) {
        let Some(&reply_to) = self.reply_targets.get(turn_id) else {
            return;
        };
        self.transcript.finish_turn(turn_id);
        if status == TurnStatus::Failed {
            let message = error.clone().unwrap_or_else(|| "the turn failed".into());
            codex_items::turn_failed(&mut self.transcript, turn_id, reply_to, &message);
        }
        for approval in self.approvals.take_for_turn(turn_id) {
            self.answer_codex(&approval, false);
            self.withdraw(&approval);
        }
        if self.tui_turns.remove(turn_id) {
            self.flush();
            return;
        }
        let Some(seq) = self.turn.complete(turn_id) else {
            return;
        };
        let outcome = match status {
            TurnStatus::Completed | TurnStatus::InProgress => MessageState::Processed,
            TurnStatus::Interrupted => MessageState::Failed("interrupted".into()),
            TurnStatus::Failed => MessageState::Failed(format!(
                "Codex turn failed: {}",
                error.unwrap_or_else(|| "no reason given".into())
            )),
        };
        let _ = self.context.events.send(RunnerEvent::TurnFinished {
            seq,
            status: outcome.status_name().into(),
        });
        self.completing = Some(Completing {
            turn_id: turn_id.to_owned(),
            seq,
            outcome,
        });
        // Everything still pending goes out before the message is marked done.
        self.flush();
        self.finish_if_settled();
    }

    /// Marks the completing turn's message done once all its rows are written.
    fn finish_if_settled(&mut self) {
        let Some(completing) = &self.completing else {
            return;
        };
        if !self.transcript.turn_settled(&completing.turn_id) {
            return;
        }
        let Some(completing) = self.completing.take() else {
            return;
        };
        if let Some(message) = self.active.take() {
            self.publish_state(completing.seq, &message, &completing.outcome);
        }
        self.context.log.log(
            "session.turn_finished",
            json!({"seq": completing.seq, "turn_id": completing.turn_id}),
        );
        self.turn = TurnState::Idle;
        self.reason = None;
        self.drain();
    }

    fn on_request(&mut self, id: Value, method: &str, params: &Value) {
        let Some(codex) = self.codex() else {
            return;
        };
        let request = match ServerRequest::decode(method, params) {
            Ok(ServerRequest::Unsupported) => {
                let _ = codex.respond_error(
                    &id,
                    &RpcError {
                        code: codes::METHOD_NOT_FOUND,
                        message: format!("the Linzumi runner does not handle {method}"),
                        data: None,
                    },
                );
                return;
            }
            Ok(request) => request,
            Err(error) => {
                let _ = codex.respond_error(
                    &id,
                    &RpcError {
                        code: codes::INVALID_REQUEST,
                        message: format!("malformed {method}: {error}"),
                        data: None,
                    },
                );
                return;
            }
        };
        let turn_id = params
            .get("turnId")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(&source_seq) = self.reply_targets.get(turn_id) else {
            // Nobody in Kandan could answer it: Codex gets the seed's error rather than
            // waiting forever, and the event log says so.
            let error = approvals::without_source(method);
            warn!("{}", error.message);
            self.context.log.log(
                "session.approval_without_source",
                json!({"method": method, "error": error.message}),
            );
            let _ = codex.respond_error(&id, &error);
            return;
        };
        let prompt = approvals::prompt(
            &id,
            method,
            params,
            &request,
            &self.context.options.listen_user,
            self.listen_user_id,
        );
        let approval = PendingApproval {
            rpc_id: id,
            source_seq,
            turn_id: turn_id.to_owned(),
            request,
            prompt: prompt.clone(),
        };
        self.context.log.log(
            "session.approval_requested",
            json!({"request_id": prompt.request_id, "kind": prompt.kind, "source_seq": source_seq}),
        );
        let state = MessageState::AwaitingApproval(prompt.clone());
        self.publish_state_fields(source_seq, None, &state);
        let asked_in = self
            .active
            .as_ref()
            .filter(|message| message.seq == source_seq)
            .map(|message| ChatOrigin::new(message.seq, message.actor_slug.clone(), &message.body));
        let _ = self.context.events.send(RunnerEvent::ApprovalRequested {
            request_id: prompt.request_id.clone(),
            kind: prompt.kind.clone(),
            summary: prompt.summary.clone(),
            reason: prompt.reason.clone(),
            asked_in,
        });
        self.approvals.insert(approval);
    }

    /// Answers an approval request; the first answer wins.
    fn resolve(
        &mut self,
        request_id: &str,
        source_seq: Option<i64>,
        approve: bool,
        actor: &ApprovalActor,
    ) -> Result<(), String> {
        if let ApprovalActor::Kandan { slug, user_id } = actor
            && (slug.is_some() || user_id.is_some())
            && !self
                .context
                .options
                .listen_user
                .allows(slug.as_deref(), *user_id)
        {
            return Err("sender_not_allowed".into());
        }
        let approval = self
            .approvals
            .take(request_id, source_seq)
            .ok_or_else(|| "approval_request_not_found".to_owned())?;
        if !self.answer_codex(&approval, approve) {
            return Err("the Codex app-server is not available".into());
        }
        self.context.log.log(
            "session.approval_resolved",
            json!({"request_id": request_id, "approve": approve, "by": actor.describe()}),
        );
        let _ = self.context.events.send(RunnerEvent::ApprovalResolved {
            request_id: request_id.to_owned(),
            approved: approve,
            by: actor.describe(),
        });
        self.after_approval(&approval);
        Ok(())
    }

    fn answer_codex(&self, approval: &PendingApproval, approve: bool) -> bool {
        self.codex().is_some_and(|codex| {
            codex
                .respond(&approval.rpc_id, &approval.request.answer(approve))
                .is_ok()
        })
    }

    /// Codex dropped a request (turn over, answered elsewhere): no prompt may linger.
    fn withdraw(&mut self, approval: &PendingApproval) {
        let _ = self.context.events.send(RunnerEvent::ApprovalWithdrawn {
            request_id: approval.request_id().to_owned(),
        });
        self.after_approval(approval);
    }

    /// The message goes back to plain "processing" once nothing awaits approval.
    fn after_approval(&mut self, approval: &PendingApproval) {
        if self.approvals.is_empty()
            && let Some(message) = self.active.clone()
            && message.seq == approval.source_seq
            && self.turn.owns_turn(&approval.turn_id)
        {
            self.reason = None;
            self.set_reason(&message, ProcessingReason::RunningTerminalCommand);
        }
    }

    fn on_codex_lost(&mut self, message: &str) {
        self.codex_ready = false;
        for approval in self.approvals.drain() {
            let _ = self.context.events.send(RunnerEvent::ApprovalWithdrawn {
                request_id: approval.request_id().to_owned(),
            });
        }
        let turn = self.turn.active_turn_id().map(str::to_owned);
        if let Some(turn_id) = &turn {
            self.transcript.finish_turn(turn_id);
        }
        for turn_id in self.tui_turns.drain() {
            self.transcript.finish_turn(&turn_id);
        }
        if let Some(active) = self.active.take() {
            if matches!(self.turn, TurnState::Starting { .. }) {
                // Codex never took the turn: run it on the next app-server.
                self.publish_state(active.seq, &active, &MessageState::Queued);
                self.queue.requeue_front(active);
            } else {
                self.publish_state(
                    active.seq,
                    &active,
                    &MessageState::Failed(format!("{message}; the message was not completed")),
                );
            }
        }
        self.turn = TurnState::Idle;
        self.completing = None;
        self.reason = None;
        self.flush();
    }

    fn on_codex_ready(&mut self) {
        let previous = self.codex_thread.clone();
        self.restart_codex_thread(previous);
    }

    /// Resumes `resume` (or starts a new thread) on the current app-server.
    fn restart_codex_thread(&mut self, resume: Option<String>) {
        self.codex_ready = false;
        let Some(codex) = self.codex() else {
            return;
        };
        let inputs = self.inputs.clone();
        let runtime = self.runtime.clone();
        let cwd = self.context.cwd.clone();
        tokio::spawn(async move {
            let result = resume_or_start(&codex, &runtime, &cwd, resume).await;
            let _ = inputs.send(Input::ThreadReady { result });
        });
    }

    fn on_thread_ready(&mut self, result: Result<String, String>) {
        match result {
            Ok(thread_id) => {
                self.context.log.log(
                    "session.codex_thread",
                    json!({"codex_thread_id": thread_id}),
                );
                if let Ok(mut shared) = self.shared_thread.lock() {
                    *shared = Some(thread_id.clone());
                }
                self.codex_thread = Some(thread_id);
                self.codex_ready = true;
                self.drain();
            }
            Err(message) => {
                warn!(%message, "no Codex thread for the chat session");
                self.context.outbox.send(
                    crate::runner::controls::CODEX_ERROR,
                    json!({"instanceId": self.context.instance_id,
                        "message": format!("no Codex thread for the chat session: {message}")}),
                );
            }
        }
    }

    fn codex(&self) -> Option<CodexClient> {
        self.context.codex.borrow().clone()
    }

    // ---- controls -----------------------------------------------------------------------

    /// Controls the session owns; `None` leaves the control to the runner.
    fn on_control(&mut self, control: KandanControl) -> Option<ControlOutcome> {
        let instance = self.context.instance_id.clone();
        let reply = |kind: &str, fields: Value| {
            let mut payload = json!({"instanceId": instance, "controlType": kind});
            if let (Value::Object(payload), Value::Object(fields)) = (&mut payload, fields) {
                payload.extend(fields);
            }
            Some(ControlOutcome::Reply {
                event: CODEX_RESPONSE,
                payload,
            })
        };
        let kind = control.kind();
        match control {
            KandanControl::ResolveCodexApprovalRequest(control) => {
                let actor = ApprovalActor::Kandan {
                    slug: control.actor_slug.clone(),
                    user_id: control.actor_user_id,
                };
                let approve = control.decision == Decision::Approve;
                match self.resolve(&control.request_id, control.source_seq, approve, &actor) {
                    Ok(()) => reply(kind, json!({"ok": true, "requestId": control.request_id})),
                    Err(error) => reply(
                        kind,
                        json!({"ok": false, "requestId": control.request_id, "error": error}),
                    ),
                }
            }
            KandanControl::InterruptQueuedMessages(control) => {
                let interrupted = self.queue.interrupt_through(control.through_seq);
                let active_seq = self.turn.interruptible_queued_seq();
                let targets_active =
                    control.through_seq.is_some() && control.through_seq == active_seq;
                if targets_active {
                    let _ = self.interrupt_active();
                }
                for seq in &interrupted.selected {
                    self.publish_state_fields(
                        *seq,
                        None,
                        &MessageState::Failed("interrupted".into()),
                    );
                }
                self.context.log.log(
                    "codex.queued_messages_interrupted",
                    json!({"through_seq": control.through_seq,
                        "selected_count": interrupted.selected.len(),
                        "remaining_count": interrupted.remaining}),
                );
                reply(
                    kind,
                    json!({"ok": true, "interruptedSeqs": interrupted.selected,
                        "interruptedActive": targets_active}),
                )
            }
            KandanControl::InterruptTurn(control)
                if Some(control.thread_id.as_str()) == self.codex_thread.as_deref() =>
            {
                match self.interrupt_active() {
                    Ok(()) => reply(kind, json!({"ok": true})),
                    Err(error) => reply(kind, json!({"ok": false, "error": error})),
                }
            }
            KandanControl::UpdateSessionSettings(control) => {
                let mut runtime = self.runtime.clone();
                if let Some(model) = control.model {
                    runtime.model = model;
                }
                if let Some(effort) = control.reasoning_effort {
                    runtime.reasoning_effort = effort;
                }
                // Cleared settings go back to the owner's, not to Codex's defaults.
                let owner = &self.context.runtime;
                if let Some(policy) = control.approval_policy {
                    runtime.approval_policy = policy.or_else(|| owner.approval_policy.clone());
                }
                if let Some(sandbox) = control.sandbox {
                    runtime.sandbox = sandbox.or_else(|| owner.sandbox.clone());
                }
                if let Some(fast) = control.fast {
                    runtime.fast = fast;
                }
                match runtime.within(owner) {
                    Ok(()) => {
                        if let Ok(mut shared) = self.shared_runtime.lock() {
                            *shared = runtime.clone();
                        }
                        self.runtime = runtime;
                        reply(kind, json!({"ok": true}))
                    }
                    Err(error) => reply(kind, json!({"ok": false, "error": error.to_string()})),
                }
            }
            KandanControl::ResolvePortForwardRequest(control) => {
                // The seed requires Kandan to say who answered.
                let actor = ApprovalActor::Kandan {
                    slug: control.actor_slug.clone(),
                    user_id: control.actor_user_id,
                };
                let approve = control.decision == Decision::Approve;
                let outcome = if control.actor_slug.is_none() && control.actor_user_id.is_none() {
                    Err("sender_not_allowed".to_owned())
                } else {
                    self.resolve_port_forward(&control.request_id, approve, &actor)
                };
                match outcome {
                    // The seed's approve reply names the port.
                    Ok(Some(port)) => reply(
                        kind,
                        json!({"ok": true, "requestId": control.request_id, "port": port}),
                    ),
                    Ok(None) => reply(kind, json!({"ok": true, "requestId": control.request_id})),
                    Err(error) => reply(
                        kind,
                        json!({"ok": false, "requestId": control.request_id, "error": error}),
                    ),
                }
            }
            _ => None,
        }
    }

    fn interrupt_active(&mut self) -> Result<(), String> {
        match &self.turn {
            TurnState::Starting { .. } => {
                self.turn.mark_interrupt_after_start();
            }
            TurnState::Active { turn_id, .. } => {
                let turn_id = turn_id.clone();
                self.send_interrupt(turn_id);
            }
            TurnState::Idle | TurnState::Completing { .. } => {
                return Err("no Codex turn is running".into());
            }
        }
        if let Some(message) = self.active.clone() {
            self.set_reason(&message, ProcessingReason::InterruptRequested);
        }
        Ok(())
    }

    fn send_interrupt(&self, turn_id: String) {
        self.send_interrupt_attempt(turn_id, 0);
    }

    /// Codex answers turn/start before the turn can be interrupted, and refuses an
    /// interrupt in between ("no active turn"): such a refusal is retried while the turn is
    /// still ours, every 100 ms for up to 5 s.
    fn send_interrupt_attempt(&self, turn_id: String, attempt: u32) {
        const RETRY: Duration = Duration::from_millis(100);
        const ATTEMPTS: u32 = 50;
        let (Some(codex), Some(thread_id)) = (self.codex(), self.codex_thread.clone()) else {
            return;
        };
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            let params = TurnInterruptParams {
                thread_id,
                turn_id: turn_id.clone(),
            };
            match codex
                .call::<_, Value>(methods::TURN_INTERRUPT, &params)
                .await
            {
                Ok(_) => {}
                Err(CodexError::Rpc { error, .. })
                    if error.message.contains("no active turn") && attempt < ATTEMPTS =>
                {
                    tokio::time::sleep(RETRY).await;
                    let attempt = attempt + 1;
                    let _ = inputs.send(Input::RetryInterrupt { turn_id, attempt });
                }
                Err(error) => warn!(%error, "turn/interrupt failed"),
            }
        });
    }

    fn steer(&self, text: String) -> Result<(), String> {
        let TurnState::Active { turn_id, .. } = &self.turn else {
            return Err("no Codex turn is running to steer".into());
        };
        let (Some(codex), Some(thread_id)) = (self.codex(), self.codex_thread.clone()) else {
            return Err("the Codex app-server is not available".into());
        };
        let params = TurnSteerParams {
            thread_id,
            expected_turn_id: turn_id.clone(),
            input: vec![text_input(&text)],
        };
        tokio::spawn(async move {
            if let Err(error) = codex.call::<_, Value>(methods::TURN_STEER, &params).await {
                warn!(%error, "turn/steer failed");
            }
        });
        Ok(())
    }

    // ---- dev servers --------------------------------------------------------------------

    fn on_port_offer(&mut self, candidate: PortCandidate) {
        let managed = self
            .context
            .state
            .lock()
            .map(|state| state.managed_ports.clone())
            .unwrap_or_default();
        match self.port_prompts.decisions.review(&candidate, &managed) {
            Review::Skip => {}
            Review::RememberApprovedTarget => self.port_prompts.approve(&candidate),
            Review::RevokeAndPrompt { revoked } => {
                self.revoke_port(&revoked, RevokeReason::ListenerChanged);
                self.ask_port(candidate);
            }
            Review::Prompt => self.ask_port(candidate),
        }
    }

    /// The owner's "Stop preview": only a dev server the listen user approved can be
    /// stopped (ports from the settings and the editor's are not previews to stop). Its
    /// listener counts as denied, so the same server is not offered again.
    fn stop_preview(&mut self, port: u16) -> Result<(), String> {
        let Some(Some(approved)) = self.port_prompts.decisions.approved.get(&port).cloned() else {
            return Err(format!("port {port} is not an approved preview"));
        };
        self.revoke_port(&approved, RevokeReason::StoppedByOwner);
        self.port_prompts.deny(&approved);
        Ok(())
    }

    fn revoke_port(&mut self, revoked: &PortCandidate, reason: RevokeReason) {
        self.port_prompts.revoke(revoked.port);
        let _ = self.context.events.send(RunnerEvent::PortForwardRevoked {
            port: revoked.port,
            reason,
        });
        let capabilities = self.change_ports(|ports| {
            ports.remove(&revoked.port);
        });
        let mut payload = port_prompts::listener_fields(revoked);
        payload.insert("instanceId".into(), json!(self.context.instance_id));
        payload.insert("reason".into(), json!(reason.as_str()));
        let mut capabilities = capabilities;
        capabilities["revokedPorts"] = json!([revoked.port]);
        payload.insert("capabilities".into(), capabilities);
        self.context.log.log(
            "port_forward.approved_port_revoked",
            json!({"port": revoked.port, "pid": revoked.pid, "reason": reason.as_str()}),
        );
        self.context
            .outbox
            .send("forward_port_revoked", Value::Object(payload));
    }

    fn ask_port(&mut self, candidate: PortCandidate) {
        let request_id = format!("port-forward-{}", uuid::Uuid::new_v4());
        self.port_prompts.ask(request_id.clone(), candidate.clone());
        let options = &self.context.options;
        let payload = json!({"source": "linzumi_runner", "runner_id": self.context.runner_id,
            "instance_id": self.context.instance_id, "codex_thread_id": self.codex_thread,
            "reply_to_seq": self.root_seq,
            "structured": port_prompts::prompt_structured(&candidate, &request_id)});
        let request = json!({"workspace": options.workspace, "channel": options.channel,
            "thread_id": self.thread_id, "body": port_prompts::prompt_body(&candidate, &request_id),
            "payload": payload, "client_id": format!("{}:{request_id}", self.context.instance_id)});
        let outbox = self.context.outbox.clone();
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            let result = outbox
                .request("session:post_thread_message", request)
                .await
                .and_then(|reply| {
                    reply
                        .get("seq")
                        .and_then(Value::as_i64)
                        .ok_or(PushError::Rejected {
                            topic: outbox.topic().to_owned(),
                            event: "session:post_thread_message".into(),
                            response: json!({"reason": "the reply has no seq"}),
                        })
                });
            let _ = inputs.send(Input::PortPromptPosted { request_id, result });
        });
    }

    fn on_port_prompt_posted(&mut self, request_id: &str, result: Result<i64, PushError>) {
        let seq = match result {
            Ok(seq) => seq,
            Err(error) => {
                warn!(%error, "could not post the port-forward prompt");
                // Forget it, so the next scan asks again.
                self.port_prompts.take(request_id);
                return;
            }
        };
        let Some(pending) = self.port_prompts.posted(request_id, seq).cloned() else {
            return;
        };
        let candidate = &pending.candidate;
        let mut requested = port_prompts::listener_fields(candidate);
        requested.insert("instanceId".into(), json!(self.context.instance_id));
        requested.insert("requestId".into(), json!(request_id));
        self.context
            .outbox
            .send("forward_port_requested", Value::Object(requested));
        let (slug, user_id) = self
            .context
            .options
            .listen_user
            .prompt_actor(self.listen_user_id);
        let approval = port_prompts::approval(candidate, request_id, slug, user_id);
        self.publish_state_fields(seq, None, &MessageState::AwaitingApproval(approval));
        self.context.log.log(
            "port_forward.request_pending",
            json!({"request_id": request_id, "port": candidate.port, "pid": candidate.pid}),
        );
        let _ = self.context.events.send(RunnerEvent::PortForwardRequested {
            request_id: request_id.to_owned(),
            port: candidate.port,
            command: candidate.label(),
            cwd: candidate.cwd.clone(),
        });
    }

    /// Answers a port-forward prompt (the first answer wins): the approved port, or
    /// `None` when denied.
    fn resolve_port_forward(
        &mut self,
        request_id: &str,
        approve: bool,
        actor: &ApprovalActor,
    ) -> Result<Option<u16>, String> {
        if let ApprovalActor::Kandan { slug, user_id } = actor
            && !self
                .context
                .options
                .listen_user
                .allows(slug.as_deref(), *user_id)
        {
            return Err("sender_not_allowed".into());
        }
        let pending = self
            .port_prompts
            .take(request_id)
            .ok_or_else(|| "port_forward_request_not_found".to_owned())?;
        let candidate = pending.candidate.clone();
        let _ = self.context.events.send(RunnerEvent::PortForwardResolved {
            request_id: request_id.to_owned(),
            approved: approve,
            by: actor.describe(),
        });
        self.context.log.log(
            if approve {
                "port_forward.request_approved"
            } else {
                "port_forward.request_denied"
            },
            json!({"request_id": request_id, "port": candidate.port, "pid": candidate.pid,
                "by": actor.describe()}),
        );
        if !approve {
            self.port_prompts.deny(&candidate);
            if let Some(seq) = pending.seq {
                self.publish_state_fields(
                    seq,
                    None,
                    &MessageState::Failed("port_forward_denied".into()),
                );
            }
            return Ok(None);
        }
        self.port_prompts.approve(&candidate);
        let capabilities = self.change_ports(|ports| {
            ports.insert(candidate.port);
        });
        let mut resolved = port_prompts::listener_fields(&candidate);
        resolved.insert("instanceId".into(), json!(self.context.instance_id));
        resolved.insert("requestId".into(), json!(request_id));
        resolved.insert("decision".into(), json!("approve"));
        resolved.insert("capabilities".into(), capabilities);
        self.context
            .outbox
            .send("forward_port_resolved", Value::Object(resolved));
        if let Some(seq) = pending.seq {
            self.publish_state_fields(seq, None, &MessageState::Processed);
        }
        let path = port_prompts::preview_path(&self.context.runner_id, candidate.port);
        let options = &self.context.options;
        let payload = json!({"source": "linzumi_runner", "runner_id": self.context.runner_id,
            "instance_id": self.context.instance_id, "codex_thread_id": self.codex_thread,
            "reply_to_seq": self.root_seq,
            "structured": port_prompts::ready_structured(&pending, &path)});
        self.context.outbox.send(
            "session:post_thread_message",
            json!({"workspace": options.workspace, "channel": options.channel,
                "thread_id": self.thread_id, "body": port_prompts::ready_body(candidate.port, &path),
                "payload": payload,
                "client_id": format!("{}:{request_id}:ready", self.context.instance_id)}),
        );
        Ok(Some(candidate.port))
    }

    /// Changes the forwarding ports; returns the capabilities after the change.
    fn change_ports(&self, change: impl FnOnce(&mut std::collections::BTreeSet<u16>)) -> Value {
        match self.context.state.lock() {
            Ok(mut state) => {
                change(&mut state.forward_ports);
                state.capabilities()
            }
            Err(_) => Value::Null,
        }
    }

    // ---- writing to Kandan --------------------------------------------------------------

    fn arm_flush(&mut self) {
        if self.flush_at.is_none() {
            self.flush_at = Some(Instant::now() + self.context.options.stream_flush);
        }
    }

    fn flush(&mut self) {
        self.flush_at = None;
        for write in self.transcript.flush() {
            self.write(write);
        }
    }

    fn write(&mut self, write: Write) {
        let (key, seq) = match &write {
            Write::Post(key) => (key, None),
            Write::Update(key, seq) => (key, Some(*seq)),
        };
        let Some(view) = self.transcript.view(key) else {
            return;
        };
        let body = view.body();
        let payload = self.row_payload(&view);
        let options = &self.context.options;
        match seq {
            Some(seq) => self.context.outbox.send(
                "session:update_thread_message",
                json!({"workspace": options.workspace, "channel": options.channel,
                    "thread_id": self.thread_id, "seq": seq, "body": body, "payload": payload}),
            ),
            None => {
                let request = json!({"workspace": options.workspace, "channel": options.channel,
                    "thread_id": self.thread_id, "body": body, "payload": payload,
                    "client_id": client_id(&self.context.instance_id, key)});
                let outbox = self.context.outbox.clone();
                let inputs = self.inputs.clone();
                let key = key.clone();
                tokio::spawn(async move {
                    let result = outbox
                        .request("session:post_thread_message", request)
                        .await
                        .and_then(|reply| {
                            reply.get("seq").and_then(Value::as_i64).ok_or_else(|| {
                                PushError::Rejected {
                                    topic: outbox.topic().to_owned(),
                                    event: "session:post_thread_message".into(),
                                    response: json!({"reason": "the reply has no seq"}),
                                }
                            })
                        });
                    let _ = inputs.send(Input::Posted { key, result });
                });
            }
        }
    }

    fn on_posted(&mut self, key: &RowKey, result: Result<i64, PushError>) {
        match result {
            Ok(seq) => {
                if let Some(write) = self.transcript.posted(key, seq) {
                    self.write(write);
                }
            }
            Err(error) if error.is_transient() => {
                // Kandan is away; the next flush posts it again (the client id keeps a
                // post that did arrive from being shown twice).
                self.transcript.post_failed(key);
                self.arm_flush();
            }
            Err(error) => {
                warn!(%error, "Kandan refused a row; it is dropped");
                self.context.log.log(
                    "session.row_refused",
                    json!({"turn_id": key.turn_id, "item": key.item, "message": error.to_string()}),
                );
                self.transcript.abandon(key);
            }
        }
        self.finish_if_settled();
    }

    fn row_payload(&self, view: &RowView<'_>) -> Value {
        json!({"source": "linzumi_runner", "runner_id": self.context.runner_id,
            "instance_id": self.context.instance_id, "codex_thread_id": self.codex_thread,
            "reply_to_seq": view.reply_to_seq, "structured": view.structured()})
    }

    fn push_typing(&mut self, typing: bool) {
        if !typing && !self.typing {
            return;
        }
        self.typing = typing;
        let options = &self.context.options;
        self.context.outbox.send(
            "session:typing",
            json!({"workspace": options.workspace, "channel": options.channel,
                "thread_id": self.thread_id, "typing": typing}),
        );
    }

    /// Publishes a processing reason for the active message when it changes.
    fn set_reason(&mut self, message: &QueuedMessage, reason: ProcessingReason) {
        if self.reason == Some(reason) {
            return;
        }
        self.reason = Some(reason);
        self.publish_state(message.seq, message, &MessageState::Processing(reason));
    }

    fn publish_state_for(&self, event: &ChatEvent, state: &MessageState) {
        self.publish_state_fields(
            event.seq,
            Some((event.actor_slug.clone(), event.actor_user_id)),
            state,
        );
    }

    fn publish_state(&self, seq: i64, message: &QueuedMessage, state: &MessageState) {
        self.publish_state_fields(
            seq,
            Some((message.actor_slug.clone(), message.actor_user_id)),
            state,
        );
    }

    fn publish_state_fields(
        &self,
        seq: i64,
        actor: Option<(Option<String>, Option<i64>)>,
        state: &MessageState,
    ) {
        let options = &self.context.options;
        let mut payload = json!({"workspace": options.workspace, "channel": options.channel,
            "thread_id": self.thread_id, "seq": seq});
        if let Value::Object(fields) = &mut payload {
            fields.extend(state.fields());
            if let Some((slug, user_id)) = actor {
                if let Some(slug) = slug {
                    fields.insert("actor_slug".into(), json!(slug));
                }
                if let Some(user_id) = user_id {
                    fields.insert("actor_user_id".into(), json!(user_id));
                }
            }
        }
        self.context.outbox.send("message_state", payload);
    }

    fn rebind(&mut self) {
        let options = &self.context.options;
        let request = json!({"instanceId": self.context.instance_id, "workspace": options.workspace,
            "channel": options.channel, "thread_id": self.thread_id,
            "after_seq": self.last_seen_seq, "listen_user": options.listen_user.slug()});
        let outbox = self.context.outbox.clone();
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            let result = outbox.request("session:bind", request).await;
            let _ = inputs.send(Input::Rebound { result });
        });
    }

    fn stop(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        for approval in self.approvals.drain() {
            self.answer_codex(&approval, false);
            let _ = self.context.events.send(RunnerEvent::ApprovalWithdrawn {
                request_id: approval.request_id().to_owned(),
            });
        }
        self.flush();
        if self.typing {
            self.push_typing(false);
        }
    }
}

/// A stable id for a row's post, so Kandan can recognize a retried post.
fn client_id(instance_id: &str, key: &RowKey) -> String {
    format!("{instance_id}:{}:{}:{:?}", key.turn_id, key.item, key.kind)
}

async fn next_offer(
    offers: &mut Option<mpsc::UnboundedReceiver<PortCandidate>>,
) -> Option<PortCandidate> {
    match offers {
        Some(offers) => offers.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn wait_for_codex(
    codex: &watch::Receiver<Option<CodexClient>>,
) -> Result<CodexClient, SessionError> {
    let mut watcher = codex.clone();
    match tokio::time::timeout(CODEX_WAIT, watcher.wait_for(Option::is_some)).await {
        Ok(Ok(client)) => client
            .clone()
            .ok_or_else(|| SessionError::Codex("no client".into())),
        _ => Err(SessionError::Codex(format!(
            "not ready within {CODEX_WAIT:?}"
        ))),
    }
}

async fn resume_or_start(
    codex: &CodexClient,
    runtime: &RuntimeOptions,
    cwd: &std::path::Path,
    resume: Option<String>,
) -> Result<String, String> {
    let overrides = runtime
        .thread_overrides()
        .map_err(|error| error.to_string())?;
    if let Some(thread_id) = resume {
        let params = ThreadResumeParams {
            thread_id,
            overrides: overrides.clone(),
        };
        match codex
            .call::<_, crate::codex::protocol::ThreadResult>(methods::THREAD_RESUME, &params)
            .await
        {
            Ok(result) => return Ok(result.thread.id),
            Err(error) => warn!(%error, "could not resume the Codex thread; starting a new one"),
        }
    }
    let params = ThreadStartParams {
        cwd: Some(cwd.display().to_string()),
        service_name: Some("kandan-local-runner".into()),
        personality: Some("pragmatic".into()),
        ..overrides
    };
    codex
        .call::<_, crate::codex::protocol::ThreadResult>(methods::THREAD_START, &params)
        .await
        .map(|result| result.thread.id)
        .map_err(|error| error.to_string())
}

/// The availability message that roots a new thread; returns its seq and thread id.
async fn post_root(
    context: &SessionContext,
    codex_thread: &str,
) -> Result<(i64, String), SessionError> {
    let options = &context.options;
    let runtime = &context.runtime;
    let model = runtime.model.as_deref().unwrap_or("default model");
    let effort = runtime
        .reasoning_effort
        .as_deref()
        .unwrap_or("default effort");
    let body = format!(
        "Linzumi runner **{}** is available in `{}` · {model} · {effort}{}\nReply in this thread to give Codex work.",
        context.runner_id,
        context.cwd.display(),
        if runtime.fast { " · fast" } else { "" }
    );
    let payload = json!({"source": "linzumi_runner", "runner_id": context.runner_id,
        "instance_id": context.instance_id, "codex_thread_id": codex_thread,
        "structured": {"kind": "local_runner_availability", "runner_id": context.runner_id,
            "cwd": context.cwd, "model": runtime.model, "reasoning_effort": runtime.reasoning_effort,
            "fast": runtime.fast, "listen_user": options.listen_user.slug()}});
    let reply = context
        .outbox
        .request(
            "session:post_thread_message",
            json!({"workspace": options.workspace, "channel": options.channel,
                "thread_id": null, "body": body, "payload": payload,
                "client_id": format!("{}:root", context.instance_id)}),
        )
        .await
        .map_err(|error| SessionError::Root(error.to_string()))?;
    let seq = reply.get("seq").and_then(Value::as_i64);
    let thread = reply.get("thread_id").and_then(Value::as_str);
    match (seq, thread) {
        (Some(seq), Some(thread)) => Ok((seq, thread.to_owned())),
        _ => Err(SessionError::Root(format!(
            "the reply has no seq and thread_id: {reply}"
        ))),
    }
}
