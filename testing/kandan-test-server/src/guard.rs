//! Who may talk to the server. It runs on the developer's computer (the local demo, the
//! binary), where any web page the browser shows and any other local user can reach its
//! port, so three checks stand in front of the routes:
//!
//! - [`host`]: only loopback names reach it (`127.0.0.1`, `[::1]`, `localhost`, the preview
//!   hosts under `.preview.localhost`, and the address it was told to bind). A page on
//!   `evil.example` whose name is re-pointed at 127.0.0.1 (DNS rebinding) sends its own name
//!   as `Host` and is refused. The port is not compared: rebinding cannot change the name
//!   to a loopback one, and a TLS proxy in front of the server (a test) has a port of its own.
//! - [`same_origin`]: a state-changing request (any method but GET, HEAD and OPTIONS) that
//!   carries an `Origin` must come from the server's own origin. Browsers send `Origin` with
//!   every such request, bodyless ones included; other clients send none. Previews are
//!   exempt: their traffic is the previewed app's.
//! - [`admin_key`]: with [`crate::ServerConfig::admin_key`] set (the binary and `linzumi
//!   demo` always set one), `/__admin/*` and `/demo` need the key, as the `x-kandan-admin-key`
//!   header or the `key` query parameter (the demo page's `EventSource` cannot send headers).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::preview;
use crate::server::ServerCore;

/// The header that carries the admin key.
pub const ADMIN_KEY_HEADER: &str = "x-kandan-admin-key";
/// The query parameter that carries the admin key.
pub const ADMIN_KEY_PARAM: &str = "key";

/// The per-run secret of the admin API and the demo page. `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminKey(String);

impl AdminKey {
    /// 32 bytes from the thread-local CSPRNG (seeded from the operating system), base64url.
    pub fn generate() -> AdminKey {
        AdminKey(URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()))
    }

    /// The key itself, to put in a URL or a header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn matches(&self, offered: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), offered.as_bytes())
    }
}

impl fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminKey(REDACTED)")
    }
}

/// The outermost middleware: refuses requests for a name that is not this server's.
pub(crate) async fn host(
    State(core): State<Arc<ServerCore>>,
    request: Request,
    next: Next,
) -> Response {
    match check_hosts(&core, &request) {
        Ok(()) => next.run(request).await,
        Err(problem) => refuse(StatusCode::FORBIDDEN, &problem),
    }
}

/// Every `Host` header (or, without one, the target's authority) must name us; a request
/// that names no host is refused too. Browsers, the clients rebinding fools, always send
/// `Host` and never an absolute-form target; the preview router reads the same header.
fn check_hosts(core: &ServerCore, request: &Request) -> Result<(), String> {
    let mut named = Vec::new();
    for value in request.headers().get_all(header::HOST) {
        named.push(
            value
                .to_str()
                .map_err(|_| "the Host header is not ASCII".to_owned())?
                .to_owned(),
        );
    }
    if let (true, Some(authority)) = (named.is_empty(), request.uri().authority()) {
        named.push(authority.to_string());
    }
    if named.is_empty() {
        return Err("the request names no Host".to_owned());
    }
    match named.iter().find(|host| !is_own_host(core.addr.ip(), host)) {
        Some(foreign) => Err(format!(
            "Host {foreign:?} is not this server: use http://{}",
            core.addr
        )),
        None => Ok(()),
    }
}

/// `host[:port]` names this server (bound to `bound`): a loopback address, the bound
/// address, `localhost`, or a name under the preview domain (the preview router refuses
/// malformed ones itself).
fn is_own_host(bound: IpAddr, host: &str) -> bool {
    let name = preview::host_name(host).to_ascii_lowercase();
    let literal = name.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        // Brackets exactly when it is IPv6, as a URL writes it.
        return (ip.is_ipv6() == name.starts_with('['))
            && (ip.is_loopback() || (ip == bound && !ip.is_unspecified()));
    }
    name == "localhost" || preview::is_preview_host_name(&name)
}

/// Refuses a state-changing request from another origin (inside the preview router: the
/// server's own routes only).
pub(crate) async fn same_origin(request: Request, next: Next) -> Response {
    if is_safe(request.method()) {
        return next.run(request).await;
    }
    match foreign_origin(request.headers()) {
        None => next.run(request).await,
        Some(origin) => refuse(
            StatusCode::FORBIDDEN,
            &format!(
                "refused a {} from another origin ({origin}): this server acts only on its own pages",
                request.method()
            ),
        ),
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The first `Origin` that is not `http(s)://<Host>`, if any. `Origin: null` (a sandboxed
/// frame, a redirected form) is foreign.
fn foreign_origin(headers: &HeaderMap) -> Option<String> {
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .unwrap_or("");
    headers.get_all(header::ORIGIN).iter().find_map(|origin| {
        let text = String::from_utf8_lossy(origin.as_bytes());
        let own = ["http://", "https://"].iter().any(|scheme| {
            text.strip_prefix(scheme)
                .is_some_and(|rest| !host.is_empty() && rest.eq_ignore_ascii_case(host))
        });
        (!own).then(|| format!("{text:?}"))
    })
}

/// Lets the request through only with the admin key, when the server has one.
pub(crate) async fn admin_key(
    State(core): State<Arc<ServerCore>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(key) = &core.admin_key else {
        return next.run(request).await;
    };
    match offered_key(&request) {
        Some(offered) if key.matches(&offered) => next.run(request).await,
        Some(_) => refuse(StatusCode::FORBIDDEN, "wrong admin key"),
        None => refuse(
            StatusCode::UNAUTHORIZED,
            &format!(
                "this needs the server's admin key: open the URL the server printed \
                 (/demo?{ADMIN_KEY_PARAM}=…) or send the {ADMIN_KEY_HEADER} header"
            ),
        ),
    }
}

fn offered_key(request: &Request) -> Option<String> {
    if let Some(value) = request.headers().get(ADMIN_KEY_HEADER) {
        return Some(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let query = request.uri().query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == ADMIN_KEY_PARAM)
        .map(|(_, value)| value.into_owned())
}

/// Whether `offered` is the server's admin key, or the server has none.
pub(crate) fn key_accepted(core: &ServerCore, offered: Option<&str>) -> bool {
    match (&core.admin_key, offered) {
        (None, _) => true,
        (Some(key), Some(offered)) => key.matches(offered),
        (Some(_), None) => false,
    }
}

/// Compares without stopping at the first difference, so timing does not reveal a secret.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn refuse(status: StatusCode, problem: &str) -> Response {
    tracing::warn!(%status, problem, "refused a request");
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        format!("{problem}\n"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn only_loopback_names_are_ours() {
        let loopback = IpAddr::from([127, 0, 0, 1]);
        for good in [
            "127.0.0.1:4160",
            "127.0.0.1",
            "127.9.9.9:1",
            "LOCALHOST:4160",
            "localhost",
            "[::1]:4160",
            "[::1]",
            "p3000-runner-1.preview.localhost:4160",
            "x.preview.localhost",
        ] {
            assert!(is_own_host(loopback, good), "{good}");
        }
        for bad in [
            "evil.example:4160",
            "evil.example",
            "127.0.0.1.nip.io:4160",
            "localhost.evil.example",
            "evil.localhost:4160",
            "preview.localhost",
            "10.0.0.5:4160",
            "0.0.0.0:4160",
            "::1",
            "[127.0.0.1]:4160",
            "127.0.0.1:4160x",
            "",
        ] {
            assert!(!is_own_host(loopback, bad), "{bad}");
        }
        let lan = IpAddr::from([10, 0, 0, 5]);
        assert!(is_own_host(lan, "10.0.0.5:4160"));
        assert!(!is_own_host(lan, "10.0.0.6:4160"));
        assert!(!is_own_host(IpAddr::from([0, 0, 0, 0]), "0.0.0.0:4160"));
    }

    #[test]
    fn origins_must_match_the_host() {
        let own = headers(&[
            ("host", "127.0.0.1:4160"),
            ("origin", "http://127.0.0.1:4160"),
        ]);
        assert_eq!(foreign_origin(&own), None);
        assert_eq!(foreign_origin(&headers(&[("host", "h:1")])), None);
        for bad in [
            "http://evil.example:4160",
            "null",
            "http://127.0.0.1:4161",
            "http://127.0.0.1:4160.evil",
            "ftp://127.0.0.1:4160",
        ] {
            let map = headers(&[("host", "127.0.0.1:4160"), ("origin", bad)]);
            assert!(foreign_origin(&map).is_some(), "{bad}");
        }
        assert!(foreign_origin(&headers(&[("origin", "http://")])).is_some());
    }

    #[test]
    fn keys_are_random_and_hidden() {
        let (a, b) = (AdminKey::generate(), AdminKey::generate());
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 43);
        assert_eq!(format!("{a:?}"), "AdminKey(REDACTED)");
        assert!(a.matches(a.expose()));
        assert!(!a.matches(b.expose()));
        assert!(!a.matches(""));
    }
}
