//! The server's own boundary, as an attacker meets it: raw HTTP requests with a foreign `Host`
//! (a web page whose name was re-pointed at 127.0.0.1: DNS rebinding), a foreign `Origin` (a
//! web page posting across origins, bodyless or not), no admin key or a wrong one (any local
//! user), and the same against the real binary from another Unix user.

// The request helpers below panic on failure, like the tests that call them.
#![allow(clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Client, http_client, socket_url, start_with};
use kandan_test_server::{ADMIN_KEY_HEADER, AdminKey, DemoConfig, KandanTestServer, ServerConfig};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(10);
const EVIL: &str = "evil.example";

/// A server as `linzumi demo` runs it: a demo channel and an admin key.
async fn demo_server() -> KandanTestServer {
    start_with(ServerConfig {
        demo: Some(DemoConfig {
            workspace: "demo".into(),
            channel: "codex".into(),
            user_slug: "sean".into(),
        }),
        admin_key: Some(AdminKey::generate()),
        ..ServerConfig::default()
    })
    .await
}

fn key(server: &KandanTestServer) -> String {
    server.admin_key().expect("a keyed server").to_owned()
}

/// What came back for a raw request.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

/// Sends `method target` with exactly the given `Host` and extra header lines (each ending in
/// CRLF) and `body`, the way any client could; reads the answer (only its head for a 101).
async fn raw(
    server: &KandanTestServer,
    method: &str,
    target: &str,
    host: &str,
    headers: &str,
    body: &str,
) -> Answer {
    let mut socket = tokio::net::TcpStream::connect(server.addr())
        .await
        .expect("connect");
    let request = format!(
        "{method} {target} HTTP/1.1\r\nhost: {host}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    socket
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    let mut answer = Vec::new();
    let read = async {
        let mut buffer = [0u8; 4096];
        loop {
            let n = socket.read(&mut buffer).await.expect("read answer");
            answer.extend_from_slice(&buffer[..n]);
            let upgraded = answer.starts_with(b"HTTP/1.1 101")
                && answer.windows(4).any(|window| window == b"\r\n\r\n");
            if n == 0 || upgraded {
                break;
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("an answer in time");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    Answer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

fn own_host(server: &KandanTestServer) -> String {
    server.addr().to_string()
}

fn evil_host(server: &KandanTestServer) -> String {
    format!("{EVIL}:{}", server.addr().port())
}

fn websocket_headers() -> &'static str {
    "upgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
}

#[tokio::test]
async fn a_rebound_host_name_gets_neither_the_page_the_admin_api_nor_the_socket() {
    let server = demo_server().await;
    let key = key(&server);
    let token = server.issue_token("sean", None);
    let post =
        json!({"user": "sean", "body": "mock: {\"steps\": [{\"exec\": \"id\"}]}"}).to_string();
    let key_header = format!("{ADMIN_KEY_HEADER}: {key}\r\ncontent-type: application/json\r\n");
    let socket = format!("/socket/websocket?token={token}&vsn=2.0.0");
    let page = format!("/demo?key={key}");

    // Even with the key, a foreign name is refused before anything runs.
    for host in [
        evil_host(&server),
        EVIL.to_owned(),
        "127.0.0.1.nip.io".to_owned(),
    ] {
        let refused = raw(&server, "GET", &page, &host, "", "").await;
        assert_eq!(refused.status, 403, "{host}: {refused:?}");
        assert!(refused.body.contains("is not this server"), "{refused:?}");
        let posted = raw(
            &server,
            "POST",
            "/__admin/chat/demo/codex/messages",
            &host,
            &key_header,
            &post,
        )
        .await;
        assert_eq!(posted.status, 403, "{host}: {posted:?}");
        let upgrade = raw(&server, "GET", &socket, &host, websocket_headers(), "").await;
        assert_eq!(upgrade.status, 403, "{host}: {upgrade:?}");
    }
    assert!(
        server.chat_messages("demo", "codex").is_empty(),
        "nothing was posted"
    );
    assert_eq!(server.connection_count(), 0, "no socket was opened");

    // The same requests with our own names work.
    for host in [
        own_host(&server),
        format!("localhost:{}", server.addr().port()),
    ] {
        let shown = raw(&server, "GET", &page, &host, "", "").await;
        assert_eq!(shown.status, 200, "{host}: {shown:?}");
        let upgrade = raw(&server, "GET", &socket, &host, websocket_headers(), "").await;
        assert_eq!(upgrade.status, 101, "{host}: {upgrade:?}");
    }
    let posted = raw(
        &server,
        "POST",
        "/__admin/chat/demo/codex/messages",
        &own_host(&server),
        &key_header,
        &post,
    )
    .await;
    assert_eq!(posted.status, 201, "{posted:?}");
    // Preview hosts pass this check (here the preview router answers: no runner).
    let preview = raw(
        &server,
        "GET",
        "/",
        &format!("p3000-r1.preview.localhost:{}", server.addr().port()),
        "",
        "",
    )
    .await;
    assert_eq!(preview.status, 502, "{preview:?}");
    assert!(preview.body.contains("runner not connected"), "{preview:?}");
}

#[tokio::test]
async fn the_admin_api_and_the_page_need_the_key() {
    let server = demo_server().await;
    let host = own_host(&server);
    let wrong = format!("{ADMIN_KEY_HEADER}: {}\r\n", AdminKey::generate().expose());
    let requests = [
        ("GET", "/demo"),
        ("GET", "/__admin/events"),
        ("GET", "/__admin/chat/demo/codex/messages"),
        ("GET", "/__admin/chat/demo/codex/stream"),
        ("POST", "/__admin/tokens"),
        ("POST", "/__admin/chat/demo/codex/messages"),
        ("POST", "/__admin/drop-connections"),
        ("POST", "/__admin/restart"),
        ("DELETE", "/__admin/faults"),
    ];
    let body = json!({"user": "sean", "body": "hi"}).to_string();
    let json = "content-type: application/json\r\n";
    for (method, path) in requests {
        let missing = raw(&server, method, path, &host, json, &body).await;
        assert_eq!(missing.status, 401, "{method} {path}: {missing:?}");
        assert!(missing.body.contains("admin key"), "{missing:?}");
        let refused = raw(
            &server,
            method,
            path,
            &host,
            &format!("{wrong}{json}"),
            &body,
        )
        .await;
        assert_eq!(refused.status, 403, "{method} {path}: {refused:?}");
        let in_query = raw(
            &server,
            method,
            &format!("{path}?key=not-the-key"),
            &host,
            json,
            &body,
        )
        .await;
        assert_eq!(in_query.status, 403, "{method} {path}: {in_query:?}");
    }
    assert!(server.chat_messages("demo", "codex").is_empty());

    // With the key, in the header or the query, the same requests work.
    let key = key(&server);
    let issued = raw(
        &server,
        "POST",
        "/__admin/tokens",
        &host,
        &format!("{ADMIN_KEY_HEADER}: {key}\r\n{json}"),
        &json!({"user": "sean"}).to_string(),
    )
    .await;
    assert_eq!(issued.status, 200, "{issued:?}");
    let listed = raw(
        &server,
        "GET",
        &format!("/__admin/chat/demo/codex/messages?key={key}"),
        &host,
        "",
        "",
    )
    .await;
    assert_eq!(listed.status, 200, "{listed:?}");
}

#[tokio::test]
async fn a_cross_origin_post_is_refused_even_with_the_key_and_the_server_stays_up() {
    let server = demo_server().await;
    let key = key(&server);
    let host = own_host(&server);
    let mut client = Client::connect(&server, &server.issue_token("sean", None)).await;
    client
        .join("local_runner:r1", "1", common::runner_join_payload())
        .await;
    let with_key = format!("{ADMIN_KEY_HEADER}: {key}\r\n");

    // A page elsewhere: `fetch(url, {method: "POST", mode: "no-cors"})` sends no body, and
    // still its Origin. Sandboxed frames send `Origin: null`.
    for origin in [
        "https://evil.example".to_owned(),
        "null".to_owned(),
        format!("http://127.0.0.1:{}", server.addr().port() + 1),
        format!("http://p3000-r1.preview.localhost:{}", server.addr().port()),
    ] {
        for headers in [
            format!("origin: {origin}\r\n"),
            format!("origin: {origin}\r\n{with_key}"),
        ] {
            let restart = raw(
                &server,
                "POST",
                "/__admin/restart?downtime_ms=60000",
                &host,
                &headers,
                "",
            )
            .await;
            assert_eq!(restart.status, 403, "{origin}: {restart:?}");
            assert!(restart.body.contains("another origin"), "{restart:?}");
        }
        // A cross-site form post (text/plain needs no preflight).
        let form = raw(
            &server,
            "POST",
            "/__admin/chat/demo/codex/messages",
            &host,
            &format!("origin: {origin}\r\n{with_key}content-type: text/plain\r\n"),
            r#"{"user":"sean","body":"mock: {}"}"#,
        )
        .await;
        assert_eq!(form.status, 403, "{origin}: {form:?}");
    }
    assert!(server.chat_messages("demo", "codex").is_empty());

    // Still up: the socket joined before is still served, and new requests are answered.
    client
        .send(None, Some("9"), "phoenix", "heartbeat", json!({}))
        .await;
    assert_eq!(client.recv().await[1], json!("9"));
    assert_eq!(server.connection_count(), 1);

    // The page's own origin may post (the demo page does).
    let own = raw(
        &server,
        "POST",
        "/__admin/chat/demo/codex/messages",
        &host,
        &format!("origin: http://{host}\r\n{with_key}content-type: application/json\r\n"),
        r#"{"user":"sean","body":"hello"}"#,
    )
    .await;
    assert_eq!(own.status, 201, "{own:?}");
}

#[tokio::test]
async fn the_keyed_page_and_stream_work_with_the_key_they_were_opened_with() {
    let server = demo_server().await;
    let url = server.demo_url();
    let key = key(&server);
    assert_eq!(url, format!("{}/demo?key={key}", server.http_url()));
    let page = http_client().get(&url).send().await.expect("page");
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    assert_eq!(page.headers()["cache-control"], "no-store");
    let html = page.text().await.expect("html");
    assert!(html.contains(&format!(r#""key":"{key}""#)), "{html}");

    let stream = http_client()
        .get(format!(
            "{}/__admin/chat/demo/codex/stream?key={key}",
            server.http_url()
        ))
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
}

#[tokio::test]
async fn without_a_key_the_host_and_origin_checks_still_apply() {
    // How Rust tests start the server in-process: no key, the admin API is open to them.
    let server = start_with(ServerConfig::default()).await;
    let host = own_host(&server);
    let events = raw(&server, "GET", "/__admin/events", &host, "", "").await;
    assert_eq!(events.status, 200, "{events:?}");
    let rebound = raw(
        &server,
        "GET",
        "/__admin/events",
        &evil_host(&server),
        "",
        "",
    )
    .await;
    assert_eq!(rebound.status, 403, "{rebound:?}");
    let cross = raw(
        &server,
        "POST",
        "/__admin/drop-connections",
        &host,
        "origin: https://evil.example\r\n",
        "",
    )
    .await;
    assert_eq!(cross.status, 403, "{cross:?}");
    let token = server.issue_token("tester", None);
    let upgrade = raw(
        &server,
        "GET",
        &format!("/socket/websocket?token={token}&vsn=2.0.0"),
        &evil_host(&server),
        websocket_headers(),
        "",
    )
    .await;
    assert_eq!(upgrade.status, 403, "{upgrade:?}");
    // Our own client still connects.
    Client::connect_url(&socket_url(&server, &token)).await;
}

#[tokio::test]
async fn with_a_key_oauth_needs_it_on_the_consent_page() {
    // auto_approve_oauth is on by default; a keyed server still asks.
    let server = demo_server().await;
    let host = own_host(&server);
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let query = format!(
        "redirect_uri=http%3A%2F%2F127.0.0.1%3A53999%2Fcallback&state=s&code_challenge={challenge}&code_challenge_method=S256"
    );
    let authorize = raw(
        &server,
        "GET",
        &format!("/api/v2/local-codex-runner/oauth/authorize?{query}"),
        &host,
        "",
        "",
    )
    .await;
    assert_eq!(
        authorize.status, 200,
        "no code without consent: {authorize:?}"
    );
    assert!(authorize.body.contains(r#"name="key""#), "{authorize:?}");

    let form = "content-type: application/x-www-form-urlencoded\r\n";
    for key_field in ["", "&key=wrong"] {
        let approve = raw(
            &server,
            "POST",
            "/api/v2/local-codex-runner/oauth/authorize",
            &host,
            form,
            &format!("{query}&user=tester{key_field}"),
        )
        .await;
        assert_eq!(approve.status, 403, "{key_field}: {approve:?}");
        assert!(!approve.head.contains("code="), "{approve:?}");
    }
    let approve = raw(
        &server,
        "POST",
        "/api/v2/local-codex-runner/oauth/authorize",
        &host,
        form,
        &format!("{query}&user=tester&key={}", key(&server)),
    )
    .await;
    assert_eq!(approve.status, 303, "{approve:?}");
    assert!(approve.head.contains("code="), "{approve:?}");
}

/// The binary, started as `scripts` or a person would; killed on drop.
struct Binary {
    child: Child,
    url: String,
    key: String,
    demo: String,
}

impl Binary {
    fn start() -> Binary {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kandan-test-server"))
            .args([
                "--bind",
                "127.0.0.1:0",
                "--user",
                "sean:1",
                "--demo",
                "demo/codex",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut line = |prefix: &str| {
            let line = lines
                .next()
                .expect("another line")
                .expect("readable stdout");
            line.strip_prefix(prefix)
                .unwrap_or_else(|| panic!("expected {prefix:?}, got {line:?}"))
                .to_owned()
        };
        let url = line("listening on ");
        line("ready user=sean token=");
        let key = line("admin key=");
        let demo = line("demo ");
        Binary {
            child,
            url,
            key,
            demo,
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `curl` as the Unix user `nobody`: status code and body.
fn curl_as_nobody(args: &[&str]) -> (String, String) {
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "curl"])
        .args(["-s", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("setpriv runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.to_owned(), body.to_owned())
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

#[test]
fn another_local_user_cannot_drive_the_binary() {
    if !(have("setpriv") && have("curl") && is_root()) {
        eprintln!("SKIPPED: needs setpriv, curl and root to act as another Unix user");
        return;
    }
    let binary = Binary::start();
    assert!(binary.key.len() >= 43, "a real key: {}", binary.key);
    assert_eq!(
        binary.demo,
        format!("{}/demo?key={}", binary.url, binary.key)
    );
    // The key is in no argument list another user could read in /proc.
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", binary.child.id())).expect("cmdline");
    assert!(!String::from_utf8_lossy(&cmdline).contains(&binary.key));

    let restart = format!("{}/__admin/restart?downtime_ms=60000", binary.url);
    let (status, body) = curl_as_nobody(&["-X", "POST", &restart]);
    assert_eq!(status, "401", "{body}");
    let (status, _) = curl_as_nobody(&[&format!("{}/demo", binary.url)]);
    assert_eq!(status, "401");
    let post = format!("{}/__admin/chat/demo/codex/messages", binary.url);
    let (status, _) = curl_as_nobody(&[
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"user":"sean","body":"mock: {}"}"#,
        &post,
    ]);
    assert_eq!(status, "401");
    // Auto-approved OAuth would hand out the demo user's token: it asks for the key instead.
    let authorize = format!(
        "{}/api/v2/local-codex-runner/oauth/authorize?redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback&state=s&code_challenge={}&code_challenge_method=S256",
        binary.url,
        "a".repeat(43)
    );
    let (status, body) = curl_as_nobody(&[&authorize]);
    assert_eq!(status, "200", "{body}");
    assert!(body.contains(r#"name="key""#), "{body}");

    // Still up, and the owner's link works.
    let page = Command::new("curl")
        .args(["-s", "-f", &binary.demo])
        .output()
        .expect("curl runs");
    assert!(page.status.success());
    assert!(String::from_utf8_lossy(&page.stdout).contains("<title>#codex"));
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.starts_with(b"0"))
}
