//! Where code-server listens, so that only the runner reaches it. The editor runs with the
//! owner's rights and without a password of its own (`--auth none`): whoever reaches it
//! reads any file of the owner's (`/vscode-remote-resource?path=…`) and runs commands.
//! On a loopback port that would be every other user of the computer, and any web page
//! in the owner's browser whose name was rebound to 127.0.0.1.
//!
//! - Unix: code-server listens on a socket in a folder only the owner may enter (0700,
//!   made new with a random name under `$XDG_RUNTIME_DIR` or the temp folder, never one
//!   that already exists), its session socket beside it. Kandan still addresses the editor
//!   by a port number: a loopback port the runner binds but never listens on, so nothing
//!   accepts connections there and (on Linux) no dev server can bind it while the editor
//!   runs. The forwarder maps that number to the socket ([`Endpoint::UnixSocket`]).
//! - Elsewhere (Windows): code-server listens on a loopback port with a password nobody
//!   knows, a random value given as `HASHED_PASSWORD`. code-server accepts its session
//!   cookie when it equals that value, so the forwarder adds the cookie to every request
//!   ([`Endpoint::LoopbackWithCookie`]); finding a password that hashes to it would take
//!   a SHA-256 preimage. The security tests run this variant on Linux; Windows itself is
//!   untested, and not even compiled, here.
use std::path::PathBuf;

use tokio::process::Command;

use crate::forwarding::routes::{Endpoint, SecretCookie};

/// How code-server is kept out of everyone's reach but the runner's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// A Unix socket in a private folder.
    #[cfg(unix)]
    UnixSocket,
    /// A loopback port that serves only requests carrying the runner's secret cookie.
    SecretCookie,
}

impl Isolation {
    /// The isolation of the platform the runner was built for.
    pub fn of_this_platform() -> Isolation {
        #[cfg(unix)]
        return Isolation::UnixSocket;
        #[cfg(not(unix))]
        return Isolation::SecretCookie;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("could not create a private folder for the editor's socket in {base}: {reason}")]
    Folder { base: PathBuf, reason: String },
    #[error(
        "the editor's socket path {0} is too long for a Unix socket: set TMPDIR (or XDG_RUNTIME_DIR) to a shorter folder"
    )]
    PathTooLong(PathBuf),
    #[error("no free loopback port for the editor: {0}")]
    NoPort(std::io::Error),
}

/// The name of code-server's session cookie.
const SESSION_COOKIE: &str = "code-server-session";

/// Where one code-server listens. Held while it runs: dropping it frees the port number
/// and removes the private folder.
pub struct Listener {
    port: u16,
    held: Held,
}

enum Held {
    #[cfg(unix)]
    UnixSocket {
        folder: unix::PrivateFolder,
        /// Bound to `127.0.0.1:<port>` and never listening.
        _reserved: tokio::net::TcpSocket,
    },
    SecretCookie {
        value: String,
    },
}

impl Listener {
    pub fn open(isolation: Isolation) -> Result<Listener, ListenError> {
        match isolation {
            #[cfg(unix)]
            Isolation::UnixSocket => {
                let folder = unix::PrivateFolder::create()?;
                let (reserved, port) =
                    unix::reserve_loopback_port().map_err(ListenError::NoPort)?;
                Ok(Listener {
                    port,
                    held: Held::UnixSocket {
                        folder,
                        _reserved: reserved,
                    },
                })
            }
            Isolation::SecretCookie => {
                let port = super::launch::free_loopback_port().map_err(ListenError::NoPort)?;
                let value: String = rand::random::<[u8; 32]>()
                    .iter()
                    .map(|byte| format!("{byte:02x}"))
                    .collect();
                Ok(Listener {
                    port,
                    held: Held::SecretCookie { value },
                })
            }
        }
    }

    /// The number Kandan addresses the editor by.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the forwarder dials that number.
    pub fn endpoint(&self) -> Endpoint {
        match &self.held {
            #[cfg(unix)]
            Held::UnixSocket { folder, .. } => Endpoint::UnixSocket(folder.socket()),
            Held::SecretCookie { value } => Endpoint::LoopbackWithCookie(SecretCookie {
                name: SESSION_COOKIE,
                value: value.clone(),
            }),
        }
    }

    /// code-server's arguments (and environment) for listening here.
    pub fn configure(&self, command: &mut Command) {
        match &self.held {
            #[cfg(unix)]
            Held::UnixSocket { folder, .. } => {
                command
                    .arg("--socket")
                    .arg(folder.socket())
                    .args(["--socket-mode", "600", "--auth", "none"])
                    // Its default is in the user-data folder, which others may enter.
                    .arg("--session-socket")
                    .arg(folder.session_socket());
            }
            Held::SecretCookie { value } => {
                command
                    .arg("--bind-addr")
                    .arg(format!("127.0.0.1:{}", self.port))
                    .args(["--auth", "password"])
                    // code-server deletes it from its environment once read, so nothing
                    // the editor runs sees it.
                    .env("HASHED_PASSWORD", value);
            }
        }
    }
}

#[cfg(unix)]
mod unix {
    use std::path::{Path, PathBuf};

    use super::ListenError;

    /// The longest socket path every Unix takes (macOS: 104 bytes with the NUL).
    const MAX_SOCKET_PATH: usize = 103;
    /// How many random names are tried when one is taken.
    const NAME_ATTEMPTS: usize = 8;
    /// code-server's socket in the folder.
    const SOCKET: &str = "editor.sock";

    /// A folder only this user may enter, removed when dropped.
    pub struct PrivateFolder(PathBuf);

    impl PrivateFolder {
        /// A new folder under `$XDG_RUNTIME_DIR` (the user's own, 0700) or else the temp
        /// folder (per user on macOS; sticky on Linux, so nobody else can move it).
        pub fn create() -> Result<PrivateFolder, ListenError> {
            let base = std::env::var_os("XDG_RUNTIME_DIR")
                .map(PathBuf::from)
                .filter(|dir| dir.is_absolute() && dir.is_dir())
                .unwrap_or_else(std::env::temp_dir);
            PrivateFolder::create_in(&base)
        }

        pub fn create_in(base: &Path) -> Result<PrivateFolder, ListenError> {
            use std::os::unix::fs::DirBuilderExt as _;
            let failed = |reason: String| ListenError::Folder {
                base: base.to_owned(),
                reason,
            };
            for _ in 0..NAME_ATTEMPTS {
                let path = base.join(format!("linzumi-{:016x}", rand::random::<u64>()));
                let socket = path.join(SOCKET);
                if socket.as_os_str().len() > MAX_SOCKET_PATH {
                    return Err(ListenError::PathTooLong(socket));
                }
                // mkdir creates a new folder or fails: it never follows a symlink or
                // reuses what is there, so the folder is this user's, with no more than
                // 0700 (a umask only takes rights away).
                match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                    Ok(()) => return Ok(PrivateFolder(path)),
                    Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(error) => return Err(failed(error.to_string())),
                }
            }
            Err(failed(format!(
                "{NAME_ATTEMPTS} random names were all taken"
            )))
        }

        pub fn socket(&self) -> PathBuf {
            self.0.join(SOCKET)
        }

        pub fn session_socket(&self) -> PathBuf {
            self.0.join("session.sock")
        }

        #[cfg(test)]
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for PrivateFolder {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A loopback port bound and never listened on: connecting to it is refused. Linux
    /// refuses any other bind of it on 127.0.0.1, on every address or dual-stack (this
    /// socket has no `SO_REUSEADDR`). Where a bind does succeed (another address such as
    /// [::1]; macOS lets a wildcard bind with `SO_REUSEADDR` through), the forwarder still
    /// dials the editor's socket for this number, never the port.
    pub fn reserve_loopback_port() -> std::io::Result<(tokio::net::TcpSocket, u16)> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind((std::net::Ipv4Addr::LOCALHOST, 0).into())?;
        let port = socket.local_addr()?.port();
        Ok((socket, port))
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::unix::{PrivateFolder, reserve_loopback_port};
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn the_private_folder_is_new_the_owners_alone_and_removed_after() {
        let base = std::env::temp_dir().join(format!(
            "linzumi-listen-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&base).unwrap();
        let folder = PrivateFolder::create_in(&base).unwrap();
        let path = folder.path().to_owned();
        let metadata = std::fs::symlink_metadata(&path).unwrap();
        assert!(metadata.is_dir());
        assert_eq!(metadata.permissions().mode() & 0o777, 0o700);
        assert!(folder.socket().starts_with(&path));
        drop(folder);
        assert!(!path.exists());
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn a_path_too_long_for_a_socket_is_refused_up_front() {
        let base = PathBuf::from("/").join("x".repeat(100));
        match PrivateFolder::create_in(&base) {
            Err(ListenError::PathTooLong(path)) => assert!(path.ends_with("editor.sock")),
            other => panic!("expected PathTooLong, got {:?}", other.err()),
        }
    }

    #[test]
    fn the_reserved_port_accepts_nothing_and_cannot_be_bound_again() {
        let (_reserved, port) = reserve_loopback_port().unwrap();
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
        assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_err());
        assert!(std::net::TcpListener::bind(("0.0.0.0", port)).is_err());
    }

    #[test]
    fn each_isolation_names_its_endpoint_and_arguments() {
        let listener = Listener::open(Isolation::UnixSocket).unwrap();
        let Endpoint::UnixSocket(socket) = listener.endpoint() else {
            panic!("not a socket: {:?}", listener.endpoint());
        };
        let folder = socket.parent().unwrap().to_owned();
        let mut command = Command::new("code-server");
        listener.configure(&mut command);
        let args: Vec<_> = command.as_std().get_args().collect();
        assert!(args.contains(&socket.as_os_str()), "{args:?}");
        assert!(!args.iter().any(|arg| *arg == "--bind-addr"), "{args:?}");
        drop(listener);
        assert!(!folder.exists());

        let listener = Listener::open(Isolation::SecretCookie).unwrap();
        let Endpoint::LoopbackWithCookie(cookie) = listener.endpoint() else {
            panic!("no cookie: {:?}", listener.endpoint());
        };
        assert_eq!(cookie.name, "code-server-session");
        assert_eq!(cookie.value.len(), 64);
        let mut command = Command::new("code-server");
        listener.configure(&mut command);
        let env: Vec<_> = command.as_std().get_envs().collect();
        assert_eq!(
            env,
            vec![(
                std::ffi::OsStr::new("HASHED_PASSWORD"),
                Some(std::ffi::OsStr::new(&cookie.value))
            )]
        );
    }
}
