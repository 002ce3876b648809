//! Where the loopback OAuth callback listens (seed `oauthCallbackHost`).
//!
//! The browser that signs in must reach the callback. An explicit `--oauth-callback-host`
//! wins; otherwise, when Kandan itself is addressed by a private-network IPv4 address (a LAN
//! or tailnet test server), the callback uses that same address, since the browser evidently
//! reaches it; otherwise `127.0.0.1`.
use std::net::Ipv4Addr;

use crate::kandan_url::KandanUrl;

/// The fallback: the browser runs on this computer.
pub const LOOPBACK_HOST: &str = "127.0.0.1";

/// The host the callback server binds and puts in its redirect URI.
pub fn callback_host(kandan: &KandanUrl, explicit: Option<&str>) -> String {
    if let Some(host) = explicit.map(str::trim).filter(|host| !host.is_empty()) {
        return host.to_owned();
    }
    match kandan.host().map(str::trim) {
        Some(host) if is_private_ipv4(host) => host.to_owned(),
        _ => LOOPBACK_HOST.to_owned(),
    }
}

/// Whether `host` is a dotted-quad IPv4 address in 10/8, 127/8, 172.16/12, 192.168/16,
/// 169.254/16 (link-local) or 100.64/10 (carrier-grade NAT, used by tailnets). Names,
/// `localhost` included, are not.
pub fn is_private_ipv4(host: &str) -> bool {
    let Ok(address) = host.parse::<Ipv4Addr>() else {
        return false;
    };
    let [a, b, _, _] = address.octets();
    a == 10
        || a == 127
        || (a == 172 && (16..=31).contains(&b))
        || (a == 192 && b == 168)
        || (a == 169 && b == 254)
        || (a == 100 && (64..=127).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_for(kandan: &str, explicit: Option<&str>) -> String {
        callback_host(&KandanUrl::parse(kandan).unwrap(), explicit)
    }

    #[test]
    fn explicit_host_wins() {
        assert_eq!(
            host_for("wss://serve.kandanai.com", Some(" 100.71.192.98 ")),
            "100.71.192.98"
        );
        assert_eq!(
            host_for("ws://10.0.0.5:4160", Some("192.168.1.9")),
            "192.168.1.9"
        );
    }

    #[test]
    fn blank_explicit_host_is_ignored() {
        assert_eq!(host_for("ws://10.0.0.5:4160", Some("  ")), "10.0.0.5");
        assert_eq!(host_for("wss://serve.kandanai.com", Some("")), "127.0.0.1");
    }

    #[test]
    fn private_kandan_hosts_are_reused() {
        for host in [
            "10.0.0.1",
            "10.255.255.255",
            "127.0.0.1",
            "127.4.5.6",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.0.10",
            "169.254.1.1",
            "100.64.0.1",
            "100.71.192.98",
            "100.127.255.255",
        ] {
            assert_eq!(host_for(&format!("ws://{host}:4160"), None), host, "{host}");
        }
    }

    #[test]
    fn public_and_named_hosts_fall_back_to_loopback() {
        for host in [
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "192.169.0.1",
            "169.253.0.1",
            "11.0.0.1",
            "8.8.8.8",
            "localhost",
            "serve.kandanai.com",
            "[::1]",
            "[fd00::1]",
        ] {
            assert_eq!(
                host_for(&format!("ws://{host}:4160"), None),
                "127.0.0.1",
                "{host}"
            );
        }
    }

    #[test]
    fn only_dotted_quads_count() {
        assert!(!is_private_ipv4("10.0.0"));
        assert!(!is_private_ipv4("10.0.0.256"));
        assert!(!is_private_ipv4("10.0.0.1.2"));
        assert!(!is_private_ipv4(""));
        assert!(is_private_ipv4("10.1.2.3"));
    }
}
