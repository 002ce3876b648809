//! Port previews (protocol §6): requests to `p<port>-<runnerId>.preview.localhost` (any method,
//! any path) or to `/preview/<runnerId>/<port>/<rest>` go to that runner's port through its
//! forward tunnel, as an http stream ([`preview_http`](crate::preview_http)) or, for a WebSocket
//! upgrade, a websocket stream ([`preview_websocket`](crate::preview_websocket)). Also the
//! preview link `GET /local-runners/<runnerId>/ports/<port>/preview`, which redirects to the
//! port's preview origin.
//!
//! [`dispatch`] wraps the whole router, so a preview host never reaches the server's own routes.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::server::ServerCore;
use crate::tunnel::{OpenError, OpenedStream, StreamEvent, StreamReceiver};
use crate::tunnel_codec::{Head, Open, StreamKind};
use crate::{preview_http, preview_websocket};

/// Host names under this suffix are previews.
const PREVIEW_HOST_SUFFIX: &str = ".preview.localhost";
const PREVIEW_PATH_PREFIX: &str = "/preview/";

/// Where a preview request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PreviewTarget {
    pub runner_id: String,
    pub port: u16,
    /// Origin-form, without the query.
    pub path: String,
    /// Without the `?`; `None` when empty.
    pub query: Option<String>,
}

/// What the routing makes of a request.
#[derive(Debug, PartialEq, Eq)]
enum Routed {
    /// For the server's own routes.
    NotPreview,
    Preview(PreviewTarget),
    /// `/preview/<runner>/<port>` without the slash: relative links need it.
    AddSlash(String),
    Invalid(String),
}

/// Opens a stream for `target` on its runner's tunnel, or answers why not (502, 503).
pub(crate) fn open_stream(
    core: &ServerCore,
    target: PreviewTarget,
    kind: StreamKind,
    method: &Method,
    headers: &HeaderMap,
) -> Result<OpenedStream, Refusal> {
    let Some(tunnel) = core.tunnels.get(&target.runner_id) else {
        return Err(Refusal::bad_gateway(format!(
            "runner not connected: {} has no forward tunnel",
            target.runner_id
        )));
    };
    let open = Open {
        kind,
        port: target.port,
        method: method.as_str().to_owned(),
        path: target.path,
        query: target.query,
        headers: header_pairs(headers),
    };
    tunnel.open(open).map_err(|err| match err {
        OpenError::Closed => Refusal::bad_gateway(format!("runner not connected: {err}")),
        OpenError::TooManyStreams | OpenError::IdsExhausted => Refusal {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: err.to_string(),
        },
    })
}

/// Waits for the runner's `HEAD`; anything else becomes a 502 saying what happened.
pub(crate) async fn await_head(receiver: &mut StreamReceiver) -> Result<Head, Refusal> {
    let problem = match receiver.next().await {
        StreamEvent::Head(head) => return Ok(head),
        StreamEvent::Reset(reset) => format!(
            "the runner reset the stream: {}: {}",
            reset.code, reset.message
        ),
        StreamEvent::Violation(problem) => {
            format!("the runner broke the tunnel protocol: {problem}")
        }
        StreamEvent::TunnelGone => "runner not connected: its tunnel dropped".to_owned(),
        // The tunnel turns these into violations; listed for completeness.
        StreamEvent::Data(_) | StreamEvent::End(_) => {
            "the runner answered without a HEAD".to_owned()
        }
    };
    Err(Refusal::bad_gateway(problem))
}

/// Why a preview request got no answer from the runner: a status and a one-line text body.
#[derive(Debug)]
pub(crate) struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    pub(crate) fn bad_gateway(message: impl Into<String>) -> Refusal {
        Refusal {
            status: StatusCode::BAD_GATEWAY,
            message: message.into(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.status, format!("{}\n", self.message)).into_response()
    }
}

/// Headers that describe one hop, not the request or response (§6.4): dropped both ways, as
/// are the headers a `Connection` header names.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
];

/// `pairs` minus the hop-by-hop headers, in order.
pub(crate) fn without_hop_by_hop(pairs: Vec<(String, String)>) -> Vec<(String, String)> {
    let connection_named: Vec<String> = pairs
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(header::CONNECTION.as_str()))
        .flat_map(|(_, value)| value.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    pairs
        .into_iter()
        .filter(|(name, _)| {
            let lower = name.to_ascii_lowercase();
            !HOP_BY_HOP.contains(&lower.as_str()) && !connection_named.contains(&lower)
        })
        .collect()
}

/// The client's headers as `OPEN` lists them: as received (names lowercase, as HTTP/1.1
/// parsing leaves them), minus hop-by-hop ones. `Host` and `Origin` pass; the runner rewrites
/// them (§6.3). Values that are not UTF-8 are converted lossily.
fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    let pairs = headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), value)
        })
        .collect();
    without_hop_by_hop(pairs)
}

/// `http://p<port>-<runnerId>.preview.localhost:<server port>/`
pub(crate) fn preview_url(server_port: u16, runner_id: &str, port: u16) -> String {
    format!("http://p{port}-{runner_id}{PREVIEW_HOST_SUFFIX}:{server_port}/")
}

pub(crate) fn routes() -> Router<Arc<ServerCore>> {
    Router::new().route(
        "/local-runners/{runner_id}/ports/{port}/preview",
        get(preview_link),
    )
}

/// The preview link of a `local_runner_port_forward_ready` row: a redirect to the port's
/// isolated preview origin.
async fn preview_link(
    State(core): State<Arc<ServerCore>>,
    Path((runner_id, port)): Path<(String, String)>,
) -> Response {
    let Some(port) = parse_port(&port) else {
        return (StatusCode::BAD_REQUEST, format!("bad port {port:?}\n")).into_response();
    };
    let location = preview_url(core.addr.port(), &runner_id, port);
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

/// The outermost middleware: preview requests go to the runner, all others to the router.
pub(crate) async fn dispatch(
    State(core): State<Arc<ServerCore>>,
    request: Request,
    next: Next,
) -> Response {
    let host = request_host(request.headers(), request.uri());
    match route(host.as_deref(), request.uri()) {
        Routed::NotPreview => next.run(request).await,
        Routed::Invalid(problem) => (StatusCode::NOT_FOUND, format!("{problem}\n")).into_response(),
        Routed::AddSlash(location) => (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, location)],
        )
            .into_response(),
        Routed::Preview(target) if is_websocket_upgrade(request.headers()) => {
            preview_websocket::proxy(&core, target, request).await
        }
        Routed::Preview(target) => preview_http::proxy(&core, target, request).await,
    }
}

fn request_host(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .map(str::to_owned)
        .or_else(|| uri.authority().map(|authority| authority.to_string()))
}

fn route(host: Option<&str>, uri: &Uri) -> Routed {
    let query = uri
        .query()
        .filter(|query| !query.is_empty())
        .map(str::to_owned);
    if let Some(host) = host {
        let name = host_name(host).to_ascii_lowercase();
        if let Some(label) = name.strip_suffix(PREVIEW_HOST_SUFFIX) {
            return match parse_host_label(label) {
                Some((port, runner_id)) => Routed::Preview(PreviewTarget {
                    runner_id: runner_id.to_owned(),
                    port,
                    path: uri.path().to_owned(),
                    query,
                }),
                None => Routed::Invalid(format!(
                    "{host:?} is not a preview host: expected p<port>-<runnerId>{PREVIEW_HOST_SUFFIX}"
                )),
            };
        }
    }
    let Some(rest) = uri.path().strip_prefix(PREVIEW_PATH_PREFIX) else {
        return Routed::NotPreview;
    };
    let mut parts = rest.splitn(3, '/');
    let (runner_id, port, path) = (parts.next(), parts.next(), parts.next());
    let (Some(runner_id), Some(port)) = (runner_id.filter(|id| !id.is_empty()), port) else {
        return Routed::Invalid(format!(
            "{} is not a preview path: expected {PREVIEW_PATH_PREFIX}<runnerId>/<port>/<path>",
            uri.path()
        ));
    };
    let Some(port_number) = parse_port(port) else {
        return Routed::Invalid(format!("bad preview port {port:?}"));
    };
    match path {
        None => {
            let mut location = format!("{PREVIEW_PATH_PREFIX}{runner_id}/{port}/");
            if let Some(query) = &query {
                location.push('?');
                location.push_str(query);
            }
            Routed::AddSlash(location)
        }
        Some(path) => Routed::Preview(PreviewTarget {
            runner_id: runner_id.to_owned(),
            port: port_number,
            path: format!("/{path}"),
            query,
        }),
    }
}

/// Whether a lowercase host name (without the port) is under the preview domain.
pub(crate) fn is_preview_host_name(name: &str) -> bool {
    name.ends_with(PREVIEW_HOST_SUFFIX)
}

/// `host[:port]` → `host` (IPv6 literals keep their brackets).
pub(crate) fn host_name(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port))
            if port.bytes().all(|byte| byte.is_ascii_digit())
                && (!name.contains(':') || name.ends_with(']')) =>
        {
            name
        }
        _ => host,
    }
}

/// `p<port>-<runnerId>` → `(port, runnerId)`.
fn parse_host_label(label: &str) -> Option<(u16, &str)> {
    let (port, runner_id) = label.strip_prefix('p')?.split_once('-')?;
    if runner_id.is_empty() || runner_id.contains('.') {
        return None;
    }
    Some((parse_port(port)?, runner_id))
}

/// A port number 1–65535 in plain decimal digits.
fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|port| *port != 0)
}

/// `Connection: upgrade` with `Upgrade: websocket` (other upgrades are forwarded as plain HTTP).
fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|value| {
                value
                    .split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    has_token(header::CONNECTION, "upgrade") && has_token(header::UPGRADE, "websocket")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routed(host: &str, uri: &str) -> Routed {
        route(Some(host), &uri.parse().expect("uri"))
    }

    fn target(runner_id: &str, port: u16, path: &str, query: Option<&str>) -> Routed {
        Routed::Preview(PreviewTarget {
            runner_id: runner_id.into(),
            port,
            path: path.into(),
            query: query.map(str::to_owned),
        })
    }

    #[test]
    fn preview_hosts_name_the_port_and_runner() {
        assert_eq!(
            routed("p5173-runner-1a2b.preview.localhost:4160", "/a/b?x=1&y"),
            target("runner-1a2b", 5173, "/a/b", Some("x=1&y"))
        );
        assert_eq!(
            routed("P80-R.Preview.Localhost", "/socket/websocket?"),
            target("r", 80, "/socket/websocket", None)
        );
        for bad in [
            "x.preview.localhost",
            "p-r.preview.localhost",
            "p0-r.preview.localhost",
            "p70000-r.preview.localhost",
            "p80-.preview.localhost",
            "p80-a.b.preview.localhost",
        ] {
            assert!(matches!(routed(bad, "/"), Routed::Invalid(_)), "{bad}");
        }
        assert_eq!(
            routed("127.0.0.1:4160", "/socket/websocket"),
            Routed::NotPreview
        );
        assert_eq!(routed("localhost", "/preview"), Routed::NotPreview);
        assert_eq!(routed("preview.localhost:1", "/"), Routed::NotPreview);
    }

    #[test]
    fn preview_paths_keep_the_rest_and_the_query() {
        assert_eq!(
            routed("127.0.0.1:1", "/preview/r-1/3000/"),
            target("r-1", 3000, "/", None)
        );
        assert_eq!(
            routed("127.0.0.1:1", "/preview/r-1/3000/api/x/?q=1"),
            target("r-1", 3000, "/api/x/", Some("q=1"))
        );
        // Kandan forwards what it got; the runner refuses paths that are not origin-form.
        assert_eq!(
            routed("127.0.0.1:1", "/preview/r/1//evil/"),
            target("r", 1, "//evil/", None)
        );
        assert_eq!(
            routed("127.0.0.1:1", "/preview/r/3000?q=1"),
            Routed::AddSlash("/preview/r/3000/?q=1".into())
        );
        for bad in [
            "/preview/",
            "/preview/r",
            "/preview//3000/",
            "/preview/r/x/",
        ] {
            assert!(matches!(routed("h", bad), Routed::Invalid(_)), "{bad}");
        }
    }

    #[test]
    fn host_names_drop_the_port() {
        assert_eq!(host_name("a.b:80"), "a.b");
        assert_eq!(host_name("a.b"), "a.b");
        assert_eq!(host_name("[::1]:80"), "[::1]");
        assert_eq!(host_name("[::1]"), "[::1]");
    }

    #[test]
    fn websocket_upgrades_are_recognised() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            "keep-alive, Upgrade".parse().expect("value"),
        );
        headers.insert(header::UPGRADE, "WebSocket".parse().expect("value"));
        assert!(is_websocket_upgrade(&headers));
        headers.insert(header::UPGRADE, "h2c".parse().expect("value"));
        assert!(!is_websocket_upgrade(&headers));
    }
}
