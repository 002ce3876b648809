//! Linzumi Desktop end to end, as a person uses it: the real app on Xvfb with a private
//! D-Bus session (gnome-keyring unlocked on it, dunst as the notification server), its
//! window driven through WebDriver (tauri-driver + WebKitWebDriver), against the Kandan
//! test server and the real codex on the mock model API.
//!
//! - Sign in: the window's button opens the "browser" (a stand-in `xdg-open` that records
//!   the URL: the test plays the browser, following Kandan's redirect), and the
//!   `linzumi://` link reaches the running app through a second launch, as the desktop
//!   hands it over. A forged and a replayed link are refused in the window.
//! - The shared folder resumes after sign-in; its status shows; a screenshot is kept in
//!   `.artifacts/desktop-e2e.png`.
//! - Codex asks for approval: dunst shows the notification, its Approve button resolves
//!   the request on Kandan. Answered in the chat first, the notification is withdrawn.
//! - A click on a prompt's notification opens the window at that prompt; approved there,
//!   a dev server's preview opens, and "Stop preview" withdraws it (Kandan is told).
//! - The tray menu (trayer as the tray host, clicked with xdotool) turns on Start at
//!   login; "Share folder with Kandan…" opens the picker at once (a folder already
//!   shared is answered in a notification while the window is closed, another is
//!   shared); it opens the window (made only then: a tray app keeps no webview while
//!   closed), signs in, answers a Codex approval from the menu, and Quit ends the app and
//!   the folders' Codex; so does SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../src-tauri/core/tests/support/mod.rs"]
mod session;
mod support;
mod trayer;
mod webdriver;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use kandan_test_server::{KandanTestServer, ServerConfig};
use mock_model_api::{CodexHome, CodexHomeOptions, MockModelApi};
use serde_json::{Value, json};
use session::{require, wait_until};
use support::{
    Desk, WAIT, app_servers, authorize_in_browser, click_button, click_button_in, mock, quit,
    wait_for_notice, wait_for_snapshot,
};

fn with_state(link: &str, state: &str) -> String {
    let mut url = url::Url::parse(link).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(key, value)| {
            let value = if key == "state" {
                state.to_owned()
            } else {
                value.into_owned()
            };
            (key.into_owned(), value)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    url.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_share_and_approve_from_a_notification() {
    let kandan = KandanTestServer::start(ServerConfig::default())
        .await
        .unwrap();
    let model = MockModelApi::start().await.unwrap();
    // Approved commands run unsandboxed, so the test sees their effect.
    let codex = CodexHome::create(
        &model,
        CodexHomeOptions {
            sandbox_mode: Some("danger-full-access".into()),
            ..CodexHomeOptions::default()
        },
    )
    .unwrap();
    let mut desk = Desk::new("desktop-e2e", &kandan, &codex);
    desk.start_dunst();

    let driver = desk.start_driver().await;

    // Not signed in yet: the folder waits for a sign-in.
    let state = wait_for_snapshot(&driver, "the folder waits for a sign-in", |s| {
        s["folders"][0]["state"] == "waiting_for_sign_in"
    })
    .await;
    assert_eq!(state["account"]["signedIn"], false);
    assert_eq!(state["account"]["tokenStorage"], "keyring", "{state:#}");

    // Sign in: the button opens Kandan's authorization page in the browser.
    let (authorize, callback) = authorize_in_browser(&desk, &driver).await;
    assert!(
        authorize.starts_with(&format!(
            "{}/api/v2/local-codex-runner/oauth/authorize",
            kandan.http_url()
        )),
        "{authorize}"
    );
    assert!(
        authorize.contains("redirect_uri=linzumi%3A%2F%2Foauth%2Fcallback"),
        "{authorize}"
    );
    assert!(
        callback.starts_with("linzumi://oauth/callback?"),
        "{callback}"
    );

    // A link with a forged state is refused, and does not spoil the real one.
    desk.hand_over(&with_state(&callback, "forged-state"));
    wait_for_notice(
        &driver,
        "Ignored a sign-in link that was not for this sign-in.",
    )
    .await;
    desk.hand_over(&callback);
    let state = wait_for_snapshot(&driver, "the folder is shared after signing in", |s| {
        s["account"]["signedIn"] == true && s["folders"][0]["state"] == "ready"
    })
    .await;
    assert_eq!(state["account"]["user"], "tester");
    // The token went to the keyring, not to a file next to the settings.
    let config_dir = desk.config_path.parent().unwrap();
    let files: Vec<String> = std::fs::read_dir(config_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["desktop.json"]);
    let saved = std::fs::read_to_string(&desk.config_path).unwrap();
    assert!(!saved.contains("tok"), "no token in the settings: {saved}");
    // Replaying the used link is refused too.
    desk.hand_over(&callback);
    wait_for_notice(&driver, "already used").await;

    // The window shows the folder as shared, with the channel Kandan chose.
    let folder = &state["folders"][0];
    let (workspace, channel) = (
        folder["workspace"].as_str().unwrap().to_owned(),
        folder["channel"].as_str().unwrap().to_owned(),
    );
    let badge = driver
        .wait_for(
            "the folder card shows Ready",
            "const c = document.querySelector('.folder-card[data-state=ready]'); \
             return c ? c.textContent : null;",
            json!([]),
        )
        .await;
    assert!(badge.as_str().unwrap().contains("my-app"), "{badge}");
    tokio::time::sleep(Duration::from_millis(1500)).await; // a frame after the change
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(artifacts.join("desktop-e2e.png"), driver.screenshot().await).unwrap();

    // "Open in Kandan" opens the folder's channel in the browser.
    click_button(&driver, "Open in Kandan").await;
    wait_until("the app opens the channel", WAIT, || {
        desk.opened().len() == 2
    });
    assert_eq!(
        desk.opened()[1],
        format!("{}/{workspace}/channels/{channel}", kandan.http_url())
    );

    // Codex asks before running a command: the notification's Approve answers Kandan.
    let thread = kandan
        .wait_for_thread(
            &workspace,
            &channel,
            |messages| messages.iter().any(|m| m.posted_by_runner.is_some()),
            WAIT,
        )
        .await
        .unwrap()
        .iter()
        .find(|m| m.payload["structured"]["kind"] == "local_runner_availability")
        .unwrap()
        .thread_id
        .clone();
    std::fs::write(desk.dir().join("choice"), "Approve").unwrap();
    let asked = kandan
        .post_user_message(
            &workspace,
            &channel,
            Some(&thread),
            "tester",
            &mock(json!([{"exec": "touch approved.txt"}, {"text": "done"}])),
        )
        .await
        .unwrap()
        .seq;
    wait_until("dunst shows the approval", WAIT, || desk.displayed() == 1);
    wait_for_snapshot(&driver, "the folder awaits approval", |s| {
        s["folders"][0]["state"] == "awaiting_approval"
    })
    .await;
    desk.dunstctl(&["context"]);
    let processed = |seq: i64| {
        move |messages: &[kandan_test_server::ChatMessage]| {
            messages.iter().any(|m| {
                m.seq == seq && m.state.as_ref().is_some_and(|s| s["status"] == "processed")
            })
        }
    };
    kandan
        .wait_for_thread(&workspace, &channel, processed(asked), WAIT)
        .await
        .unwrap();
    assert!(desk.project.join("approved.txt").exists());
    let menus = std::fs::read_to_string(desk.dir().join("menus")).unwrap();
    assert!(
        menus.contains("#Approve (my-app: Run `touch approved.txt`?)"),
        "{menus}"
    );
    wait_until("the notification is gone", WAIT, || desk.displayed() == 0);

    // Answered in the chat first: the notification is withdrawn.
    let second = kandan
        .post_user_message(
            &workspace,
            &channel,
            Some(&thread),
            "tester",
            &mock(json!([{"exec": "touch denied.txt"}, {"text": "done"}])),
        )
        .await
        .unwrap()
        .seq;
    wait_until("dunst shows the second approval", WAIT, || {
        desk.displayed() == 1
    });
    let waiting = wait_for_snapshot(&driver, "the window lists the approval", |s| {
        s["folders"][0]["approvals"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    })
    .await;
    let request_id = waiting["folders"][0]["approvals"][0]["requestId"]
        .as_str()
        .unwrap()
        .to_owned();
    kandan
        .post_user_message(
            &workspace,
            &channel,
            Some(&thread),
            "tester",
            &format!("/kandan deny {request_id}"),
        )
        .await
        .unwrap();
    kandan
        .wait_for_thread(&workspace, &channel, processed(second), WAIT)
        .await
        .unwrap();
    wait_until("the notification is withdrawn", WAIT, || {
        desk.displayed() == 0
    });
    assert!(!desk.project.join("denied.txt").exists());
    wait_for_snapshot(&driver, "the folder is ready again", |s| {
        s["folders"][0]["state"] == "ready"
    })
    .await;

    // A click on a prompt's notification opens the window at that prompt.
    kandan
        .post_user_message(
            &workspace,
            &channel,
            Some(&thread),
            "tester",
            &mock(json!([{"exec": "touch clicked.txt"}, {"text": "done"}])),
        )
        .await
        .unwrap();
    wait_until("dunst shows the third approval", WAIT, || {
        desk.displayed() == 1
    });
    let waiting = wait_for_snapshot(&driver, "the window lists the approval", |s| {
        s["folders"][0]["approvals"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    })
    .await;
    let request_id = waiting["folders"][0]["approvals"][0]["requestId"].clone();
    desk.dunstctl(&["action", "0"]);
    wait_for_snapshot(&driver, "the window is asked to show the prompt", |s| {
        s["focus"]["requestId"] == request_id
    })
    .await;
    driver
        .wait_for(
            "the prompt's Approve has the focus",
            "return document.activeElement?.id?.startsWith('approve-') || null;",
            json!([]),
        )
        .await;
    click_button_in(&driver, ".request", "Approve").await;
    wait_until("the approved command ran", WAIT, || {
        desk.project.join("clicked.txt").exists()
    });
    // The answered card leaves before the next question, or the next wait would find it.
    driver
        .wait_for(
            "the answered prompt leaves the window",
            "return document.querySelector('.request') ? null : true;",
            json!([]),
        )
        .await;

    // A dev server: its command is approved in the window, its preview too, and "Stop
    // preview" withdraws it (Kandan is told).
    let port = support::free_port();
    kandan
        .post_user_message(
            &workspace,
            &channel,
            Some(&thread),
            "tester",
            &mock(json!([
                {"exec": format!("python3 -m http.server {port} --bind 127.0.0.1"), "yield_ms": 1500},
                {"text": "The dev server is up."}
            ])),
        )
        .await
        .unwrap();
    let card = driver
        .wait_for(
            "the window asks to run the server",
            "const r = document.querySelector('.request'); return r ? r.innerText : null;",
            json!([]),
        )
        .await;
    let card = card.as_str().unwrap();
    assert!(
        card.contains(&format!("Run python3 -m http.server {port}")),
        "the command as typed, without its shell: {card}"
    );
    assert!(card.contains("tester asked: “mock:"), "who asked: {card}");
    click_button_in(&driver, ".request", "Approve").await;
    wait_for_snapshot(&driver, "the window asks to open a preview", |s| {
        s["folders"][0]["portPrompts"][0]["port"] == port
    })
    .await;
    click_button_in(&driver, ".request", "Approve").await;
    let state = wait_for_snapshot(&driver, "the preview is open", |s| {
        s["folders"][0]["forwardedPorts"][0]["port"] == port
    })
    .await;
    let said: Vec<&str> = state["activity"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|entry| entry["text"].as_str())
        .collect();
    assert!(
        said.contains(
            &format!("Preview of port {port} opened — approved by you (window)").as_str()
        ),
        "{said:#?}"
    );
    assert!(
        said.iter()
            .any(|text| text.ends_with("approved by you (window)") && text.starts_with("Run `")),
        "{said:#?}"
    );
    kandan.clear_events();
    click_button(&driver, "Stop preview").await;
    let revoked = kandan
        .wait_for_event(|event| event.event == "forward_port_revoked", WAIT)
        .await
        .unwrap();
    assert_eq!(revoked.payload["port"], port);
    assert_eq!(revoked.payload["reason"], "stopped_by_owner");
    wait_for_snapshot(&driver, "the preview is gone from the window", |s| {
        s["folders"][0]["forwardedPorts"] == json!([])
    })
    .await;

    quit(driver, &desk.config_path).await;
    kandan.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tray_menu_works_in_a_real_tray() {
    require("trayer");
    let kandan = KandanTestServer::start(ServerConfig::default())
        .await
        .unwrap();
    let model = MockModelApi::start().await.unwrap();
    let codex = CodexHome::create(&model, CodexHomeOptions::default()).unwrap();
    let mut desk = Desk::new("desktop-tray", &kandan, &codex);
    desk.start_dunst();
    trayer::start(&mut desk.session, &desk.env);
    wait_until("trayer is up", WAIT, || trayer::panel(&desk.env).is_some());

    let app = desk.launch();
    // The icon is embedded once trayer grows to hold it.
    wait_until("the tray icon is embedded", WAIT, || {
        trayer::panel(&desk.env).is_some_and(|(_, _, width, _)| width >= 16)
    });
    // auto-launch writes ~/.config/autostart whatever XDG_CONFIG_HOME says.
    let autostart = desk.dir().join("home/.config/autostart");
    let open_menu = || {
        // xdotool can miss the panel while trayer resizes it: ask until it answers.
        let mut panel = None;
        wait_until("trayer's panel is found", WAIT, || {
            panel = trayer::panel(&desk.env);
            panel.is_some()
        });
        let (x, y, width, height) = panel.unwrap();
        let (cx, cy) = (x + width / 2, y + height / 2);
        let status = desk
            .command("xdotool")
            .args(["mousemove", &cx.to_string(), &cy.to_string(), "click", "1"])
            .status()
            .unwrap();
        assert!(status.success());
        // The menu grabs the keyboard once it is mapped.
        std::thread::sleep(Duration::from_millis(1000));
    };

    let registered =
        || std::fs::read_dir(&autostart).is_ok_and(|mut entries| entries.next().is_some());
    // Signed out, from the bottom: Quit, Start at login, Open Linzumi, the folder, Share
    // folder with Kandan…, Sign in to Kandan… (the status and account lines on top are
    // not selectable). The menu is rebuilt (and closes) while the app starts up and its
    // folder changes state, so a press may miss.
    // Chooses the item `keys` lead to until `done` (a press may miss; see above).
    let choose = |keys: &[&str], done: &dyn Fn() -> bool| {
        for _ in 0..5 {
            open_menu();
            desk.key(keys);
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while !done() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if done() {
                return true;
            }
            desk.key(&["Escape"]);
        }
        false
    };
    // Shares `folder` through the tray's "Share folder with Kandan…" (the fifth entry
    // from the bottom while signed out), typing its path into the picker, until `done`.
    let picker_shown = || {
        desk.command("xdotool")
            .args([
                "search",
                "--onlyvisible",
                "--name",
                "^Share a folder with Kandan$",
            ])
            .output()
            .is_ok_and(|output| !output.stdout.is_empty())
    };
    let share_in_tray = |folder: &std::path::Path, done: &dyn Fn() -> bool| {
        assert!(
            choose(&["Up", "Up", "Up", "Up", "Up", "Return"], &picker_shown),
            "Share folder with Kandan… opens the picker"
        );
        desk.pick_folder("^Share a folder with Kandan$", folder, done);
    };

    assert!(
        choose(&["Up", "Up", "Return"], &registered),
        "Start at login registers a login item"
    );
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(&desk.config_path).unwrap()).unwrap();
    assert_eq!(config["settings"]["startAtLogin"], true, "{config:#}");

    // Sharing a folder that is already shared, from the tray with no window open: the
    // answer comes as a notification.
    share_in_tray(&desk.project, &|| desk.displayed() > 0);
    wait_until("a notification answers", WAIT, || desk.displayed() > 0);
    desk.dunstctl(&["close-all"]);
    let history: Value = serde_json::from_str(&desk.dunstctl(&["history"])).unwrap();
    let body = history["data"][0][0]["body"]["data"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(body.contains("is already shared"), "{history:#}");

    // With a tray, the window is only made when asked for: Open Linzumi.
    let window_shown = || {
        desk.command("xdotool")
            .args(["search", "--onlyvisible", "--name", "^Linzumi$"])
            .output()
            .is_ok_and(|output| !output.stdout.is_empty())
    };
    assert!(!window_shown(), "no window before it is asked for");
    open_menu();
    desk.key(&["Up", "Up", "Up", "Return"]);
    wait_until("Open Linzumi shows the window", WAIT, window_shown);

    // Without a window manager the window opens over the panel: move it below.
    wait_until("the window is moved off the panel", WAIT, || {
        desk.command("xdotool")
            .args(["search", "--onlyvisible", "--name", "^Linzumi$"])
            .args(["windowmove", "0", "40"])
            .status()
            .is_ok_and(|status| status.success())
    });
    // Sign in from the tray: the browser opens Kandan's page, the link comes back through
    // a second launch, and the shared folder gets its Codex.
    let authorize = || {
        desk.opened()
            .into_iter()
            .find(|url| url.contains("/oauth/authorize"))
    };
    // "Share folder with Kandan…" opens the folder picker at once; the folder typed
    // there is shared.
    let other = desk.dir().join("other-app");
    std::fs::create_dir_all(&other).unwrap();
    let shared = || {
        std::fs::read_to_string(&desk.config_path).is_ok_and(|config| config.contains("other-app"))
    };
    share_in_tray(&other, &shared);
    wait_until("the picked folder is shared", WAIT, shared);

    // The menu has one more folder now: Sign in to Kandan… is one further up.
    assert!(
        choose(
            &["Up", "Up", "Up", "Up", "Up", "Up", "Up", "Return"],
            &|| authorize().is_some()
        ),
        "Sign in… opens the browser"
    );
    let authorize = authorize().unwrap();
    let response = webdriver::http_client(false)
        .get(&authorize)
        .send()
        .await
        .unwrap();
    desk.hand_over(response.headers()["location"].to_str().unwrap());
    wait_until("both shared folders' Codex run", WAIT, || {
        app_servers(&desk.config_path).len() == 2
    });

    // A prompt is answerable from the tray menu (here there is no notification server at
    // all): it is the first entry after the status and account lines, and its submenu
    // starts with Approve.
    let read_config = || -> Value {
        serde_json::from_str(&std::fs::read_to_string(&desk.config_path).unwrap()).unwrap()
    };
    wait_until("Kandan gave the folders a channel", WAIT, || {
        read_config()["folders"]
            .as_array()
            .unwrap()
            .iter()
            .all(|folder| folder["channel"].is_string())
    });
    let config = read_config();
    let (workspace, channel) = (
        config["folders"][0]["workspace"]
            .as_str()
            .unwrap()
            .to_owned(),
        config["folders"][0]["channel"].as_str().unwrap().to_owned(),
    );
    let thread = kandan
        .wait_for_thread(
            &workspace,
            &channel,
            |messages| {
                messages
                    .iter()
                    .any(|m| m.payload["structured"]["kind"] == "local_runner_availability")
            },
            WAIT,
        )
        .await
        .unwrap()
        .iter()
        .find(|m| m.payload["structured"]["kind"] == "local_runner_availability")
        .unwrap()
        .thread_id
        .clone();
    kandan
        .post_user_message(
            &workspace,
            &channel,
            Some(&thread),
            "tester",
            &support::mock(json!([{"exec": "touch from-tray.txt"}, {"text": "done"}])),
        )
        .await
        .unwrap();
    let touched = || {
        [&desk.project, &other]
            .iter()
            .any(|dir| dir.join("from-tray.txt").exists())
    };
    // The menu with the prompt in it, for a look: .artifacts/desktop-tray-menu.png.
    std::thread::sleep(Duration::from_secs(4)); // Codex asks within a second or two
    open_menu();
    desk.key(&["Down", "Right"]);
    std::thread::sleep(Duration::from_millis(700));
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = desk
        .command("import")
        .args(["-window", "root"])
        .arg(artifacts.join("desktop-tray-menu.png"))
        .status()
        .unwrap();
    assert!(shot.success());
    desk.key(&["Escape", "Escape"]);
    assert!(
        choose(&["Down", "Right", "Return"], &touched),
        "Approve in the tray menu runs the command"
    );

    let running = std::cell::RefCell::new(app);
    assert!(
        choose(&["Up", "Return"], &|| running
            .borrow_mut()
            .try_wait()
            .unwrap()
            .is_some()),
        "Quit ends the app"
    );
    assert!(running.into_inner().wait().unwrap().success());
    wait_until("Quit ends the folder's Codex", WAIT, || {
        app_servers(&desk.config_path).is_empty()
    });

    // Still signed in (the token is in the keyring), a new launch shares the folder again.
    // SIGTERM, as a logout or `systemctl --user stop` sends, ends it and its Codex too.
    let mut app = desk.launch();
    wait_until("the folder's Codex runs again", WAIT, || {
        !app_servers(&desk.config_path).is_empty()
    });
    let status = Command::new("kill")
        .args(["-TERM", &app.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_until("SIGTERM ends the app", WAIT, || {
        app.try_wait().unwrap().is_some()
    });
    assert!(app.wait().unwrap().success(), "SIGTERM is a clean exit");
    wait_until("SIGTERM ends the folder's Codex", WAIT, || {
        app_servers(&desk.config_path).is_empty()
    });
    kandan.shutdown().await;
}
