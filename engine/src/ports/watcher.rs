//! Watches for dev servers: every scan reads the runner's process tree, the listening
//! sockets of its descendants, and each listener's command and folder, and offers the
//! ones that have been stable for the debounce period (seed `portForwardWatcher.ts`,
//! 750 ms). Scans run on a thread of their own so `/proc` reads never stall the async
//! runtime; with the default 200 ms period a new server is offered within a second.
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::warn;

use super::candidates::{Debouncer, PortCandidate};
use super::listen_table::ListenTable;
use crate::process_tree::ProcessTable;

fn is_codex(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    name == "codex" || name == "codex.exe"
}

pub const SCAN_INTERVAL: Duration = Duration::from_millis(200);
pub const DEBOUNCE: Duration = Duration::from_millis(750);

/// The processes the runner started for itself (the Codex app-server); their own
/// listeners are not dev servers, though what they run is watched.
pub type OwnProcesses = Arc<dyn Fn() -> Vec<u32> + Send + Sync>;

pub struct PortWatcher {
    stop: Arc<AtomicBool>,
}

impl PortWatcher {
    /// Watches the descendants of `root` (not `root` itself) other than `own` processes.
    pub fn start(
        root: u32,
        own: OwnProcesses,
        mut table: Box<dyn ListenTable>,
        interval: Duration,
        debounce: Duration,
    ) -> (PortWatcher, mpsc::UnboundedReceiver<PortCandidate>) {
        let (offers, receiver) = mpsc::unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("linzumi-port-watcher".into())
            .spawn(move || {
                let mut debouncer = Debouncer::default();
                let mut warned = false;
                let mut last: Option<LastScan> = None;
                while !stopped.load(Ordering::Relaxed) {
                    match scan_if_changed(root, &own(), table.as_mut(), &mut last) {
                        Ok(found) => {
                            warned = false;
                            for offer in debouncer.observe(found, Instant::now(), debounce) {
                                if offers.send(offer).is_err() {
                                    return;
                                }
                            }
                        }
                        Err(error) if !warned => {
                            warned = true;
                            warn!(%error, "could not read the listening sockets");
                        }
                        Err(_) => {}
                    }
                    std::thread::sleep(interval);
                }
            });
        if let Err(error) = spawned {
            warn!(%error, "could not start the port watcher; dev servers will not be offered");
        }
        (PortWatcher { stop }, receiver)
    }
}

impl Drop for PortWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What the previous full scan found, and the state of the system it found it in.
struct LastScan {
    fingerprint: u64,
    own: Vec<u32>,
    found: Vec<PortCandidate>,
}

/// A full scan reads every process; when the system's listening sockets and the runner's
/// own processes are what they were last time, its result cannot have changed, so an idle
/// runner only reads the socket table.
fn scan_if_changed(
    root: u32,
    own: &[u32],
    table: &mut dyn ListenTable,
    last: &mut Option<LastScan>,
) -> std::io::Result<Vec<PortCandidate>> {
    let fingerprint = table.fingerprint()?;
    if let (Some(fingerprint), Some(last)) = (fingerprint, last.as_ref())
        && last.fingerprint == fingerprint
        && last.own == own
    {
        return Ok(last.found.clone());
    }
    let found = scan(root, own, table)?;
    *last = fingerprint.map(|fingerprint| LastScan {
        fingerprint,
        own: own.to_vec(),
        found: found.clone(),
    });
    Ok(found)
}

/// One scan: the descendants' listeners with their command and folder.
fn scan(
    root: u32,
    own: &[u32],
    table: &mut dyn ListenTable,
) -> std::io::Result<Vec<PortCandidate>> {
    let Some(processes) = ProcessTable::read() else {
        return Ok(Vec::new());
    };
    let mut descendants: HashSet<u32> = processes.tree(root).into_iter().skip(1).collect();
    // The npm `codex` is a Node wrapper around the native binary, and that binary keeps a
    // loopback listener of its own: neither is a dev server. Commands it runs are.
    for &process in own {
        for pid in processes.walk(process, is_codex) {
            descendants.remove(&pid);
        }
    }
    if descendants.is_empty() {
        return Ok(Vec::new());
    }
    let listeners = table.listeners(&descendants)?;
    if listeners.is_empty() {
        return Ok(Vec::new());
    }
    let pids: Vec<Pid> = listeners.iter().map(|l| Pid::from_u32(l.pid)).collect();
    let Ok(mut system) = System::new() else {
        return Ok(Vec::new());
    };
    system.refresh_processes_specifics(
        ProcessesToUpdate::Some(&pids),
        true,
        ProcessRefreshKind::nothing()
            .with_cmd(UpdateKind::Always)
            .with_cwd(UpdateKind::Always),
    );
    let mut candidates: Vec<PortCandidate> = listeners
        .into_iter()
        .map(|listener| {
            let process = system.process(Pid::from_u32(listener.pid));
            let command = process
                .map(|process| {
                    let parts: Vec<String> = process
                        .cmd()
                        .iter()
                        .map(|part| part.to_string_lossy().into_owned())
                        .collect();
                    if parts.is_empty() {
                        process.name().to_string_lossy().into_owned()
                    } else {
                        parts.join(" ")
                    }
                })
                .unwrap_or_default();
            let cwd = process
                .and_then(|process| process.cwd())
                .map(|cwd| cwd.display().to_string());
            PortCandidate {
                port: listener.port,
                pid: listener.pid,
                command,
                cwd,
            }
        })
        .collect();
    // One offer per port (a server may listen on v4 and v6, or in several workers).
    candidates.sort_by_key(|candidate| (candidate.port, candidate.pid));
    candidates.dedup_by_key(|candidate| candidate.port);
    Ok(candidates)
}

#[cfg(test)]
#[cfg(target_os = "linux")]
mod tests {
    use super::*;
    use crate::ports::listen_table;

    #[tokio::test]
    async fn a_descendants_server_is_offered_within_a_second() {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let (watcher, mut offers) = PortWatcher::start(
            std::process::id(),
            Arc::new(Vec::new),
            listen_table::system(),
            SCAN_INTERVAL,
            DEBOUNCE,
        );
        let mut server = std::process::Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .current_dir(std::env::temp_dir())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        let offer = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let offer = offers.recv().await.unwrap();
                if offer.port == port {
                    return offer;
                }
            }
        })
        .await
        .unwrap();
        // From the spawn, which includes Python's own start-up.
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(offer.pid, server.id());
        assert!(offer.command.contains("http.server"), "{}", offer.command);
        assert_eq!(
            offer.cwd.as_deref(),
            Some(
                std::fs::canonicalize(std::env::temp_dir())
                    .unwrap()
                    .to_str()
                    .unwrap()
            )
        );
        server.kill().unwrap();
        server.wait().unwrap();
        drop(watcher);
    }

    fn python_server(port: u16) -> std::process::Child {
        std::process::Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    fn free_port() -> u16 {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn the_runners_own_processes_are_not_offered() {
        let (own_port, dev_port) = (free_port(), free_port());
        let mut own = python_server(own_port);
        let own_pid = own.id();
        let (watcher, mut offers) = PortWatcher::start(
            std::process::id(),
            Arc::new(move || vec![own_pid]),
            listen_table::system(),
            SCAN_INTERVAL,
            DEBOUNCE,
        );
        let mut dev = python_server(dev_port);
        let mut offered = Vec::new();
        // Until the dev server is offered, and a second's worth of scans after that.
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(offer) = offers.recv().await {
                offered.push(offer.port);
                if offer.port == dev_port {
                    break;
                }
            }
        })
        .await;
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(offer) = offers.recv().await {
                offered.push(offer.port);
            }
        })
        .await;
        assert!(offered.contains(&dev_port), "{offered:?}");
        assert!(!offered.contains(&own_port), "{offered:?}");
        for child in [&mut own, &mut dev] {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        drop(watcher);
    }
}
