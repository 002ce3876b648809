//! Where each port Kandan may address is dialled. Kandan only ever names a port number;
//! the runner alone knows whether that number is a dev server on `127.0.0.1:<port>` or a
//! server the runner started where nobody else can reach it (the editor): a Unix socket in
//! a private folder, or, where there are none, a loopback port that admits only requests
//! carrying a secret the forwarder adds.
use std::collections::BTreeMap;
use std::path::PathBuf;

/// How the forwarder reaches one allowed port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `127.0.0.1:<port>`: a dev server, a `--forward-port`, the collaboration server.
    Loopback,
    /// `127.0.0.1:<port>`, which serves only requests carrying this cookie; the forwarder
    /// adds it to every request (and drops any cookie of that name the browser sent).
    LoopbackWithCookie(SecretCookie),
    /// A Unix socket in a folder only this user may enter. The port number is only the
    /// name Kandan knows it by.
    #[cfg(unix)]
    UnixSocket(PathBuf),
}

/// A cookie only the runner knows. Its value never shows in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretCookie {
    pub name: &'static str,
    pub value: String,
}

impl std::fmt::Debug for SecretCookie {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "SecretCookie({}=REDACTED)", self.name)
    }
}

/// The ports forwarding may reach right now, each with its endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes(BTreeMap<u16, Endpoint>);

impl Routes {
    /// Every port on `127.0.0.1`.
    pub fn loopback(ports: impl IntoIterator<Item = u16>) -> Routes {
        Routes(
            ports
                .into_iter()
                .map(|port| (port, Endpoint::Loopback))
                .collect(),
        )
    }

    /// Allows `port`, reached at `endpoint`.
    pub fn allow(&mut self, port: u16, endpoint: Endpoint) {
        self.0.insert(port, endpoint);
    }

    /// Where `port` is dialled; `None` when it is not allowed.
    pub fn endpoint(&self, port: u16) -> Option<&Endpoint> {
        self.0.get(&port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_cookie_never_prints_its_value() {
        let cookie = SecretCookie {
            name: "session",
            value: "s3cr3t".into(),
        };
        let printed = format!("{:?}", Endpoint::LoopbackWithCookie(cookie));
        assert!(!printed.contains("s3cr3t"), "{printed}");
        assert!(printed.contains("session"), "{printed}");
    }

    #[test]
    fn only_allowed_ports_have_an_endpoint() {
        let mut routes = Routes::loopback([3000]);
        let secret = Endpoint::LoopbackWithCookie(SecretCookie {
            name: "session",
            value: "s".into(),
        });
        routes.allow(8080, secret.clone());
        assert_eq!(routes.endpoint(3000), Some(&Endpoint::Loopback));
        assert_eq!(routes.endpoint(8080), Some(&secret));
        assert_eq!(routes.endpoint(22), None);
    }
}
