//! Which processes listen on which TCP ports: the one platform-specific piece of port
//! detection, behind one trait. Linux asks the kernel's sock_diag for listening sockets,
//! then reads only the given processes' file descriptors in `/proc`; other systems use
//! `netstat2`, which asks the OS for sockets with their owning processes. Only the Linux
//! table is exercised here.
use std::collections::HashSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Listener {
    pub pid: u32,
    pub port: u16,
}

pub trait ListenTable: Send {
    /// Listening TCP sockets owned by any of `pids`.
    fn listeners(&mut self, pids: &HashSet<u32>) -> std::io::Result<Vec<Listener>>;

    /// A cheap summary of every listening socket on the system that changes whenever one
    /// opens or closes; `None` where there is no cheap way to tell.
    fn fingerprint(&mut self) -> std::io::Result<Option<u64>> {
        Ok(None)
    }
}

/// The table for this operating system.
pub fn system() -> Box<dyn ListenTable> {
    Box::new(SystemTable)
}

struct SystemTable;

#[cfg(target_os = "linux")]
impl ListenTable for SystemTable {
    fn fingerprint(&mut self) -> std::io::Result<Option<u64>> {
        use std::hash::{Hash, Hasher};

        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        super::sock_diag::listening_sockets()?.hash(&mut hasher);
        Ok(Some(hasher.finish()))
    }

    fn listeners(&mut self, pids: &HashSet<u32>) -> std::io::Result<Vec<Listener>> {
        use procfs::process::FDTarget;

        let ports_by_inode = super::sock_diag::listening_sockets()?;
        if ports_by_inode.is_empty() {
            return Ok(Vec::new());
        }
        let mut found = HashSet::new();
        for &pid in pids {
            let Ok(process) = procfs::process::Process::new(pid as i32) else {
                continue;
            };
            // A process that exited or is not ours to inspect has nothing to offer.
            let Ok(descriptors) = process.fd() else {
                continue;
            };
            for descriptor in descriptors.flatten() {
                if let FDTarget::Socket(inode) = descriptor.target
                    && let Some(&port) = ports_by_inode.get(&inode)
                {
                    found.insert(Listener { pid, port });
                }
            }
        }
        let mut found: Vec<Listener> = found.into_iter().collect();
        found.sort();
        Ok(found)
    }
}

#[cfg(not(target_os = "linux"))]
impl ListenTable for SystemTable {
    fn listeners(&mut self, pids: &HashSet<u32>) -> std::io::Result<Vec<Listener>> {
        use netstat2::{AddressFamilyFlags, ProtocolFlags, ProtocolSocketInfo, TcpState};
        let sockets = netstat2::get_sockets_info(
            AddressFamilyFlags::IPV4 | AddressFamilyFlags::IPV6,
            ProtocolFlags::TCP,
        )
        .map_err(|error| std::io::Error::other(error.to_string()))?;
        let mut found = HashSet::new();
        for socket in sockets {
            if let ProtocolSocketInfo::Tcp(tcp) = &socket.protocol_socket_info
                && tcp.state == TcpState::Listen
            {
                for &pid in &socket.associated_pids {
                    if pids.contains(&pid) {
                        found.insert(Listener {
                            pid,
                            port: tcp.local_port,
                        });
                    }
                }
            }
        }
        let mut found: Vec<Listener> = found.into_iter().collect();
        found.sort();
        Ok(found)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn finds_this_processs_listener_and_only_for_the_given_pids() {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        let me = std::process::id();
        let mut table = system();
        let found = table.listeners(&HashSet::from([me])).unwrap();
        assert!(found.contains(&Listener { pid: me, port }), "{found:?}");
        let others = table.listeners(&HashSet::from([1])).unwrap();
        assert!(!others.iter().any(|listener| listener.port == port));
    }

    #[test]
    fn the_fingerprint_changes_when_a_socket_listens_or_closes() {
        let mut table = system();
        let before = table.fingerprint().unwrap().unwrap();
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let listening = table.fingerprint().unwrap().unwrap();
        assert_ne!(before, listening);
        drop(socket);
        assert_ne!(table.fingerprint().unwrap().unwrap(), listening);
    }
}
