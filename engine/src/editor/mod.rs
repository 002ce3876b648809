//! The local code-server editor (seed `runner.ts`: `start_local_editor`, the editor
//! status, the exit watch and managed ports).
//!
//! A start opens a folder inside the allowed roots in code-server, where only the runner
//! reaches it ([`listen`]); the port number Kandan addresses it by (and the collaboration
//! server's port) becomes a managed forward port: forwarded without a prompt and never
//! offered as a dev server. A second start replaces the first. When the editor exits on
//! its own its ports are revoked and Kandan is told, unless a newer start already
//! replaced it (see [`state`]).
pub mod collaboration;
pub mod launch;
pub mod listen;
pub mod runtime;
pub mod runtime_source;
pub mod state;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::forwarding::websocket_relay::Emit;
use crate::protocol::controls::{EditorCollaboration, StartLocalEditor};
use crate::runner::RunnerEvent;
use crate::runner::allowed_cwd;
use crate::runner::state::{self as state_of_runner, RunnerState};
use collaboration::{CollaborationAccess, CollaborationServer};
use launch::{CodeServer, LaunchSpec};
use listen::Isolation;
use runtime_source::EditorRuntime;
use state::{EditorSlot, RunningEditor};

pub const STATUS_EVENT: &str = "local_editor_status";

/// Where a running editor serves the shared folder: `<path>` on Kandan's preview of
/// `port` (the only way to it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditorAddress {
    pub port: u16,
    pub path: String,
}

/// What the editor needs from the runner.
#[derive(Clone)]
pub struct EditorContext {
    pub instance_id: String,
    pub runtime: EditorRuntime,
    /// The runner's editor folder (user data, extensions, collaboration assets).
    pub data_dir: PathBuf,
    /// Fetches collaboration assets from Kandan.
    pub access: CollaborationAccess,
    pub state: Arc<Mutex<RunnerState>>,
    /// Pushes `local_editor_status` (in order with the runner's other pushes).
    pub emit: Emit,
    /// Tells the fronts (the desktop shows the editor and opens it).
    pub events: tokio::sync::broadcast::Sender<RunnerEvent>,
}

/// The runner's editor; cheap to clone.
#[derive(Clone)]
pub struct LocalEditor {
    inner: Arc<Inner>,
}

struct Inner {
    context: EditorContext,
    slot: Mutex<EditorSlot>,
    /// Starts one at a time, so a replacement never races the editor it replaces.
    starting: tokio::sync::Mutex<()>,
    /// How to end the editor of each generation: the sender of the watch task.
    stops: Mutex<HashMap<u64, oneshot::Sender<oneshot::Sender<()>>>>,
}

impl LocalEditor {
    pub fn new(context: EditorContext) -> Self {
        LocalEditor {
            inner: Arc::new(Inner {
                context,
                slot: Mutex::new(EditorSlot::default()),
                starting: tokio::sync::Mutex::new(()),
                stops: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Handles `start_local_editor`: pushes one `local_editor_status` with the outcome,
    /// and returns where the editor serves or why it did not start.
    pub async fn start(&self, control: StartLocalEditor) -> Result<EditorAddress, String> {
        let _one_at_a_time = self.inner.starting.lock().await;
        let context = &self.inner.context;
        let (payload, outcome) = match self.start_editor(&control).await {
            Ok(started) => {
                info!(port = started.port, cwd = %started.cwd.display(), "editor started");
                let _ = context.events.send(RunnerEvent::EditorStarted {
                    port: started.port,
                    path: started.path.clone(),
                });
                let mut payload = json!({
                    "instanceId": context.instance_id,
                    "requestId": control.request_id,
                    "ok": true,
                    "capabilities": self.capabilities(&started.revoked),
                    "cwd": started.cwd,
                    "port": started.port,
                    "path": &started.path,
                });
                if let Some(url) = started.url {
                    payload["url"] = json!(url);
                }
                if let Some(collaboration) = started.collaboration {
                    payload["collaboration"] = collaboration;
                }
                let address = EditorAddress {
                    port: started.port,
                    path: started.path,
                };
                (payload, Ok(address))
            }
            Err(refused) => {
                warn!(reason = %refused.reason, "editor did not start");
                let payload = json!({
                    "instanceId": context.instance_id,
                    "requestId": control.request_id,
                    "ok": false,
                    "reason": refused.reason,
                    "capabilities": self.capabilities(&refused.revoked),
                });
                (payload, Err(refused.reason))
            }
        };
        context.emit.event(STATUS_EVENT, payload);
        outcome
    }

    /// Where the running editor serves, if one runs.
    pub fn running(&self) -> Option<EditorAddress> {
        self.slot(|slot| {
            slot.running().map(|running| EditorAddress {
                port: running.port,
                path: launch::browser_path(&running.cwd),
            })
        })
    }

    async fn start_editor(&self, control: &StartLocalEditor) -> Result<Started, Refused> {
        let context = &self.inner.context;
        let roots = context
            .state
            .lock()
            .map(|state| state.allowed_roots.clone())
            .unwrap_or_default();
        let cwd = allowed_cwd::resolve(Some(&control.cwd), &roots)
            .map_err(|refused| Refused::new(refused.to_string()))?
            .cwd;
        let bin = context.runtime.code_server_bin().await.map_err(|reason| {
            Refused::new(format!("the editor runtime is not available: {reason}"))
        })?;

        // The new editor replaces the current one, which must be gone before the new
        // one uses the same user-data folder.
        let (generation, previous) = self.slot(EditorSlot::begin_start);
        let revoked = match previous {
            Some(previous) => {
                self.end(previous.generation).await;
                self.revoke(&previous);
                previous.ports()
            }
            None => Vec::new(),
        };
        let refused = |reason: String| Refused {
            reason,
            revoked: revoked.clone(),
        };

        let spec = LaunchSpec {
            code_server_bin: bin.clone(),
            cwd: cwd.clone(),
            data_dir: context.data_dir.clone(),
            isolation: Isolation::of_this_platform(),
        };
        let mut collaboration = match &control.collaboration {
            Some(block) => {
                spec.prepare().map_err(|error| refused(error.to_string()))?;
                let node = collaboration::node_for(&bin);
                let server = collaboration::prepare(block, &context.access, &spec, &node)
                    .await
                    .map_err(|error| refused(error.to_string()))?;
                Some((block.clone(), server))
            }
            None => None,
        };
        let editor = match launch::launch(&spec).await {
            Ok(editor) => editor,
            Err(error) => {
                if let Some((_, server)) = collaboration.as_mut() {
                    server.stop().await;
                }
                return Err(refused(error.to_string()));
            }
        };

        let running = RunningEditor {
            generation,
            cwd: cwd.clone(),
            port: editor.port(),
            endpoint: editor.endpoint(),
            collaboration_port: collaboration.as_ref().map(|(_, server)| server.port),
        };
        // Starts are serialised, so nothing newer can have begun meanwhile.
        self.slot(|slot| slot.started(running.clone()));
        if let Ok(mut state) = context.state.lock() {
            for port in running.ports() {
                state.forward_ports.insert(port);
                state.managed_ports.insert(port);
            }
            state.editor = Some(running.clone());
        }
        let path = launch::browser_path(&cwd);
        let base = control
            .browser_base_url
            .clone()
            .or_else(|| std::env::var("KANDAN_LOCAL_RUNNER_PUBLIC_BASE_URL").ok())
            .filter(|base| !base.trim().is_empty());
        let url = base.map(|base| format!("{}{path}", base.trim_end_matches('/')));
        let collaboration_event = collaboration
            .as_ref()
            .map(|(block, server)| collaboration_event(block, server.port));
        self.watch(
            running.clone(),
            editor,
            collaboration.map(|(_, server)| server),
        );
        Ok(Started {
            cwd,
            port: running.port,
            path,
            url,
            collaboration: collaboration_event,
            revoked,
        })
    }

    /// Watches the editor (and its collaboration server) until it exits or is ended.
    fn watch(
        &self,
        running: RunningEditor,
        mut editor: CodeServer,
        mut collaboration: Option<CollaborationServer>,
    ) {
        let (stop_tx, mut stop_rx) = oneshot::channel::<oneshot::Sender<()>>();
        if let Ok(mut stops) = self.inner.stops.lock() {
            stops.insert(running.generation, stop_tx);
        }
        let this = self.clone();
        tokio::spawn(async move {
            let collaboration_exit = async {
                match collaboration.as_mut() {
                    Some(server) => server.process.wait().await.ok(),
                    None => std::future::pending().await,
                }
            };
            let ended = tokio::select! {
                status = editor.wait() => Err(format!(
                    "code-server exited ({}); its last output:\n{}",
                    status.map_or_else(|error| error.to_string(), |status| status.to_string()),
                    editor.output()
                )),
                status = collaboration_exit => Err(format!(
                    "the collaboration server exited ({})",
                    status.map_or_else(|| "unknown status".into(), |status| status.to_string())
                )),
                done = &mut stop_rx => Ok(done.ok()),
            };
            editor.stop().await;
            if let Some(server) = collaboration.as_mut() {
                server.stop().await;
            }
            if let Ok(mut stops) = this.inner.stops.lock() {
                stops.remove(&running.generation);
            }
            match ended {
                Ok(done) => {
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                }
                Err(reason) => this.exited(running.generation, reason),
            }
        });
    }

    /// The editor of `generation` ended on its own.
    fn exited(&self, generation: u64, reason: String) {
        let Some(running) = self.slot(|slot| slot.exited(generation)) else {
            return;
        };
        warn!(%reason, "editor exited");
        self.revoke(&running);
        let context = &self.inner.context;
        let _ = context.events.send(RunnerEvent::EditorExited {
            reason: reason.clone(),
        });
        context.emit.event(
            STATUS_EVENT,
            json!({
                "instanceId": context.instance_id,
                "ok": true,
                "cwd": running.cwd,
                "exited": true,
                "reason": reason,
                "capabilities": self.capabilities(&running.ports()),
            }),
        );
    }

    /// Ends the editor of `generation` and waits until it is gone.
    async fn end(&self, generation: u64) {
        let stop = self
            .inner
            .stops
            .lock()
            .ok()
            .and_then(|mut stops| stops.remove(&generation));
        if let Some(stop) = stop {
            let (done_tx, done_rx) = oneshot::channel();
            if stop.send(done_tx).is_ok() {
                let _ = done_rx.await;
            }
        }
    }

    /// Ends the running editor (the runner stops).
    pub async fn shutdown(&self) {
        if let Some(running) = self.slot(EditorSlot::stop) {
            self.end(running.generation).await;
            self.revoke(&running);
        }
    }

    /// The editor's ports are no longer forwarded.
    fn revoke(&self, running: &RunningEditor) {
        if let Ok(mut state) = self.inner.context.state.lock() {
            for port in running.ports() {
                state.forward_ports.remove(&port);
                state.managed_ports.remove(&port);
            }
            if state
                .editor
                .as_ref()
                .is_some_and(|editor| editor.generation == running.generation)
            {
                state.editor = None;
            }
        }
    }

    fn capabilities(&self, revoked: &[u16]) -> Value {
        let mut capabilities = state_of_runner::capabilities_of(&self.inner.context.state);
        if !revoked.is_empty() {
            capabilities["revokedPorts"] = json!(revoked);
        }
        capabilities
    }

    fn slot<T>(&self, change: impl FnOnce(&mut EditorSlot) -> T) -> T {
        let mut slot = match self.inner.slot.lock() {
            Ok(slot) => slot,
            Err(poisoned) => poisoned.into_inner(),
        };
        change(&mut slot)
    }
}

fn collaboration_event(block: &EditorCollaboration, port: u16) -> Value {
    json!({
        "provider": "oct",
        "editorSessionId": block.editor_session_id,
        "runtimeSessionId": block.runtime_session_id,
        "roomId": block.room_id,
        "serverPort": port,
    })
}

struct Started {
    cwd: PathBuf,
    port: u16,
    path: String,
    url: Option<String>,
    collaboration: Option<Value>,
    revoked: Vec<u16>,
}

struct Refused {
    reason: String,
    /// Ports of a replaced editor, revoked before this start failed.
    revoked: Vec<u16>,
}

impl Refused {
    fn new(reason: String) -> Self {
        Refused {
            reason,
            revoked: Vec::new(),
        }
    }
}
