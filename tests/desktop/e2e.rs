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
//! - The tray menu (trayer as the tray host, clicked with xdotool) turns on Start at
//!   login, opens the window (made only then: a tray app keeps no webview while
//!   closed), signs in, and Quit ends the app and the folder's Codex; so does SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../src-tauri/core/tests/support/mod.rs"]
mod session;
mod trayer;
mod webdriver;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use kandan_test_server::{KandanTestServer, ServerConfig};
use linzumi_desktop_core::settings::{ConfigStore, DesktopConfig};
use mock_model_api::{CodexHome, CodexHomeOptions, MockModelApi};
use serde_json::{Value, json};
use session::{Session, require, wait_until};
use webdriver::WebDriver;

const APP: &str = env!("CARGO_BIN_EXE_linzumi-desktop");
const WAIT: Duration = Duration::from_secs(60);

/// dunst's dmenu: records the menu, answers with the line of the button named in ./choice.
const PICK_SCRIPT: &str = r#"#!/bin/sh
here=$(dirname "$0")
menu=$(cat)
printf '%s\n' "$menu" >> "$here/menus"
printf '%s\n' "$menu" | grep -m1 "^#$(cat "$here/choice") "
"#;

/// The browser stand-in: remembers what the app asked to open.
const XDG_OPEN: &str = r#"#!/bin/sh
printf '%s\n' "$1" >> "$(dirname "$0")/../opened"
"#;

fn executable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Everything the app runs with: the display, the bus, its own HOME and config, the
/// browser stand-in first on PATH, codex pointed at the mock.
struct Desk {
    session: Session,
    env: Vec<(String, String)>,
    config_path: PathBuf,
    project: PathBuf,
}

impl Desk {
    fn new(name: &str, kandan: &KandanTestServer, codex: &CodexHome) -> Desk {
        for program in ["dunst", "dunstctl", "xdotool"] {
            require(program);
        }
        let mut session = Session::new(name);
        session.start_bus();
        session.start_keyring();
        let display = session.start_xvfb();
        let dir = session.dir.clone();
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        executable(&bin.join("xdg-open"), XDG_OPEN);
        let project = dir.join("my-app");
        let home = dir.join("home");
        for folder in [&project, &home] {
            std::fs::create_dir_all(folder).unwrap();
        }

        let config_path = dir.join("config/linzumi/desktop.json");
        let mut config = DesktopConfig::default();
        config.settings.kandan_url = kandan.ws_url();
        config.settings.codex_bin = mock_model_api::codex_bin().unwrap().display().to_string();
        config.settings.approval_policy = Some("untrusted".into());
        config.add_folder(&project).unwrap();
        ConfigStore::open(&config_path).save(&config).unwrap();

        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut env: Vec<(String, String)> = vec![
            ("DISPLAY".into(), display.clone()),
            ("HOME".into(), home.display().to_string()),
            (
                "XDG_CONFIG_HOME".into(),
                dir.join("config").display().to_string(),
            ),
            (
                "XDG_DATA_HOME".into(),
                dir.join("data").display().to_string(),
            ),
            (
                "XDG_RUNTIME_DIR".into(),
                dir.join("runtime").display().to_string(),
            ),
            (
                "LINZUMI_DESKTOP_CONFIG".into(),
                config_path.display().to_string(),
            ),
            ("PATH".into(), path),
            ("NO_AT_BRIDGE".into(), "1".into()),
            ("RUST_LOG".into(), "info".into()),
        ];
        env.extend(codex.env());
        env.push((
            "DBUS_SESSION_BUS_ADDRESS".into(),
            session.bus.clone().unwrap(),
        ));
        Desk {
            session,
            env,
            config_path,
            project,
        }
    }

    fn dir(&self) -> &Path {
        &self.session.dir
    }

    /// dunst, with our dmenu script for pressing buttons.
    fn start_dunst(&mut self) {
        let script = self.dir().join("pick.sh");
        executable(&script, PICK_SCRIPT);
        let dunstrc = self.dir().join("dunstrc");
        std::fs::write(
            &dunstrc,
            format!("[global]\n    dmenu = {}\n", script.display()),
        )
        .unwrap();
        let mut command = Command::new("dunst");
        command
            .arg("-config")
            .arg(&dunstrc)
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        self.session.spawn("dunst", &mut command);
        self.session.wait_for_name("org.freedesktop.Notifications");
    }

    /// Starts the app, its output discarded.
    fn launch(&self) -> std::process::Child {
        self.command(APP)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.envs(self.env.iter().cloned());
        command
    }

    fn dunstctl(&self, args: &[&str]) -> String {
        let output = self.command("dunstctl").args(args).output().unwrap();
        assert!(output.status.success(), "dunstctl {args:?}: {output:?}");
        String::from_utf8(output.stdout).unwrap()
    }

    fn displayed(&self) -> usize {
        self.dunstctl(&["count", "displayed"])
            .trim()
            .parse()
            .unwrap()
    }

    /// Launches the app a second time with `link`, as the desktop does for a
    /// `linzumi://` URL; the running app takes it and this launch exits.
    fn hand_over(&self, link: &str) {
        let mut child = self
            .command(APP)
            .arg(link)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until("the second launch exits", WAIT, || {
            child.try_wait().unwrap().is_some()
        });
        assert!(child.wait().unwrap().success());
    }

    fn opened(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir().join("opened"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// The app's state as the window renders it.
async fn snapshot(driver: &WebDriver) -> Value {
    driver
        .execute(
            "return window.__TAURI__.core.invoke('get_snapshot', {});",
            json!([]),
        )
        .await
}

async fn wait_for_snapshot(
    driver: &WebDriver,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let state = snapshot(driver).await;
        if check(&state) {
            return state;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}; the app shows {state:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The notice bar's text once it contains `text`.
async fn wait_for_notice(driver: &WebDriver, text: &str) -> String {
    driver
        .wait_for(
            &format!("the window says {text:?}"),
            "const t = document.querySelector('#notice').textContent; \
             return t.includes(arguments[0]) ? t : null;",
            json!([text]),
        )
        .await
        .as_str()
        .unwrap()
        .to_owned()
}

/// Clicks the window's button whose text starts with `label`.
async fn click_button(driver: &WebDriver, label: &str) {
    driver
        .wait_for(
            &format!("a {label:?} button"),
            "const b = [...document.querySelectorAll('button')] \
               .find((b) => b.textContent.trim().startsWith(arguments[0])); \
             if (!b) return null; b.setAttribute('data-e2e', 'target'); return true;",
            json!([label]),
        )
        .await;
    driver.click("[data-e2e=target]").await;
    driver
        .execute(
            "document.querySelector('[data-e2e=target]')?.removeAttribute('data-e2e');",
            json!([]),
        )
        .await;
}

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

fn mock(steps: Value) -> String {
    format!("mock: {}", json!({"steps": steps}))
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_share_and_approve_from_a_notification() {
    require("tauri-driver");
    require("WebKitWebDriver");
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

    let port = free_port();
    let mut driver_command = desk.command("tauri-driver");
    driver_command
        .args(["--port", &port.to_string()])
        .args(["--native-port", &free_port().to_string()])
        .stdout(Stdio::null());
    desk.session.spawn("tauri-driver", &mut driver_command);
    wait_until("tauri-driver listens", WAIT, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let driver = WebDriver::start(port, Path::new(APP)).await;

    // Not signed in yet: the folder cannot start.
    let state = wait_for_snapshot(&driver, "the folder reports it needs a sign-in", |s| {
        s["folders"][0]["state"] == "error"
    })
    .await;
    assert_eq!(state["account"]["signedIn"], false);
    assert_eq!(state["account"]["tokenStorage"], "keyring", "{state:#}");

    // Sign in: the button opens Kandan's authorization page in the browser.
    click_button(&driver, "Sign in").await;
    wait_until("the app opens the browser", WAIT, || {
        !desk.opened().is_empty()
    });
    let authorize = desk.opened().remove(0);
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
    let browser = webdriver::http_client(false);
    let response = browser.get(&authorize).send().await.unwrap();
    let callback = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        callback.starts_with("linzumi://oauth/callback?"),
        "{callback}"
    );

    // A link with a forged state is refused, and does not spoil the real one.
    desk.hand_over(&with_state(&callback, "forged-state"));
    wait_for_notice(&driver, "does not match the sign-in in progress").await;
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
    assert!(menus.contains("#Approve (Codex asks"), "{menus}");
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

    // Ending the session kills the app (tauri-driver sends SIGKILL), which leaves its
    // Codex running: end it here so runs leave nothing behind.
    driver.quit().await;
    for pid in processes_with_env(&desk.config_path) {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    kandan.shutdown().await;
}

/// This test's app and Codex processes (found by the config in their environment; the
/// daemons and drivers the test started have it too, and are left out).
fn processes_with_env(config_path: &Path) -> Vec<u32> {
    let needle = format!("LINZUMI_DESKTOP_CONFIG={}", config_path.display());
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            comm.trim() == "linzumi-desktop"
                || String::from_utf8_lossy(&cmdline).contains("app-server")
        })
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                environ
                    .split(|byte| *byte == 0)
                    .any(|var| var == needle.as_bytes())
            })
        })
        .collect()
}

/// This test's Codex app-servers.
fn app_servers(config_path: &Path) -> Vec<u32> {
    processes_with_env(config_path)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains("app-server"))
        })
        .collect()
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
    let key = |keys: &[&str]| {
        let status = desk
            .command("xdotool")
            .arg("key")
            .args(keys)
            .status()
            .unwrap();
        assert!(status.success());
    };

    let registered =
        || std::fs::read_dir(&autostart).is_ok_and(|mut entries| entries.next().is_some());
    // From the bottom: Quit, Sign in…, Start at login. The menu is rebuilt (and closes)
    // while the app starts up and its folder changes state, so a press may miss.
    // Chooses the item `keys` lead to until `done` (a press may miss; see above).
    let choose = |keys: &[&str], done: &dyn Fn() -> bool| {
        for _ in 0..5 {
            open_menu();
            key(keys);
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while !done() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if done() {
                return true;
            }
            key(&["Escape"]);
        }
        false
    };
    assert!(
        choose(&["Up", "Up", "Up", "Return"], &registered),
        "Start at login registers a login item"
    );
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(&desk.config_path).unwrap()).unwrap();
    assert_eq!(config["settings"]["startAtLogin"], true, "{config:#}");

    // With a tray, the window is only made when asked for: Open Linzumi.
    let window_shown = || {
        desk.command("xdotool")
            .args(["search", "--onlyvisible", "--name", "^Linzumi$"])
            .output()
            .is_ok_and(|output| !output.stdout.is_empty())
    };
    assert!(!window_shown(), "no window before it is asked for");
    open_menu();
    key(&["Up", "Up", "Up", "Up", "Return"]);
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
    assert!(
        choose(&["Up", "Up", "Return"], &|| authorize().is_some()),
        "Sign in… opens the browser"
    );
    let authorize = authorize().unwrap();
    let response = webdriver::http_client(false)
        .get(&authorize)
        .send()
        .await
        .unwrap();
    desk.hand_over(response.headers()["location"].to_str().unwrap());
    wait_until("the shared folder's Codex runs", WAIT, || {
        !app_servers(&desk.config_path).is_empty()
    });

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
