//! Keeps a Codex app-server available to the runner: starts it (or attaches to one given
//! by `--codex-url`), connects the client, and when the process dies or the connection
//! drops, reports it and brings it back with backoff. The runner reads the current
//! client from a watch channel and every event from one ordered stream.
use std::time::Duration;

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot, watch};
use tracing::{info, warn};

use super::address::AppServerAddress;
use super::client::{ClientInfo, CodexClient, CodexEvent};
use super::process::{AppServerProcess, AppServerSpec};
use crate::phoenix::Backoff;

/// Where the app-server comes from.
#[derive(Debug, Clone)]
pub enum AppServerSource {
    /// Start `codex app-server` and restart it when it dies.
    Spawn(AppServerSpec),
    /// Connect to a running app-server (`--codex-url`, with its token if it asks for one)
    /// and reconnect when it drops.
    Attach(AppServerAddress),
}

#[derive(Debug, Clone, PartialEq)]
pub enum SupervisorEvent {
    /// An event from the current app-server connection.
    Codex(CodexEvent),
    /// A (new) app-server is connected and initialized at `address`; `pid` is its
    /// process (and process group) when the runner started it.
    Ready {
        address: AppServerAddress,
        pid: Option<u32>,
        restart: bool,
    },
    /// The app-server died, its connection dropped, or a restart was asked for
    /// (`requested`); a new one follows.
    Lost { message: String, requested: bool },
    /// Starting or connecting failed; another attempt follows after `retry_in`.
    StartFailed { message: String, retry_in: Duration },
}

pub struct CodexSupervisor {
    client: watch::Receiver<Option<CodexClient>>,
    restart: Arc<Notify>,
    stop: Option<oneshot::Sender<()>>,
    stopped: Option<oneshot::Receiver<()>>,
}

impl CodexSupervisor {
    /// Starts supervising; the first `Ready` (or `StartFailed`) arrives on `events`.
    /// Each app-server is pinged every `ping_interval`: one that stops answering is lost
    /// and replaced like one that died.
    pub fn start(
        source: AppServerSource,
        info: ClientInfo,
        backoff: Backoff,
        ping_interval: Duration,
    ) -> (CodexSupervisor, mpsc::UnboundedReceiver<SupervisorEvent>) {
        let (client_tx, client) = watch::channel(None);
        let (events_tx, events) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let (stopped_tx, stopped_rx) = oneshot::channel();
        let restart = Arc::new(Notify::new());
        let signals = Signals {
            stop: stop_rx,
            restart: restart.clone(),
            ping_interval,
        };
        tokio::spawn(async move {
            supervise(source, info, backoff, client_tx, events_tx, signals).await;
            let _ = stopped_tx.send(());
        });
        (
            CodexSupervisor {
                client,
                restart,
                stop: Some(stop_tx),
                stopped: Some(stopped_rx),
            },
            events,
        )
    }

    /// The connected client, if the app-server is up right now.
    pub fn client(&self) -> Option<CodexClient> {
        self.client.borrow().clone()
    }

    /// Follows the connected client as app-servers come and go.
    pub fn client_watch(&self) -> watch::Receiver<Option<CodexClient>> {
        self.client.clone()
    }

    /// Ends the current app-server and everything it started, and starts a fresh one.
    pub fn restart(&self) {
        self.restart.notify_one();
    }

    /// Ends the app-server and everything it started, and stops restarting it.
    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(stopped) = self.stopped.take() {
            let _ = stopped.await;
        }
    }
}

struct Signals {
    stop: oneshot::Receiver<()>,
    restart: Arc<Notify>,
    ping_interval: Duration,
}

async fn supervise(
    source: AppServerSource,
    info: ClientInfo,
    backoff: Backoff,
    client_tx: watch::Sender<Option<CodexClient>>,
    events: mpsc::UnboundedSender<SupervisorEvent>,
    signals: Signals,
) {
    let Signals {
        mut stop,
        restart,
        ping_interval,
    } = signals;
    let mut failures = 0;
    let mut restarted = false;
    loop {
        let started = tokio::select! {
            started = start_once(&source, &info, ping_interval) => started,
            _ = &mut stop => return,
        };
        let (mut process, address, client, mut codex_events) = match started {
            Ok(started) => started,
            Err(message) => {
                failures += 1;
                let retry_in = backoff.delay(failures);
                warn!(%message, ?retry_in, "Codex app-server failed to start");
                let _ = events.send(SupervisorEvent::StartFailed { message, retry_in });
                tokio::select! {
                    () = tokio::time::sleep(retry_in) => continue,
                    _ = &mut stop => return,
                }
            }
        };
        failures = 0;
        info!(url = client.url(), restarted, "Codex app-server ready");
        // The client first: whoever hears `Ready` may use it at once.
        client_tx.send_replace(Some(client.clone()));
        let _ = events.send(SupervisorEvent::Ready {
            address,
            pid: process.as_ref().and_then(AppServerProcess::pid),
            restart: restarted,
        });

        // Forward events until the connection ends, the process dies, or we are stopped.
        let mut requested = false;
        let lost = loop {
            tokio::select! {
                event = codex_events.recv() => match event {
                    Some(CodexEvent::Closed { reason }) => break dropped(&mut process, &reason).await,
                    None => break dropped(&mut process, "no reason given").await,
                    Some(event) => { let _ = events.send(SupervisorEvent::Codex(event)); }
                },
                status = wait_process(&mut process) => break exited(&process, &status),
                () = restart.notified() => {
                    requested = true;
                    break "the Codex app-server was restarted on request".to_owned();
                }
                _ = &mut stop => {
                    client_tx.send_replace(None);
                    client.close();
                    if let Some(process) = process.as_mut() {
                        process.terminate(Duration::from_secs(3)).await;
                    }
                    return;
                }
            }
        };
        client_tx.send_replace(None);
        client.close();
        if let Some(process) = process.as_mut() {
            // Its children (shells, dev servers) go with it.
            process.terminate(Duration::from_secs(1)).await;
        }
        warn!(message = %lost, "Codex app-server lost; restarting");
        let _ = events.send(SupervisorEvent::Lost {
            message: lost,
            requested,
        });
        restarted = true;
        if requested {
            continue;
        }
        failures += 1;
        tokio::select! {
            () = tokio::time::sleep(backoff.delay(failures)) => {}
            _ = &mut stop => return,
        }
    }
}

type Started = (
    Option<AppServerProcess>,
    AppServerAddress,
    CodexClient,
    mpsc::UnboundedReceiver<CodexEvent>,
);

async fn start_once(
    source: &AppServerSource,
    info: &ClientInfo,
    ping_interval: Duration,
) -> Result<Started, String> {
    match source {
        AppServerSource::Spawn(spec) => {
            let mut process = AppServerProcess::spawn(spec)
                .await
                .map_err(|error| error.to_string())?;
            match CodexClient::connect(process.address(), info.clone(), ping_interval).await {
                Ok((client, events)) => {
                    let address = process.address().clone();
                    Ok((Some(process), address, client, events))
                }
                Err(error) => {
                    process.terminate(Duration::from_secs(1)).await;
                    Err(error.to_string())
                }
            }
        }
        AppServerSource::Attach(address) => {
            let (client, events) = CodexClient::connect(address, info.clone(), ping_interval)
                .await
                .map_err(|error| error.to_string())?;
            Ok((None, address.clone(), client, events))
        }
    }
}

async fn wait_process(process: &mut Option<AppServerProcess>) -> String {
    match process {
        Some(process) => match process.wait().await {
            Ok(status) => status.to_string(),
            Err(error) => error.to_string(),
        },
        None => std::future::pending().await,
    }
}

/// Why the connection dropped: if the process died, its exit and last output say more.
async fn dropped(process: &mut Option<AppServerProcess>, reason: &str) -> String {
    if process.is_some()
        && let Ok(status) =
            tokio::time::timeout(Duration::from_millis(500), wait_process(process)).await
    {
        return exited(process, &status);
    }
    format!("the connection to the Codex app-server dropped: {reason}")
}

fn exited(process: &Option<AppServerProcess>, status: &str) -> String {
    let tail = process
        .as_ref()
        .map(AppServerProcess::stderr_tail)
        .unwrap_or_default();
    format!(
        "the Codex app-server exited ({status}){}",
        last_output(&tail)
    )
}

fn last_output(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!("; its last output:\n{tail}")
    }
}
