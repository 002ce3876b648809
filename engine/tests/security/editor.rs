//! The editor (code-server, `--auth none`) is reachable only through the runner: another
//! Unix user finds nothing of it to connect to, a web page in the owner's browser (a
//! foreign `Host`, DNS rebinding) gets nothing, no dev server can take over the port
//! Kandan addresses it by, and Kandan's preview still serves it.
use std::path::{Path, PathBuf};

use linzumi_engine::editor::launch::{self, LaunchSpec};
use linzumi_engine::editor::listen::Isolation;
use linzumi_engine::editor::runtime_source::RuntimeSource;
use linzumi_engine::forwarding::guard;
use linzumi_engine::forwarding::local_http::LocalHttp;
use linzumi_engine::forwarding::routes::Routes;
use linzumi_engine::kandan_url::KandanUrl;
use linzumi_engine::runner::{EditorOptions, Runner};
use serde_json::{Value, json};

#[path = "../support/editor_processes.rs"]
mod editor_processes;

use crate::support::dev_server::preview_client;
use crate::support::{Harness, Project, RUNNER_ID, WAIT};
use editor_processes::{Listener, editor_listeners, editor_processes};

/// The pinned code-server of `tools/code-server`.
fn code_server_bin() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tools/code-server/node_modules/.bin/code-server");
    assert!(
        bin.exists(),
        "code-server is not installed: run scripts/setup.sh (it installs tools/code-server)"
    );
    std::fs::canonicalize(bin).unwrap()
}

/// A runner with the real code-server, and the editor started on its shared folder.
struct Editor {
    harness: Harness,
    runner: Runner,
    data: Project,
    port: u16,
    path: String,
    /// A file of the owner's only (0600) in the shared folder, and what it holds.
    secret_file: PathBuf,
    secret: String,
}

impl Editor {
    async fn start(name: &str) -> Editor {
        let harness = Harness::new(name).await;
        let data = Project::new(&format!("{name}-data"));
        let mut options = harness.options();
        options.editor = Some(EditorOptions {
            source: RuntimeSource::Custom(code_server_bin()),
            data_dir: data.dir.clone(),
            kandan: KandanUrl::parse(&harness.kandan.ws_url()).unwrap(),
        });
        let runner = Runner::start(options).await.unwrap();
        harness
            .kandan
            .wait_for_tunnel(RUNNER_ID, WAIT)
            .await
            .unwrap();
        let secret = format!("owner-only-{}", uuid::Uuid::new_v4().simple());
        let secret_file = harness.project.dir.join("private.key");
        write_owner_only(&secret_file, &secret);
        harness
            .control(
                json!({"type": "start_local_editor", "cwd": harness.project.dir,
                "requestId": "open"}),
            )
            .await;
        let status = harness
            .event(|event| {
                event.event == "local_editor_status" && event.payload["requestId"] == "open"
            })
            .await
            .payload;
        assert_eq!(status["ok"], true, "{status}");
        let port = u16::try_from(status["port"].as_u64().unwrap()).unwrap();
        let path = status["path"].as_str().unwrap().to_owned();
        Editor {
            harness,
            runner,
            data,
            port,
            path,
            secret_file,
            secret,
        }
    }

    /// `/vscode-remote-resource?path=<the 0600 file>`: code-server reads any file its
    /// user can, and hands it to whoever asks.
    fn resource_target(&self) -> String {
        let path: String =
            url::form_urlencoded::byte_serialize(self.secret_file.to_string_lossy().as_bytes())
                .collect();
        format!("/vscode-remote-resource?path={path}")
    }

    /// What this test's code-server listens on: every listening socket (TCP or Unix) of
    /// its processes.
    fn listeners(&self) -> Vec<Listener> {
        assert!(
            !editor_processes(&self.data.dir).is_empty(),
            "no process of this test's editor"
        );
        editor_listeners(&self.data.dir)
            .into_iter()
            .map(|(_, listener)| listener)
            .collect()
    }

    /// Opens the workbench through Kandan's preview in headless Chromium
    /// (`tests/browser/editor.mjs`) and waits until it lists the shared folder.
    async fn open_in_chromium(&self) {
        let preview = self.harness.kandan.preview_url(RUNNER_ID, self.port);
        let url = format!("{}{}", preview.trim_end_matches('/'), self.path);
        let name = self.secret_file.file_name().unwrap().to_string_lossy();
        let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.artifacts/security-editor");
        let output = tokio::process::Command::new("node")
            .arg(crate::support::browser_tests().join("editor.mjs"))
            .arg(&url)
            .arg(name.as_ref())
            .arg(&artifacts)
            .output()
            .await
            .expect("node is installed by scripts/setup.sh");
        assert!(
            output.status.success(),
            "the workbench did not open through the preview: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    async fn stop(mut self) {
        self.runner.stop().await;
    }
}

fn write_owner_only(path: &Path, contents: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    file.write_all(contents.as_bytes()).unwrap();
}

/// Runs curl as another Unix user (nobody, uid 65534) with `args`; returns its exit code
/// and what it printed. `None` when `setpriv` is missing.
fn curl_as_nobody(args: &[String]) -> Option<(i32, String)> {
    if which::which("setpriv").is_err() {
        eprintln!("SKIPPED: setpriv is not installed; another user cannot be simulated");
        return None;
    }
    let output = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            "curl",
            "--silent",
            "--show-error",
            "--max-time",
            "10",
        ])
        .args(args)
        .output()
        .expect("setpriv and curl run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Some((output.status.code().unwrap_or(-1), text))
}

/// curl's exit code for "could not connect".
const CURL_COULD_NOT_CONNECT: i32 = 7;

/// Another user on the computer (nobody) tries every socket the editor's processes
/// listen on, and the port Kandan addresses the editor by, asking each for a file only
/// the owner may read: no TCP port of the editor accepts a connection, its Unix socket
/// refuses the connection (its folder is the owner's alone), and the file never comes
/// back. The preview still serves the editor, so the editor was up all along.
#[tokio::test(flavor = "multi_thread")]
async fn another_user_reaches_nothing_the_editor_listens_on() {
    let editor = Editor::start("editor-other-user").await;
    // The workbench open in a browser through the preview, so that the editor runs all
    // it runs for a person using it (its extension host among them).
    editor.open_in_chromium().await;
    let target = editor.resource_target();
    let listeners = editor.listeners();
    let mut attempts: Vec<(String, Vec<String>)> = vec![(
        format!("the editor's port {}", editor.port),
        vec![format!("http://127.0.0.1:{}{target}", editor.port)],
    )];
    for listener in &listeners {
        let args = match listener {
            Listener::Tcp { port, .. } => vec![format!("http://127.0.0.1:{port}{target}")],
            Listener::Unix(path) => vec![
                "--unix-socket".into(),
                path.display().to_string(),
                format!("http://127.0.0.1:{}{target}", editor.port),
            ],
            Listener::Abstract(name) => vec![
                "--abstract-unix-socket".into(),
                name.clone(),
                format!("http://127.0.0.1:{}{target}", editor.port),
            ],
        };
        attempts.push((format!("{listener:?}"), args));
    }
    for (what, args) in attempts {
        let Some((code, text)) = curl_as_nobody(&args) else {
            return editor.stop().await;
        };
        assert!(
            !text.contains(&editor.secret),
            "another user read the owner's file through {what}"
        );
        assert_eq!(
            code, CURL_COULD_NOT_CONNECT,
            "another user connected to {what}: {text}"
        );
    }
    assert!(
        listeners
            .iter()
            .all(|listener| !matches!(listener, Listener::Tcp { .. })),
        "the editor listens on TCP: {listeners:?}"
    );
    // The socket was among those tried.
    assert!(
        listeners.iter().any(
            |listener| matches!(listener, Listener::Unix(path) if path.ends_with("editor.sock"))
        ),
        "the editor's socket is not among {listeners:?}"
    );

    editor.stop().await;
}

/// One raw HTTP/1.1 request to `127.0.0.1:<port>` with a `Host` of the attacker's, the
/// way a page that rebound its name to 127.0.0.1 would send it from the owner's browser.
/// `None` when nothing accepts the connection; else what came back.
async fn rebound_request(port: u16, target: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!(
        "GET {target} HTTP/1.1\r\nhost: rebind.evil.example:{port}\r\n\
         origin: http://rebind.evil.example:{port}\r\nconnection: close\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, socket.read_to_end(&mut answer)).await;
    Some(String::from_utf8_lossy(&answer).into_owned())
}

/// DNS rebinding: a web page in the owner's browser, its name now pointing at 127.0.0.1,
/// sends requests with its own `Host` to the editor's port and to every TCP port the
/// editor's processes listen on. Nothing accepts them, so neither the workbench nor the
/// owner's file reaches the page.
#[tokio::test(flavor = "multi_thread")]
async fn a_page_with_a_foreign_host_gets_nothing_from_the_editor() {
    let editor = Editor::start("editor-rebinding").await;
    let target = editor.resource_target();
    let mut ports = vec![editor.port];
    ports.extend(
        editor
            .listeners()
            .into_iter()
            .filter_map(|listener| match listener {
                Listener::Tcp { port, .. } => Some(port),
                Listener::Unix(_) | Listener::Abstract(_) => None,
            }),
    );
    for port in ports {
        for path in [target.as_str(), editor.path.as_str()] {
            let answer = rebound_request(port, path).await;
            assert_eq!(
                answer, None,
                "127.0.0.1:{port} answered a foreign Host for {path}"
            );
        }
    }
    editor.stop().await;
}

/// Kandan's preview of the editor's port serves the workbench, through the editor's
/// private socket. The port number stays the editor's while it runs: binding it on
/// 127.0.0.1, on every IPv4 address or dual-stack (also with SO_REUSEADDR, as Node
/// does) fails, and a dev server on [::1] at that number gets no preview traffic.
#[tokio::test(flavor = "multi_thread")]
async fn the_preview_serves_the_editor_and_no_dev_server_takes_its_port() {
    let editor = Editor::start("editor-port-taken").await;
    let port = editor.port;
    for address in ["127.0.0.1", "0.0.0.0", "[::]"] {
        for reuse in [false, true] {
            let address: std::net::SocketAddr = format!("{address}:{port}").parse().unwrap();
            let socket = if address.is_ipv4() {
                tokio::net::TcpSocket::new_v4()
            } else {
                tokio::net::TcpSocket::new_v6()
            };
            let Ok(socket) = socket else {
                eprintln!("SKIPPED: {address}: no socket of that family here");
                continue;
            };
            socket.set_reuseaddr(reuse).unwrap();
            let taken = socket.bind(address).and_then(|()| socket.listen(16));
            assert!(
                taken.is_err(),
                "a dev server listens on {address} (SO_REUSEADDR {reuse}) at the editor's port"
            );
        }
    }
    // An impostor on the IPv6 loopback (a different address, so it can bind).
    let impostor = match tokio::net::TcpListener::bind(("::1", port)).await {
        Ok(listener) => Some(crate::rogue_servers::RogueServer::serve(
            listener,
            crate::rogue_servers::Behavior::CutMidBody {
                announced: 10,
                sent: 10,
            },
        )),
        Err(error) => {
            eprintln!("SKIPPED the [::1] impostor: {error}");
            None
        }
    };

    let client = preview_client(&editor.harness.kandan, RUNNER_ID, port);
    let preview = editor.harness.kandan.preview_url(RUNNER_ID, port);
    let page = client
        .get(format!("{}{}", preview.trim_end_matches('/'), editor.path))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("vscode-workbench-web-configuration"),
        "{html}"
    );
    let health: Value = client
        .get(format!("{preview}healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "alive", "{health}");
    // The root sends the browser on to the shared folder (the desktop's "Open editor"
    // opens the preview link, which lands there).
    let root = client.get(&preview).send().await.unwrap();
    assert_eq!(root.status(), 302);
    let location = root.headers()["location"].to_str().unwrap();
    assert!(location.starts_with("./?folder=/"), "{location}");
    if let Some(impostor) = impostor {
        assert_eq!(impostor.accepted(), 0, "the preview reached the impostor");
    }
    editor.stop().await;
}

/// The fallback where there are no Unix sockets (Windows), run here on purpose: the
/// editor on a loopback port with a password nobody knows. Another user, a rebound page
/// and a forged session cookie are all refused (401) and never get the owner's file;
/// the runner's forwarder, which adds the secret cookie over any the browser sent, gets
/// the file and the workbench.
#[tokio::test(flavor = "multi_thread")]
async fn the_secret_fallback_admits_the_forwarder_alone() {
    let project = Project::new("editor-secret");
    let data = Project::new("editor-secret-data");
    let secret = format!("owner-only-{}", uuid::Uuid::new_v4().simple());
    let secret_file = project.dir.join("private.key");
    write_owner_only(&secret_file, &secret);
    let spec = LaunchSpec {
        code_server_bin: code_server_bin(),
        cwd: project.dir.clone(),
        data_dir: data.dir.clone(),
        isolation: Isolation::SecretCookie,
    };
    let mut editor = launch::launch(&spec).await.unwrap();
    let port = editor.port();
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("path", &secret_file.to_string_lossy())
        .finish();
    let resource = format!("/vscode-remote-resource?{query}");

    for extra in [
        vec![],
        vec![
            "--cookie".to_owned(),
            "code-server-session=guess".to_owned(),
        ],
    ] {
        let mut args = extra;
        args.extend([
            "--include".to_owned(),
            format!("http://127.0.0.1:{port}{resource}"),
        ]);
        let Some((code, text)) = curl_as_nobody(&args) else {
            break;
        };
        assert_eq!(code, 0, "{text}");
        assert!(
            !text.contains(&secret),
            "another user read the owner's file"
        );
        assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    }
    let rebound = rebound_request(port, &resource).await.unwrap();
    assert!(
        !rebound.contains(&secret),
        "a rebound page read the owner's file"
    );
    assert!(rebound.starts_with("HTTP/1.1 401"), "{rebound}");

    let mut routes = Routes::default();
    routes.allow(port, editor.endpoint());
    let local = LocalHttp::default();
    let forged = vec![(
        "cookie".to_owned(),
        "code-server-session=guess; theme=dark".to_owned(),
    )];
    let target = guard::admit(
        &routes,
        port,
        "/vscode-remote-resource",
        Some(&query),
        forged,
    )
    .unwrap();
    let answer = local
        .once(&target, "GET", bytes::Bytes::new(), 1 << 20, WAIT)
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, secret.as_bytes());
    let folder: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("folder", &project.dir.to_string_lossy())
        .finish();
    let workbench = guard::admit(&routes, port, "/", Some(&folder), vec![]).unwrap();
    let page = local
        .once(&workbench, "GET", bytes::Bytes::new(), 8 << 20, WAIT)
        .await
        .unwrap();
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.body).contains("vscode-workbench-web-configuration"));
    editor.stop().await;
}
