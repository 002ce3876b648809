//! Linzumi Desktop's trust boundaries end to end (issue 13): the real app on Xvfb, its
//! window driven through tauri-driver, against the Kandan test server and the real codex
//! on the mock model API (the desk it runs on is in support.rs).
//!
//! - Several shared folders in one app: the app hosts every folder's runner in one
//!   process, and each folder's thread is asked only about the dev servers its own Codex
//!   started: never about another folder's, nor about any folder's Codex app-server or
//!   editor.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../src-tauri/core/tests/support/mod.rs"]
mod session;
mod support;
mod webdriver;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kandan_test_server::{ChatMessage, KandanTestServer, ServerConfig};
use linzumi_desktop_core::settings::ConfigStore;
use linzumi_engine::ports::listen_table;
use mock_model_api::{CodexHome, CodexHomeOptions, MockModelApi};
use serde_json::{Value, json};
use support::{
    Desk, WAIT, app_servers, authorize_in_browser, click_button_in, free_port, mock, quit,
    wait_for_snapshot,
};

const PROMPT: &str = "local_runner_port_forward_request";

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The pinned code-server of `tools/code-server`.
fn code_server_bin() -> PathBuf {
    let bin = workspace_root().join("tools/code-server/node_modules/.bin/code-server");
    assert!(
        bin.exists(),
        "code-server is not installed: run scripts/setup.sh (it installs tools/code-server)"
    );
    std::fs::canonicalize(bin).unwrap()
}

/// The shell command that starts the Node dev server of `testing/dev-server` on `port`.
fn dev_server_command(port: u16) -> String {
    let dir = workspace_root().join("testing/dev-server");
    assert!(
        dir.join("node_modules/ws").exists(),
        "testing/dev-server has no node_modules: run scripts/setup-tests.sh"
    );
    format!("node '{}' --port {port}", dir.join("server.mjs").display())
}

/// Where a folder is shared: its Kandan channel and the thread its runner started there.
struct Place {
    workspace: String,
    channel: String,
    thread: String,
}

/// The folder `id` as the window shows it.
fn card<'a>(state: &'a Value, id: &str) -> &'a Value {
    state["folders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|folder| folder["id"] == id)
        .unwrap_or_else(|| panic!("the window shows folder {id}: {state:#}"))
}

/// The channel Kandan gave the folder `id`, and the thread its runner announced itself in.
async fn place(kandan: &KandanTestServer, state: &Value, id: &str, runner_id: &str) -> Place {
    let folder = card(state, id);
    let (workspace, channel) = (
        folder["workspace"].as_str().unwrap().to_owned(),
        folder["channel"].as_str().unwrap().to_owned(),
    );
    let announced = |m: &ChatMessage| {
        m.posted_by_runner.as_deref() == Some(runner_id)
            && m.payload["structured"]["kind"] == "local_runner_availability"
    };
    let thread = kandan
        .wait_for_thread(
            &workspace,
            &channel,
            |messages| messages.iter().any(announced),
            WAIT,
        )
        .await
        .unwrap()
        .into_iter()
        .find(announced)
        .unwrap()
        .thread_id;
    Place {
        workspace,
        channel,
        thread,
    }
}

/// Every port prompt in the channels of `places`: (thread, port).
fn prompts(kandan: &KandanTestServer, places: &[&Place]) -> Vec<(String, u64)> {
    let channels: HashSet<(&str, &str)> = places
        .iter()
        .map(|place| (place.workspace.as_str(), place.channel.as_str()))
        .collect();
    channels
        .into_iter()
        .flat_map(|(workspace, channel)| kandan.chat_messages(workspace, channel))
        .filter(|m| m.payload["structured"]["kind"] == PROMPT)
        .map(|m| {
            (
                m.thread_id,
                m.payload["structured"]["port"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The ports of `prompts` asked in `thread`.
fn asked_in(prompts: &[(String, u64)], thread: &str) -> Vec<u64> {
    prompts
        .iter()
        .filter(|(asked, _)| asked == thread)
        .map(|(_, port)| *port)
        .collect()
}

/// The TCP ports the processes `pids` listen on.
fn listening_ports(pids: &[u32]) -> HashSet<u64> {
    let pids: HashSet<u32> = pids.iter().copied().collect();
    listen_table::system()
        .listeners(&pids)
        .unwrap()
        .into_iter()
        .map(|listener| u64::from(listener.port))
        .collect()
}

/// The ports the window lists as waiting for an answer in the card of folder `id`.
fn window_prompts(state: &Value, id: &str) -> Vec<u64> {
    card(state, id)["portPrompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|prompt| prompt["port"].as_u64().unwrap())
        .collect()
}

/// Two folders shared in one app (each has its own thread in the channel Kandan gives
/// the signed-in user), B's editor running. A dev server Codex starts in folder A is
/// offered in A's thread and A's card only; B is asked about nothing; no port of either
/// folder's Codex app-server or of B's editor is offered anywhere.
#[tokio::test(flavor = "multi_thread")]
async fn a_dev_server_is_offered_only_in_its_own_folders_thread() {
    let kandan = KandanTestServer::start(ServerConfig::default())
        .await
        .unwrap();
    let model = MockModelApi::start().await.unwrap();
    let codex = CodexHome::create(
        &model,
        CodexHomeOptions {
            sandbox_mode: Some("danger-full-access".into()),
            ..CodexHomeOptions::default()
        },
    )
    .unwrap();
    let mut desk = Desk::new("desktop-folders", &kandan, &codex);
    desk.start_dunst();

    // Folder A (the desk's my-app) and folder B; Codex may start servers without asking;
    // the editor is the pinned code-server.
    let store = ConfigStore::open(&desk.config_path);
    let mut config = store.load().unwrap();
    let folder_b = desk.dir().join("other-app");
    std::fs::create_dir_all(&folder_b).unwrap();
    config.add_folder(&folder_b).unwrap();
    config.settings.approval_policy = Some("never".into());
    config.settings.sandbox = Some("danger-full-access".into());
    config.settings.code_server_bin = Some(code_server_bin().display().to_string());
    store.save(&config).unwrap();
    let (a, b) = (config.folders[0].clone(), config.folders[1].clone());
    assert_eq!(a.path, std::fs::canonicalize(&desk.project).unwrap());

    // Signed in, the app shares both folders: two runners, two Codex app-servers.
    let driver = desk.start_driver().await;
    let (_, callback) = authorize_in_browser(&desk, &driver).await;
    desk.hand_over(&callback);
    let state = wait_for_snapshot(&driver, "both folders are shared", |s| {
        s["folders"].as_array().is_some_and(|folders| {
            folders.len() == 2 && folders.iter().all(|folder| folder["state"] == "ready")
        })
    })
    .await;
    let place_a = place(&kandan, &state, &a.id, &a.runner_id).await;
    let place_b = place(&kandan, &state, &b.id, &b.runner_id).await;
    assert_ne!(
        place_a.thread, place_b.thread,
        "each folder has its own thread"
    );
    let codex_ports = listening_ports(&app_servers(&desk.config_path));
    assert!(
        codex_ports.len() >= 2,
        "each folder's Codex app-server listens: {codex_ports:?}"
    );

    // B's editor, opened from B's card as a person does.
    click_button_in(
        &driver,
        &format!("[data-folder=\"{}\"]", b.id),
        "Open editor",
    )
    .await;
    let editor_status = kandan
        .wait_for_event(
            |event| {
                event.topic == format!("local_runner:{}", b.runner_id)
                    && event.event == "local_editor_status"
                    && event.payload["ok"] == true
            },
            WAIT,
        )
        .await
        .unwrap()
        .payload;
    let editor_port = editor_status["capabilities"]["localEditorPort"]
        .as_u64()
        .unwrap_or_else(|| panic!("B's editor has a port: {editor_status}"));
    wait_for_snapshot(&driver, "B's card shows its editor running", |s| {
        card(s, &b.id)["editor"]["port"] == editor_port
    })
    .await;

    // Codex in A starts a dev server.
    let dev_port = free_port();
    kandan
        .post_user_message(
            &place_a.workspace,
            &place_a.channel,
            Some(&place_a.thread),
            "tester",
            &mock(json!([
                {"exec": dev_server_command(dev_port), "yield_ms": 1500},
                {"text": "The dev server is up."}
            ])),
        )
        .await
        .unwrap();
    kandan
        .wait_for_thread(
            &place_a.workspace,
            &place_a.channel,
            |messages| {
                messages.iter().any(|m| {
                    m.payload["structured"]["kind"] == PROMPT
                        && m.payload["structured"]["port"] == dev_port
                })
            },
            WAIT,
        )
        .await
        .expect("folder A is asked about its dev server");
    // The watchers scan every 200 ms and offer what stayed up for 750 ms: whatever they
    // would offer has been offered well before this.
    tokio::time::sleep(Duration::from_secs(4)).await;

    let state = wait_for_snapshot(&driver, "A's card asks about the dev server", |s| {
        window_prompts(s, &a.id).contains(&u64::from(dev_port))
    })
    .await;
    let asked = prompts(&kandan, &[&place_a, &place_b]);
    let offered: Vec<(&str, u64)> = asked
        .iter()
        .map(|(thread, port)| {
            let place = if *thread == place_a.thread {
                "A's thread"
            } else if *thread == place_b.thread {
                "B's thread"
            } else {
                "another thread"
            };
            (place, *port)
        })
        .chain(
            window_prompts(&state, &a.id)
                .into_iter()
                .map(|port| ("A's card", port)),
        )
        .chain(
            window_prompts(&state, &b.id)
                .into_iter()
                .map(|port| ("B's card", port)),
        )
        .collect();
    for (place, port) in &offered {
        assert!(
            !codex_ports.contains(port),
            "{place} was asked to preview a Codex app-server's port {port} \
             (Codex listens on {codex_ports:?}; everything offered: {offered:?})"
        );
        assert_ne!(
            *port, editor_port,
            "{place} was asked to preview B's editor (everything offered: {offered:?})"
        );
    }
    assert_eq!(
        asked_in(&asked, &place_b.thread),
        Vec::<u64>::new(),
        "B's thread was asked about ports (everything offered: {offered:?})"
    );
    assert_eq!(window_prompts(&state, &b.id), Vec::<u64>::new());
    assert_eq!(
        asked,
        [(place_a.thread.clone(), u64::from(dev_port))],
        "A is asked about its dev server once, in its thread (everything offered: {offered:?})"
    );
    assert_eq!(window_prompts(&state, &a.id), [u64::from(dev_port)]);

    // Both folders in the window, A asking about its dev server.
    tokio::time::sleep(Duration::from_millis(1500)).await; // a frame after the change
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join(".artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(
        artifacts.join("desktop-two-folders.png"),
        driver.screenshot().await,
    )
    .unwrap();

    quit(driver, &desk.config_path).await;
    kandan.shutdown().await;
}
