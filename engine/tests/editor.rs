//! The local editor end to end with the REAL code-server (npm `code-server` 4.100.3,
//! installed in `tools/code-server` by scripts/setup.sh): started for an allowed folder,
//! served through the Kandan test server's preview, replaced, and revoked when it dies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/editor_processes.rs"]
mod editor_processes;
mod support;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use editor_processes::{Listener, editor_listeners, editor_processes, editor_server_pid};
use kandan_test_server::editor_runtime::archive_with_entrypoint;
use kandan_test_server::{EditorRuntimeFixture, RecordedEvent};
use linzumi_engine::editor::runtime::RuntimeCache;
use linzumi_engine::editor::runtime_source::RuntimeSource;
use linzumi_engine::kandan_url::KandanUrl;
use linzumi_engine::ports::listen_table;
use linzumi_engine::process_tree::{self, ProcessTable, Signal};
use linzumi_engine::runner::{EditorOptions, Runner, RunnerEvent};
use serde_json::{Value, json};
use support::dev_server::preview_client;
use support::{Harness, Project, RUNNER_ID, TOPIC, WAIT};

/// The pinned code-server of `tools/code-server`.
pub fn code_server_bin() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tools/code-server/node_modules/.bin/code-server");
    assert!(
        bin.exists(),
        "code-server is not installed: run scripts/setup.sh (it installs tools/code-server)"
    );
    std::fs::canonicalize(bin).unwrap()
}

struct Editor {
    harness: Harness,
    runner: Runner,
    /// Kept for its lifetime: the editor's user data and extensions.
    _data: Project,
}

impl Editor {
    async fn start(name: &str, source: RuntimeSource) -> Editor {
        Editor::start_with(name, |_| source).await
    }

    /// With the editor's runtime source chosen once the Kandan test server runs.
    async fn start_with(name: &str, source: impl FnOnce(&Harness) -> RuntimeSource) -> Editor {
        let harness = Harness::new(name).await;
        let source = source(&harness);
        let data = Project::new(&format!("{name}-data"));
        let mut options = harness.options();
        options.editor = Some(EditorOptions {
            source,
            data_dir: data.dir.clone(),
            kandan: KandanUrl::parse(&harness.kandan.ws_url()).unwrap(),
        });
        let runner = Runner::start(options).await.unwrap();
        harness
            .kandan
            .wait_for_tunnel(RUNNER_ID, WAIT)
            .await
            .unwrap();
        Editor {
            harness,
            runner,
            _data: data,
        }
    }

    async fn real(name: &str) -> Editor {
        Editor::start(name, RuntimeSource::Custom(code_server_bin())).await
    }

    /// Sends `start_local_editor` and returns the status answering it.
    async fn open(&self, cwd: &std::path::Path, request_id: &str) -> Value {
        self.harness
            .control(
                json!({"type": "start_local_editor", "cwd": cwd, "requestId": request_id,
                "browserBaseUrl": "https://kandan.example/editor/"}),
            )
            .await;
        self.harness
            .event(|event| {
                event.event == "local_editor_status" && event.payload["requestId"] == request_id
            })
            .await
            .payload
    }

    /// The next status after `since` that reports an exit.
    async fn exit_status(&self, since: SystemTime) -> Value {
        self.harness
            .kandan
            .wait_for_event(
                |event: &RecordedEvent| {
                    event.topic == TOPIC
                        && event.received_at >= since
                        && event.event == "local_editor_status"
                        && event.payload["exited"] == true
                },
                Duration::from_secs(60),
            )
            .await
            .unwrap()
            .payload
    }
}

fn port_of(status: &Value) -> u16 {
    u16::try_from(status["port"].as_u64().unwrap()).unwrap()
}

impl Editor {
    /// Whether Kandan's preview of `port` reaches a code-server that answers its health
    /// check (the editor listens on a private socket: this is the only way in).
    async fn serves(&self, port: u16) -> bool {
        let health = preview_client(&self.harness.kandan, RUNNER_ID, port)
            .get(format!(
                "{}healthz",
                self.harness.kandan.preview_url(RUNNER_ID, port)
            ))
            .send()
            .await;
        match health {
            // "alive", or "expired" before its first heartbeat.
            Ok(response) if response.status() == 200 => response
                .json::<Value>()
                .await
                .is_ok_and(|health| health["status"].is_string()),
            _ => false,
        }
    }

    /// The editor sockets listening now (each start has its own).
    fn editor_sockets(&self) -> Vec<PathBuf> {
        editor_listeners(&self._data.dir)
            .into_iter()
            .filter_map(|(_, listener)| match listener {
                Listener::Unix(path) if path.ends_with("editor.sock") => Some(path),
                _ => None,
            })
            .collect()
    }
}

fn accepts(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// The process of this test's tree that listens on `port`.
fn listener_pid(port: u16) -> u32 {
    let table = ProcessTable::read().unwrap();
    let ours: HashSet<u32> = table.tree(std::process::id()).into_iter().collect();
    listen_table::system()
        .listeners(&ours)
        .unwrap()
        .into_iter()
        .find(|listener| listener.port == port)
        .unwrap_or_else(|| panic!("nothing of ours listens on {port}"))
        .pid
}

/// The local addresses of the IPv4 and IPv6 sockets listening on `port`.
fn listening_addresses(port: u16) -> Vec<String> {
    let mut addresses = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
                continue;
            };
            let Some((address, hex_port)) = local.split_once(':') else {
                continue;
            };
            if *state != "0A" || u16::from_str_radix(hex_port, 16).ok() != Some(port) {
                continue;
            }
            addresses.push(match address {
                "0100007F" => "127.0.0.1".to_owned(),
                other => other.to_owned(),
            });
        }
    }
    addresses
}

#[tokio::test(flavor = "multi_thread")]
async fn the_editor_opens_an_allowed_folder_and_kandan_serves_it() {
    let mut editor = Editor::real("editor-open").await;
    let project = editor.harness.project.dir.clone();
    std::fs::write(project.join("hello.txt"), "hello from the shared folder").unwrap();

    let status = editor.open(&project, "open-1").await;
    assert_eq!(status["ok"], true, "{status}");
    let port = port_of(&status);
    assert_eq!(status["cwd"], json!(project));
    let folder: String =
        url::form_urlencoded::byte_serialize(project.display().to_string().as_bytes()).collect();
    assert_eq!(status["path"], format!("/?folder={folder}"));
    assert_eq!(
        status["url"],
        format!("https://kandan.example/editor/?folder={folder}")
    );
    let capabilities = &status["capabilities"];
    assert_eq!(capabilities["localEditorStatus"], "running");
    assert_eq!(capabilities["localEditorPort"], port);
    assert!(
        capabilities["allowedPorts"]
            .as_array()
            .unwrap()
            .contains(&json!(port))
    );
    assert_eq!(capabilities["editorRuntime"]["state"], "custom");
    assert_eq!(
        capabilities["editorRuntime"]["version"],
        "4.100.3 409c64e0df4d53530e59c16acc2b5d5766f717b0 with Code 1.100.3"
    );

    // Nothing listens on the port Kandan knows: the editor is on its private socket.
    assert_eq!(listening_addresses(port), Vec::<String>::new());
    assert!(!accepts(port));
    assert_eq!(editor.editor_sockets().len(), 1);

    // Through Kandan's preview: the workbench page, its health check, and a file of it.
    let client = preview_client(&editor.harness.kandan, RUNNER_ID, port);
    let preview = editor.harness.kandan.preview_url(RUNNER_ID, port);
    let page = client
        .get(format!("{preview}?folder={folder}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("vscode-workbench-web-configuration") || html.contains("workbench"),
        "{html}"
    );
    let health = client
        .get(format!("{preview}healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert!(health.text().await.unwrap().contains("alive"));

    // Its own port proxy is off: no way around the approved ports.
    let proxied = client
        .get(format!("{preview}proxy/22/"))
        .send()
        .await
        .unwrap();
    assert_ne!(proxied.status(), 200);

    // Managed: the port watcher never asks about it, and stopping the runner ends it.
    editor.runner.stop().await;
    assert_eq!(
        editor_processes(&editor._data.dir),
        Vec::<u32>::new(),
        "code-server outlived the runner"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_folder_outside_the_allowed_roots_is_refused() {
    let editor = Editor::real("editor-refused").await;
    let status = editor.open(std::path::Path::new("/etc"), "open-etc").await;
    assert_eq!(status["ok"], false, "{status}");
    let reason = status["reason"].as_str().unwrap();
    assert!(reason.contains("/etc"), "{reason}");
    assert_eq!(status["capabilities"]["localEditorStatus"], "disabled");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_start_replaces_the_first() {
    let editor = Editor::real("editor-replace").await;
    let project = editor.harness.project.dir.clone();
    let sub = project.join("web");
    std::fs::create_dir_all(&sub).unwrap();

    let first = editor.open(&project, "first").await;
    assert_eq!(first["ok"], true, "{first}");
    let first_port = port_of(&first);
    let second = editor.open(&sub, "second").await;
    assert_eq!(second["ok"], true, "{second}");
    let second_port = port_of(&second);
    assert_ne!(first_port, second_port);

    assert_eq!(
        editor.editor_sockets().len(),
        1,
        "the replaced code-server still listens"
    );
    assert!(!editor.serves(first_port).await);
    assert!(editor.serves(second_port).await);
    let capabilities = &second["capabilities"];
    assert_eq!(capabilities["revokedPorts"], json!([first_port]));
    assert_eq!(capabilities["allowedPorts"], json!([second_port]));
    assert_eq!(capabilities["localEditorCwd"], json!(sub));

    // The replaced editor's exit is not reported as the editor going away.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !editor
            .harness
            .kandan
            .events_for(TOPIC)
            .iter()
            .any(|event| event.event == "local_editor_status" && event.payload["exited"] == true)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_editor_that_crashes_has_its_port_revoked() {
    let editor = Editor::real("editor-crash").await;
    let status = editor.open(&editor.harness.project.dir, "crash").await;
    assert_eq!(status["ok"], true, "{status}");
    let port = port_of(&status);

    let since = SystemTime::now();
    process_tree::signal(&[editor_server_pid(&editor._data.dir)], Signal::Kill);
    let exit = editor.exit_status(since).await;
    assert_eq!(exit["ok"], true);
    assert_eq!(exit["cwd"], json!(editor.harness.project.dir));
    assert!(
        exit["reason"]
            .as_str()
            .unwrap()
            .starts_with("code-server exited"),
        "{exit}"
    );
    let capabilities = &exit["capabilities"];
    assert_eq!(capabilities["revokedPorts"], json!([port]));
    assert_eq!(capabilities["allowedPorts"], json!([]));
    assert_eq!(capabilities["localEditorStatus"], "disabled");

    // Kandan's preview no longer reaches the port.
    let client = preview_client(&editor.harness.kandan, RUNNER_ID, port);
    let response = client
        .get(editor.harness.kandan.preview_url(RUNNER_ID, port))
        .send()
        .await
        .unwrap();
    assert_ne!(response.status(), 200);

    // And a new start works again.
    let again = editor.open(&editor.harness.project.dir, "again").await;
    assert_eq!(again["ok"], true, "{again}");
}

/// The next editor event of the runner's event stream.
async fn next_editor_event(
    events: &mut tokio::sync::broadcast::Receiver<RunnerEvent>,
) -> RunnerEvent {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let event = events.recv().await.unwrap();
            if let RunnerEvent::EditorStarted { .. } | RunnerEvent::EditorExited { .. } = event {
                return event;
            }
        }
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_desktop_opens_the_editor_the_way_kandan_does() {
    let editor = Editor::real("editor-desktop").await;
    let mut events = editor.runner.events();

    let address = editor.runner.open_editor().await.unwrap();
    assert!(editor.serves(address.port).await);
    let folder = editor.harness.project.dir.to_string_lossy().into_owned();
    assert!(address.path.starts_with("/?folder="), "{address:?}");
    assert_eq!(
        next_editor_event(&mut events).await,
        RunnerEvent::EditorStarted {
            port: address.port,
            path: address.path.clone()
        }
    );
    // Kandan hears of it as of its own start_local_editor.
    let status = editor
        .harness
        .event(|event| event.event == "local_editor_status" && event.payload["ok"] == true)
        .await
        .payload;
    assert_eq!(port_of(&status), address.port);
    assert_eq!(status["cwd"], json!(folder));

    // A second open reuses the running editor.
    assert_eq!(editor.runner.open_editor().await.unwrap(), address);

    process_tree::signal(&[editor_server_pid(&editor._data.dir)], Signal::Kill);
    match next_editor_event(&mut events).await {
        RunnerEvent::EditorExited { reason } => {
            assert!(reason.starts_with("code-server exited"), "{reason}");
        }
        other => panic!("expected the exit, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_code_server_is_a_reason_a_person_can_act_on() {
    let editor = Editor::start(
        "editor-missing",
        RuntimeSource::Custom("/nonexistent/code-server".into()),
    )
    .await;
    let status = editor.open(&editor.harness.project.dir, "missing").await;
    assert_eq!(status["ok"], false);
    let reason = status["reason"].as_str().unwrap();
    assert!(reason.contains("code-server was not found"), "{reason}");
    assert!(reason.contains("--code-server-bin"), "{reason}");
    assert_eq!(status["capabilities"]["editorRuntime"]["state"], "missing");
}

#[tokio::test(flavor = "multi_thread")]
async fn chromium_works_in_the_editor_through_the_preview() {
    let mut editor = Editor::real("editor-chromium").await;
    let project = editor.harness.project.dir.clone();
    std::fs::write(project.join("shared-notes.md"), "# notes\n").unwrap();
    let status = editor.open(&project, "chromium").await;
    assert_eq!(status["ok"], true, "{status}");
    let port = port_of(&status);

    let preview = editor.harness.kandan.preview_url(RUNNER_ID, port);
    let url = format!(
        "{}{}",
        preview.trim_end_matches('/'),
        status["path"].as_str().unwrap()
    );
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.artifacts");
    let output = tokio::process::Command::new("node")
        .arg(support::browser_tests().join("editor.mjs"))
        .arg(&url)
        .arg("shared-notes.md")
        .arg(&artifacts)
        .output()
        .await
        .expect("node is installed by scripts/setup.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(seen["origin"], preview.trim_end_matches('/'));
    // The workbench's own WebSocket (to the remote extension host) stayed open.
    assert!(
        seen["websockets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|socket| socket["closed"] == false),
        "{seen}"
    );
    editor.runner.stop().await;
}

/// The runtime Kandan serves: a code-server release layout whose `bin/code-server` hands
/// over to the pinned code-server (a real release is ~100 MB and needs GitHub).
fn serve_runtime(
    harness: &Harness,
    corrupt_downloads: u32,
    advertised_sha256: Option<String>,
) -> RuntimeSource {
    let script = format!("#!/bin/sh\nexec '{}' \"$@\"\n", code_server_bin().display());
    let archive = archive_with_entrypoint("code-server-4.100.3-linux-amd64", script.as_bytes());
    let mut fixture = EditorRuntimeFixture::new("4.100.3", "linux-x64", archive);
    fixture.corrupt_downloads = corrupt_downloads;
    fixture.advertised_sha256 = advertised_sha256;
    harness.kandan.set_editor_runtime(fixture);
    RuntimeSource::Kandan {
        cache: RuntimeCache::at(harness.project.dir.with_extension("runtime-cache")),
        kandan: KandanUrl::parse(&harness.kandan.ws_url()).unwrap(),
        token: harness.token.clone(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_runtime_from_kandan_is_verified_retried_cached_and_runs_the_editor() {
    let editor =
        Editor::start_with("editor-runtime", |harness| serve_runtime(harness, 1, None)).await;
    let status = editor.open(&editor.harness.project.dir, "downloaded").await;
    assert_eq!(status["ok"], true, "{status}");
    // The corrupted first download was thrown away and fetched again.
    assert_eq!(editor.harness.kandan.editor_runtime_downloads(), 2);
    let runtime = &status["capabilities"]["editorRuntime"];
    assert_eq!(runtime["state"], "ready", "{runtime}");
    assert_eq!(runtime["version"], "4.100.3");
    assert_eq!(
        status["capabilities"]["toolStatus"]["editorRuntime"],
        *runtime
    );
    // Kandan heard the download and the ready state through heartbeats.
    let heartbeat = editor
        .harness
        .event(|event| {
            event.event == "heartbeat"
                && event.payload["capabilities"]["editorRuntime"]["state"] == "ready"
        })
        .await;
    assert_eq!(heartbeat.payload["capabilities"]["localEditor"], true);
    assert!(editor.serves(port_of(&status)).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runtime_that_never_matches_its_checksum_is_never_used() {
    let wrong = "0".repeat(64);
    let harness_source = move |harness: &Harness| serve_runtime(harness, 0, Some(wrong));
    let editor = Editor::start_with("editor-bad-runtime", harness_source).await;
    let status = editor.open(&editor.harness.project.dir, "bad").await;
    assert_eq!(status["ok"], false, "{status}");
    let reason = status["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("the editor runtime is not available"),
        "{reason}"
    );
    assert!(reason.contains("checksum"), "{reason}");
    assert_eq!(status["capabilities"]["editorRuntime"]["state"], "failed");
    assert_eq!(status["capabilities"]["localEditor"], false);
    // Nothing was unpacked from it.
    let cache = editor.harness.project.dir.with_extension("runtime-cache");
    assert!(!cache.join("code-server-4.100.3-linux-x64").exists());
}

/// A minimal VS Code extension package, as the collaboration extension comes from Kandan.
fn test_vsix() -> Vec<u8> {
    use std::io::Write;
    let manifest = r#"<?xml version="1.0" encoding="utf-8"?>
<PackageManifest Version="2.0.0" xmlns="http://schemas.microsoft.com/developer/vsx-schema/2011">
  <Metadata>
    <Identity Language="en-US" Id="oct-test" Version="0.0.1" Publisher="linzumi-test" />
    <DisplayName>OCT test</DisplayName>
    <Description xml:space="preserve">Stands in for Open Collaboration Tools.</Description>
    <Properties><Property Id="Microsoft.VisualStudio.Code.Engine" Value="^1.80.0" /></Properties>
  </Metadata>
  <Installation><InstallationTarget Id="Microsoft.VisualStudio.Code"/></Installation>
  <Dependencies/>
  <Assets><Asset Type="Microsoft.VisualStudio.Code.Manifest" Path="extension/package.json" Addressable="true" /></Assets>
</PackageManifest>"#;
    let content_types = r#"<?xml version="1.0" encoding="utf-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension=".json" ContentType="application/json"/><Default Extension=".js" ContentType="application/javascript"/><Default Extension=".vsixmanifest" ContentType="text/xml"/></Types>"#;
    let package = json!({"name": "oct-test", "publisher": "linzumi-test", "version": "0.0.1",
        "engines": {"vscode": "^1.80.0"}, "main": "./extension.js"});
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, contents) in [
        ("extension.vsixmanifest", manifest.to_owned()),
        ("[Content_Types].xml", content_types.to_owned()),
        ("extension/package.json", package.to_string()),
        (
            "extension/extension.js",
            "exports.activate = () => {};".to_owned(),
        ),
    ] {
        zip.start_file(name, options).unwrap();
        zip.write_all(contents.as_bytes()).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// Stands in for the Open Collaboration server: answers what it was started with.
const TEST_OCT_SERVER: &str = r#"
const http = require("node:http");
http.createServer((request, response) => {
  response.setHeader("content-type", "application/json");
  response.end(JSON.stringify({
    room: process.env.OCT_ROOM_ID,
    editorSession: process.env.OCT_EDITOR_SESSION_ID,
    hasBootstrapToken: process.env.OCT_BOOTSTRAP_TOKEN === "bt-secret",
  }));
}).listen(Number(process.env.PORT), process.env.HOST);
"#;

#[tokio::test(flavor = "multi_thread")]
async fn collaboration_installs_the_extension_and_serves_its_server_as_a_managed_port() {
    let editor = Editor::real("editor-oct").await;
    let kandan = &editor.harness.kandan;
    let extension = kandan.set_editor_asset("oct/extension.vsix", test_vsix());
    let server = kandan.set_editor_asset("oct/server.js", TEST_OCT_SERVER.as_bytes().to_vec());
    let project = editor.harness.project.dir.clone();
    editor
        .harness
        .control(
            json!({"type": "start_local_editor", "cwd": project, "requestId": "oct",
            "collaboration": {"provider": "oct", "editorSessionId": 7, "runtimeSessionId": "rt-1",
                "roomId": "room-42", "extensionAssetPath": extension, "serverAssetPath": server,
                "bootstrapToken": "bt-secret"}}),
        )
        .await;
    let status = editor
        .harness
        .event(|event| event.event == "local_editor_status" && event.payload["requestId"] == "oct")
        .await
        .payload;
    assert_eq!(status["ok"], true, "{status}");
    let collaboration = &status["collaboration"];
    assert_eq!(collaboration["provider"], "oct");
    assert_eq!(collaboration["roomId"], "room-42");
    assert_eq!(collaboration["editorSessionId"], 7);
    let server_port = u16::try_from(collaboration["serverPort"].as_u64().unwrap()).unwrap();
    let editor_port = port_of(&status);
    let mut expected = vec![editor_port, server_port];
    expected.sort_unstable();
    assert_eq!(status["capabilities"]["allowedPorts"], json!(expected));
    assert_eq!(
        kandan.editor_assets_served(),
        vec!["oct/extension.vsix", "oct/server.js"]
    );

    // The extension is in the runner's own extensions folder, pointed at the server.
    let data = &editor._data.dir;
    assert!(
        data.join("extensions/linzumi-test.oct-test-0.0.1/package.json")
            .exists()
    );
    let settings: Value =
        serde_json::from_slice(&std::fs::read(data.join("user-data/User/settings.json")).unwrap())
            .unwrap();
    assert_eq!(
        settings["oct.serverUrl"],
        format!("http://127.0.0.1:{server_port}")
    );

    // Kandan reaches the collaboration server without a prompt (a managed port).
    let answer: Value = preview_client(kandan, RUNNER_ID, server_port)
        .get(kandan.preview_url(RUNNER_ID, server_port))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        answer,
        json!({"room": "room-42", "editorSession": "7", "hasBootstrapToken": true})
    );

    // The server dying ends the editor with it, and both ports are revoked.
    let since = SystemTime::now();
    process_tree::signal(&[listener_pid(server_port)], Signal::Kill);
    let exit = editor.exit_status(since).await;
    assert!(
        exit["reason"]
            .as_str()
            .unwrap()
            .starts_with("the collaboration server exited"),
        "{exit}"
    );
    assert_eq!(
        exit["capabilities"]["revokedPorts"],
        json!([editor_port, server_port])
    );
    assert_eq!(exit["capabilities"]["allowedPorts"], json!([]));
    assert_eq!(editor.editor_sockets(), Vec::<PathBuf>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn collaboration_assets_only_come_from_kandan() {
    let editor = Editor::real("editor-oct-url").await;
    editor
        .harness
        .control(
            json!({"type": "start_local_editor", "cwd": editor.harness.project.dir,
            "requestId": "oct-url",
            "collaboration": {"provider": "oct", "editorSessionId": 1, "runtimeSessionId": "r",
                "roomId": "room", "extensionAssetPath": "https://evil.example/x.vsix",
                "serverAssetPath": "/editor-assets/none.js"}}),
        )
        .await;
    let status = editor
        .harness
        .event(|event| {
            event.event == "local_editor_status" && event.payload["requestId"] == "oct-url"
        })
        .await
        .payload;
    assert_eq!(status["ok"], false, "{status}");
    assert!(
        status["reason"]
            .as_str()
            .unwrap()
            .contains("must be a path on Kandan"),
        "{status}"
    );
    assert!(editor.harness.kandan.editor_assets_served().is_empty());
}
