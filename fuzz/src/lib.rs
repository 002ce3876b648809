//! Checks shared by the fuzz targets. Each one panics (a libFuzzer crash, with the input
//! saved under fuzz/artifacts/) when the engine breaks a promise its docs make, so the
//! targets test properties, not only the absence of panics.
use std::collections::BTreeSet;

use linzumi_engine::forwarding::guard::{self, LocalTarget, MAX_HEADERS, Refused};
use linzumi_engine::forwarding::routes::{Endpoint, Routes};

/// Runs the forwarding guard (protocol §6.3) and checks what it promises about anything
/// it lets through: the target is `127.0.0.1:<allowed port>`, the path is origin-form,
/// no hop-by-hop header survives, and Host and Origin name the local target.
pub fn check_admit(
    allowed: &BTreeSet<u16>,
    port: u16,
    path: &str,
    query: Option<&str>,
    headers: Vec<(String, String)>,
) -> Option<LocalTarget> {
    let count = headers.len();
    let listed = guard::connection_tokens(&headers);
    let routes = Routes::loopback(allowed.iter().copied());
    let target = match guard::admit(&routes, port, path, query, headers) {
        Ok(target) => target,
        Err(Refused::PortNotAllowed(refused)) => {
            assert_eq!(refused, port);
            assert!(!allowed.contains(&port), "refused an allowed port {port}");
            return None;
        }
        Err(_) => return None,
    };
    assert!(
        allowed.contains(&port),
        "admitted port {port} not in {allowed:?}"
    );
    assert_eq!(target.port, port);
    assert_eq!(target.endpoint, Endpoint::Loopback);
    assert!(count <= MAX_HEADERS, "admitted {count} headers");
    let authority = format!("127.0.0.1:{port}");
    assert_eq!(target.authority(), authority);

    let pq = &target.path_and_query;
    assert!(pq.starts_with('/'), "not origin-form: {pq:?}");
    assert!(
        !pq.starts_with("//") && !pq.starts_with("/\\"),
        "network-path reference admitted: {pq:?}"
    );
    let (admitted_path, admitted_query) = match pq.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (pq.as_str(), None),
    };
    assert_eq!(admitted_path, path, "the path was changed");
    assert!(
        !admitted_path
            .chars()
            .any(|c| c.is_control() || c == ' ' || c == '#'),
        "path with a control character, space or '#': {pq:?}"
    );
    match query.filter(|query| !query.is_empty()) {
        Some(query) => {
            assert_eq!(admitted_query, Some(query));
            assert!(
                !query.contains(['#', ' ']),
                "query with '#' or space: {query:?}"
            );
        }
        None => assert_eq!(admitted_query, None),
    }

    // Exactly one Host, last, naming the local target; Origin agrees with it.
    let (last_name, last_value) = target.headers.last().expect("host header");
    assert_eq!(
        (last_name.as_str(), last_value.as_str()),
        ("host", authority.as_str())
    );
    for (name, value) in &target.headers[..target.headers.len() - 1] {
        assert!(
            !name.eq_ignore_ascii_case("host"),
            "a second Host: {value:?}"
        );
        assert!(
            !guard::is_hop_by_hop(name, &listed),
            "hop-by-hop header {name:?} forwarded"
        );
        if name.eq_ignore_ascii_case("origin") {
            assert_eq!(value, &format!("http://{authority}"));
        }
        assert!(
            http::HeaderName::from_bytes(name.as_bytes()).is_ok(),
            "{name:?}"
        );
        assert!(http::HeaderValue::from_str(value).is_ok(), "{value:?}");
    }

    // The URI the local clients build (local_http, local_ws) must still point at the
    // local target; an unparsable one is refused there, which is fine.
    for scheme in ["http", "ws"] {
        if let Ok(uri) = format!("{scheme}://{authority}{pq}").parse::<http::Uri>() {
            assert_eq!(uri.host(), Some("127.0.0.1"), "{uri}");
            assert_eq!(uri.port_u16(), Some(port), "{uri}");
        }
    }
    Some(target)
}

/// A small allowed-port set that sometimes contains `port`, chosen by `selector`.
pub fn allowed_ports(port: u16, selector: u8) -> BTreeSet<u16> {
    let mut allowed: BTreeSet<u16> = [3000, 8080].into_iter().collect();
    if selector & 1 == 1 {
        allowed.insert(port);
    }
    allowed
}
