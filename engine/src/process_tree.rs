//! Ending a process and everything it started.
//!
//! Killing a process group is not enough for Codex: it runs commands in sessions of
//! their own (through its sandbox launcher), and the npm `codex` is a Node wrapper whose
//! native child outlives it. So the tree is read from the OS process table (parent
//! links, via `sysinfo`) *before* any signal is sent, because once a parent dies its
//! children are re-parented and the link is lost.
use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::{OsStr, OsString};

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// The OS process table, reduced to what trees need: parent links and names. Threads
/// are left out: on Linux `sysinfo` lists them as processes whose parent is their
/// process, and they share its sockets, so they would pass for listening children.
pub struct ProcessTable {
    children: HashMap<u32, Vec<u32>>,
    names: HashMap<u32, OsString>,
}

impl ProcessTable {
    /// Reads the table; `None` on a platform without one.
    pub fn read() -> Option<ProcessTable> {
        let mut system = System::new().ok()?;
        system.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing(),
        );
        let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
        let mut names = HashMap::new();
        for (pid, process) in system.processes() {
            if process.thread_kind().is_some() {
                continue;
            }
            names.insert(pid.as_u32(), process.name().to_owned());
            if let Some(parent) = process.parent() {
                children
                    .entry(parent.as_u32())
                    .or_default()
                    .push(pid.as_u32());
            }
        }
        Some(ProcessTable { children, names })
    }

    /// `root` and every process descending from it, root first (breadth-first).
    pub fn tree(&self, root: u32) -> Vec<u32> {
        self.walk(root, |_| true)
    }

    /// `root` and the descendants reachable through processes for which `follow` holds.
    pub fn walk(&self, root: u32, follow: impl Fn(&OsStr) -> bool) -> Vec<u32> {
        let mut seen = HashSet::from([root]);
        let mut order = vec![root];
        let mut queue = VecDeque::from([root]);
        while let Some(pid) = queue.pop_front() {
            for &child in self.children.get(&pid).into_iter().flatten() {
                let name = self.names.get(&child).map(OsString::as_os_str);
                if name.is_some_and(&follow) && seen.insert(child) {
                    order.push(child);
                    queue.push_back(child);
                }
            }
        }
        order
    }
}

/// `root` and every process descending from it, root first (breadth-first).
pub fn tree(root: u32) -> Vec<u32> {
    // Without a process table (unsupported platform) the root is all we know of.
    ProcessTable::read().map_or_else(|| vec![root], |table| table.tree(root))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Ask to exit (SIGTERM; on Windows there is no polite signal, so this kills).
    Terminate,
    /// Ctrl-C (SIGINT): servers such as code-server clean up only on this one. On
    /// Windows this kills too.
    Interrupt,
    Kill,
}

/// Sends `signal` to each process. Missing processes are skipped.
pub fn signal(pids: &[u32], signal: Signal) {
    for &pid in pids {
        send(pid, signal);
    }
}

/// Sends `signal` to the process group `group` (unix): it reaches the members whose
/// parent already died, whom the process table no longer links to the tree.
#[cfg(unix)]
pub fn signal_group(group: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(group) else {
        return;
    };
    // ESRCH: the group is already empty.
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(raw), unix_signal(signal));
}

#[cfg(unix)]
fn unix_signal(signal: Signal) -> nix::sys::signal::Signal {
    use nix::sys::signal::Signal as Unix;
    match signal {
        Signal::Terminate => Unix::SIGTERM,
        Signal::Interrupt => Unix::SIGINT,
        Signal::Kill => Unix::SIGKILL,
    }
}

#[cfg(unix)]
fn send(pid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pid) else {
        return;
    };
    // ESRCH (already gone) is the expected outcome for some of them.
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), unix_signal(signal));
}

#[cfg(not(unix))]
fn send(pid: u32, _signal: Signal) {
    let Ok(mut system) = System::new() else {
        return;
    };
    let pid = Pid::from_u32(pid);
    system.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        true,
        ProcessRefreshKind::nothing(),
    );
    if let Some(process) = system.process(pid) {
        process.kill();
    }
}

/// Whether `pid` is a live process (a zombie does not count).
pub fn alive(pid: u32) -> bool {
    let Ok(mut system) = System::new() else {
        return false;
    };
    let pid = Pid::from_u32(pid);
    system.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        true,
        ProcessRefreshKind::nothing(),
    );
    system
        .process(pid)
        .is_some_and(|process| process.status() != sysinfo::ProcessStatus::Zombie)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    #[cfg(unix)]
    fn finds_grandchildren_in_their_own_sessions() {
        // sh → setsid sh → sleep: the grandchild leaves the group, as Codex's commands do.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "setsid sh -c 'sleep 30 & wait' & wait"])
            .spawn()
            .unwrap();
        let root = child.id();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut found = tree(root);
        while found.len() < 3 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            found = tree(root);
        }
        assert_eq!(found[0], root);
        assert!(found.len() >= 3, "sh, the setsid sh and sleep: {found:?}");

        signal(&found, Signal::Kill);
        let _ = child.wait();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while found.iter().any(|&pid| alive(pid)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(found.iter().all(|&pid| !alive(pid)), "{found:?}");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn threads_are_not_children() {
        let (release, parked) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || parked.recv());
        let me = std::process::id();
        let tasks: Vec<u32> = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .filter(|&task| task != me)
            .collect();
        assert!(!tasks.is_empty(), "this test runs with a second thread");
        let found = tree(me);
        assert!(
            tasks.iter().all(|task| !found.contains(task)),
            "{found:?} has threads {tasks:?}"
        );
        drop(release);
        let _ = thread.join();
    }
}
