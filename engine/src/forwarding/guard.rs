//! The rules every forwarded request passes (protocol §6.3): the runner, never Kandan,
//! decides where a request goes. The target is always the port's endpoint in the routes
//! right now (`127.0.0.1:<port>`, or the editor's private socket); the path must be
//! origin-form; hop-by-hop headers are dropped; Host and Origin are made to agree with
//! `127.0.0.1:<port>`; an endpoint's secret cookie is added here and nowhere else.
use super::routes::{Endpoint, Routes, SecretCookie};

/// Request and response bodies on the control path are at most this large: in base64
/// they stay inside the 8 MiB Phoenix frame limit. Larger ones go through the tunnel.
pub const MAX_CONTROL_BODY: usize = 4 * 1024 * 1024;
/// A request may carry at most this many headers.
pub const MAX_HEADERS: usize = 100;
/// And at most this many bytes of names and values (a name listed with several values
/// counts once per value), the size of a tunnel `OPEN` payload: local servers refuse far
/// less (Node: 16 KiB).
pub const MAX_HEADER_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("port_not_allowed: port {0} is not open for forwarding on this runner")]
    PortNotAllowed(u16),
    #[error("path_not_origin_form: {0:?} must start with one '/' and name no host")]
    PathNotOriginForm(String),
    #[error("body_too_large: {size} bytes is over the {limit}-byte limit")]
    BodyTooLarge { size: usize, limit: usize },
    #[error("bad_request: {0}")]
    BadRequest(String),
    #[error("busy: {0}; try again when some have finished")]
    Busy(String),
}

impl Refused {
    /// The code part of the message (`port_not_allowed`, …), for tunnel RESET frames.
    pub fn code(&self) -> &'static str {
        match self {
            Refused::PortNotAllowed(_) => "port_not_allowed",
            Refused::PathNotOriginForm(_) => "path_not_origin_form",
            Refused::BodyTooLarge { .. } => "body_too_large",
            Refused::BadRequest(_) => "bad_open",
            Refused::Busy(_) => "busy",
        }
    }
}

/// A request the runner has agreed to send to a local server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalTarget {
    pub port: u16,
    /// Where the port is dialled.
    pub endpoint: Endpoint,
    /// Origin-form path plus query: `/a/b?c=d`.
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
}

impl LocalTarget {
    pub fn authority(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// Checks and rewrites a request for `port` (`query` without its `?`).
pub fn admit(
    routes: &Routes,
    port: u16,
    path: &str,
    query: Option<&str>,
    headers: Vec<(String, String)>,
) -> Result<LocalTarget, Refused> {
    let Some(endpoint) = routes.endpoint(port) else {
        return Err(Refused::PortNotAllowed(port));
    };
    check_origin_form(path)?;
    if headers.len() > MAX_HEADERS {
        return Err(Refused::BadRequest(format!(
            "{} headers is over the limit of {MAX_HEADERS}",
            headers.len()
        )));
    }
    let mut path_and_query = path.to_owned();
    if let Some(query) = query.filter(|query| !query.is_empty()) {
        if query.contains(['#', ' ']) {
            return Err(Refused::BadRequest("the query has a space or '#'".into()));
        }
        path_and_query.push('?');
        path_and_query.push_str(query);
    }
    let mut headers = local_headers(port, headers);
    if let Endpoint::LoopbackWithCookie(cookie) = endpoint {
        headers = with_secret_cookie(headers, cookie);
    }
    Ok(LocalTarget {
        port,
        endpoint: endpoint.clone(),
        path_and_query,
        headers,
    })
}

fn check_origin_form(path: &str) -> Result<(), Refused> {
    let refused = || Refused::PathNotOriginForm(path.chars().take(200).collect());
    let Some(rest) = path.strip_prefix('/') else {
        return Err(refused());
    };
    // `//host/x` is a network-path reference; `\` is read as `/` by some servers.
    if rest.starts_with('/') || rest.starts_with('\\') {
        return Err(refused());
    }
    if path
        .chars()
        .any(|c| c.is_control() || c == ' ' || c == '#' || c == '?')
    {
        return Err(refused());
    }
    Ok(())
}

/// Headers that describe one connection, not the request (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether a header must not cross a proxy (also used for responses).
pub fn is_hop_by_hop(name: &str, named_by_connection: &[String]) -> bool {
    let name = name.to_ascii_lowercase();
    HOP_BY_HOP.contains(&name.as_str()) || named_by_connection.contains(&name)
}

/// The header names a `Connection` header lists (they are hop-by-hop too).
pub fn connection_tokens(headers: &[(String, String)]) -> Vec<String> {
    headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, value)| value.split(','))
        .map(|token| token.trim().to_ascii_lowercase())
        .filter(|token| !token.is_empty())
        .collect()
}

fn local_headers(port: u16, headers: Vec<(String, String)>) -> Vec<(String, String)> {
    let listed = connection_tokens(&headers);
    let mut kept: Vec<(String, String)> = headers
        .into_iter()
        .filter(|(name, _)| !is_hop_by_hop(name, &listed))
        .filter(|(name, _)| !name.eq_ignore_ascii_case("host"))
        .filter(|(name, value)| valid_header(name, value))
        .map(|(name, value)| {
            if name.eq_ignore_ascii_case("origin") {
                (name, format!("http://127.0.0.1:{port}"))
            } else {
                (name, value)
            }
        })
        .collect();
    kept.push(("host".into(), format!("127.0.0.1:{port}")));
    kept
}

/// The headers with every `Cookie` header merged into one that carries `cookie`, and no
/// other cookie of its name: whatever a browser sends under that name is dropped, so only
/// the runner's value ever reaches the server.
fn with_secret_cookie(
    headers: Vec<(String, String)>,
    cookie: &SecretCookie,
) -> Vec<(String, String)> {
    let (cookies, mut kept): (Vec<_>, Vec<_>) = headers
        .into_iter()
        .partition(|(name, _)| name.eq_ignore_ascii_case("cookie"));
    let mut pairs: Vec<&str> = cookies
        .iter()
        .flat_map(|(_, value)| value.split(';'))
        .map(str::trim)
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(name, _)| name).trim();
            !pair.is_empty() && name != cookie.name
        })
        .collect();
    let secret = format!("{}={}", cookie.name, cookie.value);
    pairs.push(&secret);
    kept.push(("cookie".into(), pairs.join("; ")));
    kept
}

fn valid_header(name: &str, value: &str) -> bool {
    http::HeaderName::from_bytes(name.as_bytes()).is_ok()
        && http::HeaderValue::from_str(value).is_ok()
}

/// Parses the `headers` field of a control: an object of name → value (or list of
/// values) or a list of `[name, value]` pairs. Refuses more than [`MAX_HEADERS`] pairs or
/// [`MAX_HEADER_BYTES`] before copying them: a long name with a long list of values would
/// otherwise be copied once per value, far beyond the size of the frame.
pub fn header_pairs(value: Option<&serde_json::Value>) -> Result<Vec<(String, String)>, Refused> {
    use serde_json::Value;
    let bad = || Refused::BadRequest("headers must be an object or a list of [name, value]".into());
    let mut pairs = Pairs::default();
    match value {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, value) in map {
                match value {
                    Value::String(text) => pairs.push(name, text)?,
                    Value::Array(values) => {
                        for value in values {
                            pairs.push(name, value.as_str().ok_or_else(bad)?)?;
                        }
                    }
                    _ => return Err(bad()),
                }
            }
        }
        Some(Value::Array(items)) => {
            for item in items {
                match item.as_array().map(Vec::as_slice) {
                    Some([Value::String(name), Value::String(value)]) => pairs.push(name, value)?,
                    _ => return Err(bad()),
                }
            }
        }
        Some(_) => return Err(bad()),
    }
    Ok(pairs.list)
}

#[derive(Default)]
struct Pairs {
    list: Vec<(String, String)>,
    bytes: usize,
}

impl Pairs {
    fn push(&mut self, name: &str, value: &str) -> Result<(), Refused> {
        self.bytes += name.len() + value.len();
        if self.list.len() >= MAX_HEADERS || self.bytes > MAX_HEADER_BYTES {
            return Err(Refused::BadRequest(format!(
                "the headers are over the limit of {MAX_HEADERS} headers or {MAX_HEADER_BYTES} bytes"
            )));
        }
        self.list.push((name.to_owned(), value.to_owned()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn allowed() -> Routes {
        Routes::loopback([3000])
    }

    fn header<'a>(target: &'a LocalTarget, name: &str) -> Option<&'a str> {
        target
            .headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    #[test]
    fn only_allowed_ports() {
        assert_eq!(
            admit(&allowed(), 22, "/", None, vec![]),
            Err(Refused::PortNotAllowed(22))
        );
        assert!(admit(&allowed(), 3000, "/", None, vec![]).is_ok());
    }

    #[test]
    fn paths_must_be_origin_form() {
        for bad in [
            "http://evil.example/",
            "//evil.example/x",
            "/\\evil.example",
            "",
            "evil.example/x",
            "/a b",
            "/a#frag",
            "/a?smuggled",
            "/a\r\nHost: evil",
        ] {
            assert!(
                matches!(
                    admit(&allowed(), 3000, bad, None, vec![]),
                    Err(Refused::PathNotOriginForm(_))
                ),
                "{bad:?}"
            );
        }
        let target = admit(&allowed(), 3000, "/assets/app.js", Some("v=1&x=2"), vec![]).unwrap();
        assert_eq!(target.path_and_query, "/assets/app.js?v=1&x=2");
        assert_eq!(target.authority(), "127.0.0.1:3000");
    }

    #[test]
    fn hop_by_hop_headers_are_dropped_and_host_and_origin_agree() {
        let headers = vec![
            ("Host".into(), "p3000-r.preview.kandan.example".into()),
            (
                "Origin".into(),
                "https://p3000-r.preview.kandan.example".into(),
            ),
            ("Connection".into(), "keep-alive, X-Secret-Hop".into()),
            ("X-Secret-Hop".into(), "1".into()),
            ("Transfer-Encoding".into(), "chunked".into()),
            ("Proxy-Authorization".into(), "Basic abc".into()),
            ("Accept".into(), "text/html".into()),
            ("Bad\nName".into(), "x".into()),
        ];
        let target = admit(&allowed(), 3000, "/", None, headers).unwrap();
        assert_eq!(header(&target, "host"), Some("127.0.0.1:3000"));
        assert_eq!(header(&target, "origin"), Some("http://127.0.0.1:3000"));
        assert_eq!(header(&target, "accept"), Some("text/html"));
        for gone in [
            "connection",
            "x-secret-hop",
            "transfer-encoding",
            "proxy-authorization",
        ] {
            assert_eq!(header(&target, gone), None, "{gone}");
        }
        assert_eq!(target.headers.len(), 3);
    }

    #[test]
    fn a_secret_cookie_is_the_runners_whatever_the_browser_sends() {
        let mut routes = allowed();
        let cookie = SecretCookie {
            name: "code-server-session",
            value: "runner-secret".into(),
        };
        routes.allow(4000, Endpoint::LoopbackWithCookie(cookie));
        let headers = vec![
            ("Cookie".into(), "a=1; code-server-session=forged".into()),
            (
                "cookie".into(),
                " code-server-session = forged2 ;b=2".into(),
            ),
        ];
        let target = admit(&routes, 4000, "/", None, headers.clone()).unwrap();
        let cookies: Vec<_> = target
            .headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("cookie"))
            .collect();
        assert_eq!(
            cookies,
            vec![&(
                "cookie".to_owned(),
                "a=1; b=2; code-server-session=runner-secret".to_owned()
            )]
        );
        // Another port never gets it, and keeps the browser's cookies as they were.
        let plain = admit(&routes, 3000, "/", None, headers).unwrap();
        assert_eq!(plain.endpoint, Endpoint::Loopback);
        assert!(
            !plain
                .headers
                .iter()
                .any(|(_, value)| value.contains("runner-secret"))
        );
        assert_eq!(
            header(&plain, "cookie"),
            Some("a=1; code-server-session=forged")
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_private_socket_is_the_target_but_host_still_names_the_port() {
        let mut routes = allowed();
        routes.allow(4000, Endpoint::UnixSocket("/run/editor.sock".into()));
        let target = admit(&routes, 4000, "/", None, vec![]).unwrap();
        assert_eq!(
            target.endpoint,
            Endpoint::UnixSocket("/run/editor.sock".into())
        );
        assert_eq!(header(&target, "host"), Some("127.0.0.1:4000"));
    }

    #[test]
    fn header_fields_in_both_shapes() {
        assert_eq!(
            header_pairs(Some(&json!({"a": "1", "b": ["2", "3"]}))).unwrap(),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "2".into()),
                ("b".into(), "3".into())
            ]
        );
        assert_eq!(
            header_pairs(Some(&json!([["a", "1"]]))).unwrap(),
            vec![("a".into(), "1".into())]
        );
        assert!(header_pairs(Some(&json!({"a": 1}))).is_err());
        assert!(header_pairs(Some(&json!([["a"]]))).is_err());
    }

    #[test]
    fn header_fields_are_bounded_before_they_are_copied() {
        // Seen while writing fuzz/fuzz_targets/kandan_control.rs (which now checks the
        // bound): a 64 KiB name listed with 100 values expanded to 6.4 MiB of pairs, and an
        // 8 MiB control to terabytes.
        let name = "x".repeat(64 * 1024);
        let mut map = serde_json::Map::new();
        map.insert(name, json!(vec![""; MAX_HEADERS]));
        assert!(matches!(
            header_pairs(Some(&serde_json::Value::Object(map))),
            Err(Refused::BadRequest(_))
        ));
        let too_many = json!({"a": vec!["v"; MAX_HEADERS + 1]});
        assert!(matches!(
            header_pairs(Some(&too_many)),
            Err(Refused::BadRequest(_))
        ));
        let pairs = vec![json!(["a", "v"]); MAX_HEADERS + 1];
        assert!(header_pairs(Some(&json!(pairs))).is_err());
        let most = json!({"a": vec!["v"; MAX_HEADERS]});
        assert_eq!(header_pairs(Some(&most)).unwrap().len(), MAX_HEADERS);
    }

    #[test]
    fn too_many_headers_are_refused() {
        let headers = (0..=MAX_HEADERS)
            .map(|n| (format!("x-{n}"), "v".into()))
            .collect();
        assert!(matches!(
            admit(&allowed(), 3000, "/", None, headers),
            Err(Refused::BadRequest(_))
        ));
    }
}
