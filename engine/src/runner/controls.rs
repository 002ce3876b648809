//! What the runner does with each Kandan control when no chat session handles it (seed
//! `runner.ts`, `applyControl`), and the `codex_response` / `codex_error` it answers with.
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::allowed_cwd;
use super::approvals::PendingApprovals;
use super::state::{self, RunnerState};
use super::turns::ActiveTurns;
use crate::codex::protocol::{
    ThreadReadParams, ThreadResumeParams, ThreadStartParams, TurnInterruptParams, TurnSteerParams,
    methods,
};
use crate::codex::{CodexClient, CodexError, RuntimeOptions};
use crate::editor::{self, LocalEditor};
use crate::forwarding::control_http;
use crate::forwarding::local_http::LocalHttp;
use crate::forwarding::routes::Routes;
use crate::forwarding::websocket_relay::{Emit, WebSocketRelays};
use crate::protocol::controls::{
    Decision, InterruptTurn, KandanControl, ReadThread, ResolveCodexApprovalRequest, StartInstance,
    StartTurn, SteerTurn,
};

pub const CODEX_RESPONSE: &str = "codex_response";
pub const CODEX_ERROR: &str = "codex_error";

/// What the runner loop must do after a control.
#[derive(Debug, PartialEq)]
pub enum ControlOutcome {
    /// Push this event to Kandan.
    Reply { event: &'static str, payload: Value },
    /// Push this event to Kandan, holding `permit` until Kandan has it (relay flow
    /// control, [`crate::forwarding::websocket_relay`]).
    InFlight {
        event: &'static str,
        payload: Value,
        permit: InFlight,
    },
    /// Allowed roots changed: push a heartbeat with the new capabilities.
    Heartbeat,
    /// Allowed roots changed, but not all as asked: push a heartbeat, then this event.
    HeartbeatAndReply { event: &'static str, payload: Value },
    /// End the app-server and its children now (the supervisor starts a fresh one),
    /// then push this reply.
    KillInstance { reply: Value },
    /// Handled; whatever follows is pushed by the work the control started.
    Done,
}

/// A relay's share of its in-flight budget, given back when it is dropped.
#[derive(Debug)]
pub struct InFlight(pub tokio::sync::OwnedSemaphorePermit);

impl PartialEq for InFlight {
    /// The same number of permits of the same relay's budget.
    fn eq(&self, other: &InFlight) -> bool {
        Arc::ptr_eq(self.0.semaphore(), other.0.semaphore())
            && self.0.num_permits() == other.0.num_permits()
    }
}

/// The shared pieces a control may touch; cheap to clone into a task.
#[derive(Clone)]
pub struct ControlEnv {
    pub instance_id: String,
    pub codex: Option<CodexClient>,
    pub state: Arc<Mutex<RunnerState>>,
    pub turns: Arc<Mutex<ActiveTurns>>,
    pub approvals: Arc<Mutex<PendingApprovals>>,
    pub runtime: RuntimeOptions,
    pub local: LocalHttp,
    pub relays: WebSocketRelays,
    /// Events the relays push to Kandan later.
    pub emit: Emit,
    /// The local editor, when this runner has one.
    pub editor: Option<LocalEditor>,
    /// Control-path requests under way.
    pub in_flight: control_http::InFlight,
    /// Held while a `start_instance` counts Codex's threads and starts one, so that
    /// concurrent starts cannot pass the cap together.
    pub starting: Arc<tokio::sync::Mutex<()>>,
}

impl ControlEnv {
    fn response(&self, control: &str, fields: Value) -> ControlOutcome {
        let mut payload = json!({"instanceId": self.instance_id, "controlType": control});
        merge(&mut payload, fields);
        ControlOutcome::Reply {
            event: CODEX_RESPONSE,
            payload,
        }
    }

    fn error(&self, control: &str, message: String) -> ControlOutcome {
        ControlOutcome::Reply {
            event: CODEX_ERROR,
            payload: self.error_payload(control, message),
        }
    }

    fn error_payload(&self, control: &str, message: String) -> Value {
        json!({"instanceId": self.instance_id, "controlType": control, "message": message})
    }

    fn allowed_ports(&self) -> Routes {
        self.state
            .lock()
            .map(|state| state.routes())
            .unwrap_or_default()
    }

    fn codex(&self) -> Result<&CodexClient, String> {
        self.codex
            .as_ref()
            .ok_or_else(|| "the Codex app-server is restarting; try again in a moment".to_owned())
    }
}

/// Handles a WebSocket relay control at once, so that a socket's open, messages and
/// close reach the relay in the order Kandan sent them (the runner loop calls this
/// before it hands a control to a task of its own); gives any other control back.
pub fn relay_in_order(env: &ControlEnv, control: KandanControl) -> Option<KandanControl> {
    match control {
        KandanControl::ForwardWebsocketOpen(open) => {
            env.relays.open(&env.emit, &env.allowed_ports(), open);
        }
        KandanControl::ForwardWebsocketSend(send) => env.relays.send(&env.emit, send),
        KandanControl::ForwardWebsocketClose(close) => env.relays.close(close),
        other => return Some(other),
    }
    None
}

pub async fn handle(env: ControlEnv, control: KandanControl) -> ControlOutcome {
    let kind = control.kind();
    let result = match control {
        KandanControl::StartInstance(control) => return start_instance(&env, control).await,
        KandanControl::StartTurn(control) => start_turn(&env, control).await,
        KandanControl::SteerTurn(control) => steer_turn(&env, control).await,
        KandanControl::InterruptTurn(control) => interrupt_turn(&env, control).await,
        KandanControl::ReadThread(control) => read_thread(&env, control).await,
        KandanControl::StopInstance(_) => stop_instance(&env).await,
        KandanControl::KillInstance(_) => {
            return ControlOutcome::KillInstance {
                reply: json!({"instanceId": env.instance_id, "controlType": kind, "ok": true}),
            };
        }
        KandanControl::ResolveCodexApprovalRequest(control) => {
            return resolve_approval(&env, control);
        }
        KandanControl::UpdateRunnerConfig(control) => {
            let roots = allowed_cwd::roots_from_kandan(&control.allowed_cwds);
            let Ok(mut state) = env.state.lock() else {
                return ControlOutcome::Done;
            };
            let (kept, refused) = allowed_cwd::within_share(roots, &state.shared_roots);
            state.allowed_roots = kept;
            if refused.is_empty() {
                return ControlOutcome::Heartbeat;
            }
            let shared: Vec<String> = state
                .shared_roots
                .iter()
                .map(|root| root.configured.clone())
                .collect();
            let message = format!(
                "allowed cwd roots outside the folders this computer shares were refused: {} (shared: {})",
                refused.join(", "),
                shared.join(", ")
            );
            return ControlOutcome::HeartbeatAndReply {
                event: CODEX_ERROR,
                payload: env.error_payload(kind, message),
            };
        }
        KandanControl::InterruptQueuedMessages(_)
        | KandanControl::UpdateSessionSettings(_)
        | KandanControl::ResolvePortForwardRequest(_) => {
            return env.response(kind, json!({"ok": false, "error": "thread_not_bound"}));
        }
        KandanControl::ForwardHttpRequest(request) => {
            let payload =
                control_http::forward(&env.local, &env.allowed_ports(), &env.in_flight, request)
                    .await;
            return ControlOutcome::Reply {
                event: control_http::RESPONSE_EVENT,
                payload,
            };
        }
        control @ (KandanControl::ForwardWebsocketOpen(_)
        | KandanControl::ForwardWebsocketSend(_)
        | KandanControl::ForwardWebsocketClose(_)) => {
            relay_in_order(&env, control);
            return ControlOutcome::Done;
        }
        KandanControl::StartLocalEditor(control) => {
            let Some(editor) = &env.editor else {
                return ControlOutcome::Reply {
                    event: editor::STATUS_EVENT,
                    payload: json!({"instanceId": env.instance_id, "requestId": control.request_id,
                        "ok": false, "reason": "this runner was started without an editor",
                        "capabilities": state::capabilities_of(&env.state)}),
                };
            };
            // It pushes its own status, in order with the exit it may report later; the
            // outcome is in that status.
            let _ = editor.start(control).await;
            return ControlOutcome::Done;
        }
    };
    match result {
        Ok(fields) => env.response(kind, fields),
        Err(message) => env.error(kind, message),
    }
}

async fn start_instance(env: &ControlEnv, control: StartInstance) -> ControlOutcome {
    let kind = "start_instance";
    let roots = env
        .state
        .lock()
        .map(|state| state.allowed_roots.clone())
        .unwrap_or_default();
    let resolved = match allowed_cwd::resolve(control.cwd.as_deref(), &roots) {
        Ok(resolved) => resolved,
        Err(refused) => {
            return env.response(kind, json!({"ok": false, "error": refused.to_string()}));
        }
    };
    let options = RuntimeOptions {
        model: control.model.or(env.runtime.model.clone()),
        reasoning_effort: control
            .reasoning_effort
            .or(env.runtime.reasoning_effort.clone()),
        fast: control.fast.unwrap_or(env.runtime.fast),
        approval_policy: control
            .approval_policy
            .or(env.runtime.approval_policy.clone()),
        sandbox: control.sandbox.or(env.runtime.sandbox.clone()),
    };
    if let Err(error) = options.within(&env.runtime) {
        return env.response(kind, json!({"ok": false, "error": error.to_string()}));
    }
    let params = match options.thread_overrides() {
        Ok(overrides) => ThreadStartParams {
            cwd: Some(resolved.cwd.display().to_string()),
            service_name: Some("kandan-local-runner".into()),
            personality: Some("pragmatic".into()),
            ..overrides
        },
        Err(error) => return env.response(kind, json!({"ok": false, "error": error.to_string()})),
    };
    let codex = match env.codex() {
        Ok(codex) => codex,
        Err(message) => return env.error(kind, message),
    };
    let _starting = env.starting.lock().await;
    match loaded_threads(codex).await {
        Ok(loaded) if loaded >= MAX_LOADED_THREADS => {
            return env.response(
                kind,
                json!({"ok": false, "error": format!(
                    "too_many_threads: Codex already holds {loaded} threads on this computer \
                     (at most {MAX_LOADED_THREADS}); kill_instance restarts it empty"
                )}),
            );
        }
        Ok(_) => {}
        Err(error) => return env.error(kind, error.to_string()),
    }
    match codex.call::<_, Value>(methods::THREAD_START, &params).await {
        Ok(response) => env.response(
            kind,
            json!({"ok": true, "cwd": resolved.cwd, "matchedRoot": resolved.matched_root, "response": response}),
        ),
        Err(error) => env.error(kind, error.to_string()),
    }
}

/// How many threads Kandan may have the app-server hold (each keeps its history in
/// Codex's memory; about 1,400 took it to 885 MB). Threads stay loaded until Codex
/// restarts, so past this `start_instance` is refused [designed].
pub const MAX_LOADED_THREADS: usize = 64;

/// The threads the app-server holds now (`thread/loaded/list`), counted up to one past
/// the cap.
async fn loaded_threads(codex: &CodexClient) -> Result<usize, CodexError> {
    let mut count = 0;
    let mut cursor: Option<String> = None;
    loop {
        let page: Value = codex
            .call(
                methods::THREAD_LOADED_LIST,
                &json!({"cursor": cursor, "limit": MAX_LOADED_THREADS}),
            )
            .await?;
        count += page["data"].as_array().map_or(0, Vec::len);
        cursor = page["nextCursor"].as_str().map(str::to_owned);
        if cursor.is_none() || count > MAX_LOADED_THREADS {
            return Ok(count);
        }
    }
}

async fn start_turn(env: &ControlEnv, control: StartTurn) -> Result<Value, String> {
    let codex = env.codex()?;
    let params = json!({"threadId": control.thread_id, "input": control.input});
    let response = match codex.call::<_, Value>(methods::TURN_START, &params).await {
        // A thread from before an app-server restart must be loaded again first.
        Err(CodexError::Rpc { error, .. }) if crate::codex::thread_not_loaded(&error.message) => {
            let resume = ThreadResumeParams {
                thread_id: control.thread_id.clone(),
                overrides: ThreadStartParams::default(),
            };
            codex
                .call::<_, Value>(methods::THREAD_RESUME, &resume)
                .await
                .map_err(|error| error.to_string())?;
            codex.call::<_, Value>(methods::TURN_START, &params).await
        }
        other => other,
    };
    response
        .map(|response| json!({"ok": true, "threadId": control.thread_id, "response": response}))
        .map_err(|error| error.to_string())
}

async fn steer_turn(env: &ControlEnv, control: SteerTurn) -> Result<Value, String> {
    let params = TurnSteerParams {
        thread_id: control.thread_id.clone(),
        expected_turn_id: control.turn_id,
        input: control.input,
    };
    env.codex()?
        .call::<_, Value>(methods::TURN_STEER, &params)
        .await
        .map(|response| json!({"ok": true, "threadId": control.thread_id, "response": response}))
        .map_err(|error| error.to_string())
}

async fn interrupt_turn(env: &ControlEnv, control: InterruptTurn) -> Result<Value, String> {
    let turn_id = match control.turn_id {
        Some(turn_id) => turn_id,
        None => env
            .turns
            .lock()
            .ok()
            .and_then(|turns| turns.turn_of(&control.thread_id).map(str::to_owned))
            .ok_or_else(|| format!("no turn is running on thread {}", control.thread_id))?,
    };
    let params = TurnInterruptParams {
        thread_id: control.thread_id.clone(),
        turn_id: turn_id.clone(),
    };
    env.codex()?
        .call::<_, Value>(methods::TURN_INTERRUPT, &params)
        .await
        .map(|response| {
            json!({"ok": true, "threadId": control.thread_id, "turnId": turn_id, "response": response})
        })
        .map_err(|error| error.to_string())
}

async fn read_thread(env: &ControlEnv, control: ReadThread) -> Result<Value, String> {
    let params = ThreadReadParams {
        thread_id: control.thread_id.clone(),
        include_turns: control.include_turns.unwrap_or(false),
    };
    env.codex()?
        .call::<_, Value>(methods::THREAD_READ, &params)
        .await
        .map(|response| json!({"ok": true, "threadId": control.thread_id, "response": response}))
        .map_err(|error| error.to_string())
}

/// Stops the instance's work: every running turn is interrupted.
async fn stop_instance(env: &ControlEnv) -> Result<Value, String> {
    let running = env
        .turns
        .lock()
        .map(|turns| turns.all())
        .unwrap_or_default();
    let codex = env.codex()?;
    let mut interrupted = Vec::new();
    for (thread_id, turn_id) in running {
        let params = TurnInterruptParams {
            thread_id: thread_id.clone(),
            turn_id: turn_id.clone(),
        };
        codex
            .call::<_, Value>(methods::TURN_INTERRUPT, &params)
            .await
            .map_err(|error| error.to_string())?;
        interrupted.push(json!({"threadId": thread_id, "turnId": turn_id}));
    }
    Ok(json!({"ok": true, "interruptedTurns": interrupted}))
}

fn resolve_approval(env: &ControlEnv, control: ResolveCodexApprovalRequest) -> ControlOutcome {
    let kind = "resolve_codex_approval_request";
    let pending = env
        .approvals
        .lock()
        .ok()
        .and_then(|mut approvals| approvals.take(&control.request_id));
    let Some(pending) = pending else {
        return env.response(
            kind,
            json!({"ok": false, "requestId": control.request_id, "error": "approval_request_not_found"}),
        );
    };
    let approve = control.decision == Decision::Approve;
    let answer = pending.request.answer(approve);
    let sent = env.codex().and_then(|codex| {
        codex
            .respond(&pending.rpc_id, &answer)
            .map_err(|error| error.to_string())
    });
    match sent {
        Ok(()) => env.response(
            kind,
            json!({"ok": true, "requestId": control.request_id, "decision": if approve { "approve" } else { "deny" }}),
        ),
        Err(message) => env.error(kind, message),
    }
}

fn merge(target: &mut Value, fields: Value) {
    if let (Value::Object(target), Value::Object(fields)) = (target, fields) {
        target.extend(fields);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn env() -> ControlEnv {
        ControlEnv {
            instance_id: "codex-1".into(),
            codex: None,
            state: Arc::new(Mutex::new(RunnerState {
                cwd: "/".into(),
                allowed_roots: vec![],
                shared_roots: vec![],
                forward_ports: BTreeSet::new(),
                managed_ports: BTreeSet::new(),
                tool_status: None,
                editor_runtime: None,
                editor: None,
                app_server_pid: None,
            })),
            turns: Arc::default(),
            approvals: Arc::default(),
            runtime: RuntimeOptions::default(),
            local: LocalHttp::default(),
            relays: WebSocketRelays::default(),
            emit: Emit::new(|_, _, _| {}),
            editor: None,
            in_flight: control_http::InFlight::default(),
            starting: Arc::default(),
        }
    }

    fn control(value: Value) -> KandanControl {
        KandanControl::parse(&value).unwrap()
    }

    #[tokio::test]
    async fn start_instance_without_roots_is_refused_with_the_reason() {
        let outcome = handle(
            env(),
            control(json!({"type": "start_instance", "cwd": "/etc"})),
        )
        .await;
        assert_eq!(
            outcome,
            ControlOutcome::Reply {
                event: CODEX_RESPONSE,
                payload: json!({"instanceId": "codex-1", "controlType": "start_instance", "ok": false,
                    "error": "starting sessions is disabled on this runner: no allowed cwd roots are configured"})
            }
        );
    }

    #[tokio::test]
    async fn codex_calls_during_a_restart_say_so() {
        let outcome = handle(
            env(),
            control(json!({"type": "read_thread", "threadId": "t"})),
        )
        .await;
        let ControlOutcome::Reply { event, payload } = outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!(event, CODEX_ERROR);
        assert!(payload["message"].as_str().unwrap().contains("restarting"));
    }

    #[tokio::test]
    async fn unknown_approvals_and_unbound_session_controls_are_refused() {
        let outcome = handle(
            env(),
            control(
                json!({"type": "resolve_codex_approval_request", "threadId": "t",
                "sourceSeq": 1, "requestId": "9", "decision": "approve"}),
            ),
        )
        .await;
        let ControlOutcome::Reply { payload, .. } = outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!(payload["error"], "approval_request_not_found");

        let outcome = handle(
            env(),
            control(json!({"type": "interrupt_queued_messages", "threadId": "t"})),
        )
        .await;
        let ControlOutcome::Reply { payload, .. } = outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!(payload["error"], "thread_not_bound");
    }

    #[tokio::test]
    async fn update_runner_config_replaces_roots_and_asks_for_a_heartbeat() {
        let env = env();
        env.state.lock().unwrap().shared_roots =
            allowed_cwd::configured_roots(&["/".to_owned()]).unwrap();
        let outcome = handle(
            env.clone(),
            control(json!({"type": "update_runner_config", "allowedCwds": ["/", "/nope/nothing"]})),
        )
        .await;
        assert_eq!(outcome, ControlOutcome::Heartbeat);
        assert_eq!(
            env.state.lock().unwrap().allowed_cwds(),
            vec!["/".to_string()]
        );
    }

    #[tokio::test]
    async fn update_runner_config_refuses_roots_outside_the_share() {
        let env = env();
        let shared = std::env::temp_dir();
        env.state.lock().unwrap().shared_roots =
            allowed_cwd::configured_roots(&[shared.display().to_string()]).unwrap();
        let outcome = handle(
            env.clone(),
            control(json!({"type": "update_runner_config", "allowedCwds": ["/", shared]})),
        )
        .await;
        let ControlOutcome::HeartbeatAndReply { event, payload } = outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!(event, CODEX_ERROR);
        assert!(
            payload["message"]
                .as_str()
                .unwrap()
                .starts_with("allowed cwd roots outside the folders this computer shares were refused: / (shared: "),
            "{payload}"
        );
        assert_eq!(
            env.state.lock().unwrap().allowed_cwds(),
            vec![shared.display().to_string()]
        );
    }
}
