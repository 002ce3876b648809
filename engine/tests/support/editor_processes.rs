//! The processes of one test's code-server, and what they listen on, read from `/proc`
//! (Linux). Several tests' editors run under the same test process; each test's editor
//! is told apart by its user-data folder, which is on its command line.
#![allow(dead_code)] // each test file uses a different part

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use linzumi_engine::process_tree::ProcessTable;

/// A listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listener {
    /// Address as `/proc/net/tcp*` shows it (hex), and the port.
    Tcp { address: String, port: u16 },
    /// A Unix socket bound to a path.
    Unix(PathBuf),
    /// A Unix socket in the abstract namespace: no file, so no permissions at all.
    Abstract(String),
}

/// The code-server processes started with `data_dir` by this test process, and every
/// process they started.
pub fn editor_processes(data_dir: &Path) -> Vec<u32> {
    let marker = data_dir.to_string_lossy().into_owned();
    let table = ProcessTable::read().unwrap();
    let mut pids: Vec<u32> = table
        .tree(std::process::id())
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|bytes| String::from_utf8_lossy(&bytes).contains(&marker))
        })
        .flat_map(|pid| table.tree(pid))
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// What the editor started with `data_dir` listens on, with the process holding each.
pub fn editor_listeners(data_dir: &Path) -> Vec<(u32, Listener)> {
    listening_sockets(&editor_processes(data_dir))
}

/// The process serving the editor's HTTP: the one holding its `editor.sock`.
pub fn editor_server_pid(data_dir: &Path) -> u32 {
    let listeners = editor_listeners(data_dir);
    listeners
        .iter()
        .find_map(|(pid, listener)| match listener {
            Listener::Unix(path) if path.ends_with("editor.sock") => Some(*pid),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no editor socket among {listeners:?}"))
}

/// The listening sockets held by `pids`, each with the pid holding it.
pub fn listening_sockets(pids: &[u32]) -> Vec<(u32, Listener)> {
    let mut holders = std::collections::HashMap::new();
    for pid in pids {
        let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(link) = std::fs::read_link(entry.path()) else {
                continue;
            };
            let link = link.to_string_lossy().into_owned();
            if let Some(inode) = link
                .strip_prefix("socket:[")
                .and_then(|rest| rest.strip_suffix(']'))
            {
                holders.insert(inode.to_owned(), *pid);
            }
        }
    }
    let mut found = Vec::new();
    let mut seen = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let Some((address, port)) = local.split_once(':') else {
                continue;
            };
            if let Some(pid) = holders.get(*inode).filter(|_| *state == "0A")
                && seen.insert(inode.to_string())
            {
                let listener = Listener::Tcp {
                    address: address.to_owned(),
                    port: u16::from_str_radix(port, 16).unwrap(),
                };
                found.push((*pid, listener));
            }
        }
    }
    let unix = std::fs::read_to_string("/proc/net/unix").unwrap();
    for line in unix.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Num RefCount Protocol Flags Type St Inode [Path]; flag 0x10000 is "listening".
        let (Some(flags), Some(inode)) = (fields.get(3), fields.get(6)) else {
            continue;
        };
        let listening = u32::from_str_radix(flags, 16).is_ok_and(|flags| flags & 0x10000 != 0);
        let Some(pid) = holders.get(*inode).filter(|_| listening) else {
            continue;
        };
        match fields.get(7) {
            Some(name) if name.starts_with('@') => {
                found.push((*pid, Listener::Abstract(name[1..].to_owned())));
            }
            Some(path) => found.push((*pid, Listener::Unix(PathBuf::from(path)))),
            None => {}
        }
    }
    found
}
