//! Watches for dev servers: every scan reads the process tree under the folder's Codex
//! app-server, the listening sockets of the processes Codex started, and each listener's
//! command and folder, and offers the ones that have been stable for the debounce period
//! (seed `portForwardWatcher.ts`, 750 ms). Scans run on a thread of their own so `/proc`
//! reads never stall the async runtime; with the default 200 ms period a new server is
//! offered within a second.
//!
//! The seed watches every descendant of the runner's process. The desktop app runs many
//! folders in one process, so that would offer one folder's dev servers, and another
//! folder's Codex port, in every folder's thread: the watch is rooted at the folder's own
//! app-server instead. [designed]
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

/// The folder's Codex app-server processes, read before each scan (a restarted Codex is
/// a new process). What they start is watched; their own listeners are not dev servers.
pub type Roots = Arc<dyn Fn() -> Vec<u32> + Send + Sync>;

pub struct PortWatcher {
    stop: Arc<AtomicBool>,
}

impl PortWatcher {
    /// Watches what the `roots` started, but for the roots and Codex binaries under them.
    pub fn start(
        roots: Roots,
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
                    match scan_if_changed(&roots(), table.as_mut(), &mut last) {
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
    roots: Vec<u32>,
    found: Vec<PortCandidate>,
}

/// A full scan reads every process; when the system's listening sockets and the roots
/// are what they were last time, its result cannot have changed, so an idle runner only
/// reads the socket table.
fn scan_if_changed(
    roots: &[u32],
    table: &mut dyn ListenTable,
    last: &mut Option<LastScan>,
) -> std::io::Result<Vec<PortCandidate>> {
    let fingerprint = table.fingerprint()?;
    if let (Some(fingerprint), Some(last)) = (fingerprint, last.as_ref())
        && last.fingerprint == fingerprint
        && last.roots == roots
    {
        return Ok(last.found.clone());
    }
    let found = scan(roots, table)?;
    *last = fingerprint.map(|fingerprint| LastScan {
        fingerprint,
        roots: roots.to_vec(),
        found: found.clone(),
    });
    Ok(found)
}

/// One scan: the listeners of what the roots started, with their command and folder.
fn scan(roots: &[u32], table: &mut dyn ListenTable) -> std::io::Result<Vec<PortCandidate>> {
    if roots.is_empty() {
        return Ok(Vec::new());
    }
    let Some(processes) = ProcessTable::read() else {
        return Ok(Vec::new());
    };
    let mut descendants: HashSet<u32> = roots
        .iter()
        .flat_map(|&root| processes.tree(root))
        .collect();
    // The npm `codex` is a Node wrapper around the native binary, and that binary keeps a
    // loopback listener of its own: neither is a dev server. Commands it runs are.
    for &root in roots {
        for pid in processes.walk(root, is_codex) {
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
                .map(|process| process.name().to_string_lossy().into_owned())
                .unwrap_or_default();
            let command_line = process
                .map(|process| {
                    let parts: Vec<String> = process
                        .cmd()
                        .iter()
                        .map(|part| part.to_string_lossy().into_owned())
                        .collect();
                    parts.join(" ")
                })
                .filter(|line| !line.is_empty())
                .unwrap_or_else(|| command.clone());
            let cwd = process
                .and_then(|process| process.cwd())
                .map(|cwd| cwd.display().to_string());
            PortCandidate {
                port: listener.port,
                pid: listener.pid,
                command,
                command_line,
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

    const PYTHON: &str = "/usr/bin/python3";

    fn free_port() -> u16 {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    }

    /// A Python HTTP server on `port`; with `child_port`, it first starts another one
    /// there as its child.
    fn python_server(
        program: &std::path::Path,
        port: u16,
        child_port: Option<u16>,
    ) -> std::process::Child {
        let child = child_port.map_or_else(String::new, |child| {
            format!(
                "subprocess.Popen(['{PYTHON}', '-m', 'http.server', '{child}', '--bind', '127.0.0.1'], \
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
            )
        });
        let script = format!(
            "import http.server, subprocess\n{child}\
             http.server.HTTPServer(('127.0.0.1', {port}), http.server.SimpleHTTPRequestHandler).serve_forever()\n"
        );
        std::process::Command::new(program)
            .args(["-c", &script])
            .current_dir(std::env::temp_dir())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Waits for `port` to be offered; returns every offer seen until then and for a
    /// second after.
    async fn offers_until(
        offers: &mut mpsc::UnboundedReceiver<PortCandidate>,
        port: u16,
    ) -> Vec<PortCandidate> {
        let mut seen = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(offer) = offers.recv().await {
                let done = offer.port == port;
                seen.push(offer);
                if done {
                    break;
                }
            }
        })
        .await;
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(offer) = offers.recv().await {
                seen.push(offer);
            }
        })
        .await;
        seen
    }

    /// A stand-in Codex (a Python process called `codex`) listens itself and starts a dev
    /// server: the dev server is offered, with its command and folder; Codex's own port,
    /// and a server outside its tree, are not.
    #[tokio::test]
    async fn only_what_codex_started_is_offered() {
        let dir = std::env::temp_dir().join(format!("linzumi-watcher-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let codex = dir.join("codex");
        // The real binary: a symlink to a wrapper script (pyenv's shim) would not be named
        // `codex` once it runs.
        std::os::unix::fs::symlink(PYTHON, &codex).unwrap();
        let (codex_port, dev_port, outside_port) = (free_port(), free_port(), free_port());
        let mut root = python_server(&codex, codex_port, Some(dev_port));
        let mut outside = python_server(std::path::Path::new(PYTHON), outside_port, None);
        let root_pid = root.id();
        let (watcher, mut offers) = PortWatcher::start(
            Arc::new(move || vec![root_pid]),
            listen_table::system(),
            SCAN_INTERVAL,
            DEBOUNCE,
        );
        let seen = offers_until(&mut offers, dev_port).await;
        let ports: Vec<u16> = seen.iter().map(|offer| offer.port).collect();
        assert_eq!(ports, [dev_port], "{seen:?}");
        let offer = &seen[0];
        assert_eq!(offer.command, "python3");
        assert!(
            offer.command_line.contains("http.server"),
            "{}",
            offer.command_line
        );
        let temp = std::fs::canonicalize(std::env::temp_dir()).unwrap();
        assert_eq!(offer.cwd.as_deref(), temp.to_str());
        drop(watcher);
        for pid in crate::process_tree::tree(root_pid) {
            crate::process_tree::signal(&[pid], crate::process_tree::Signal::Kill);
        }
        for child in [&mut root, &mut outside] {
            let _ = child.kill();
            child.wait().unwrap();
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Without a Codex process (attached to one started elsewhere) nothing is offered.
    #[tokio::test]
    async fn without_roots_nothing_is_offered() {
        let port = free_port();
        let mut server = python_server(std::path::Path::new(PYTHON), port, None);
        let (watcher, mut offers) = PortWatcher::start(
            Arc::new(Vec::new),
            listen_table::system(),
            SCAN_INTERVAL,
            DEBOUNCE,
        );
        // Several debounce periods after the server is up.
        let offer = tokio::time::timeout(Duration::from_secs(3), offers.recv()).await;
        assert!(offer.is_err(), "{offer:?}");
        drop(watcher);
        server.kill().unwrap();
        server.wait().unwrap();
    }
}
