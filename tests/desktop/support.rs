//! What the desktop end-to-end tests share: the desk the app runs on (display, bus,
//! notification server, its own HOME and config, a stand-in browser), driving its window
//! through tauri-driver, signing in the way a person does, and finding and ending the
//! app's processes. Each test target uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use kandan_test_server::KandanTestServer;
use linzumi_desktop_core::settings::{ConfigStore, DesktopConfig};
use linzumi_engine::process_tree::{self, ProcessTable, Signal};
use mock_model_api::CodexHome;
use serde_json::{Value, json};

use crate::session::{Session, require, wait_until};
use crate::webdriver::{self, WebDriver};

pub const APP: &str = env!("CARGO_BIN_EXE_linzumi-desktop");
pub const WAIT: Duration = Duration::from_secs(60);

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

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Everything the app runs with: the display, the bus, its own HOME and config, the
/// browser stand-in first on PATH, codex pointed at the mock.
pub struct Desk {
    pub session: Session,
    pub env: Vec<(String, String)>,
    pub config_path: PathBuf,
    /// The shared folder the config starts with.
    pub project: PathBuf,
}

impl Desk {
    pub fn new(name: &str, kandan: &KandanTestServer, codex: &CodexHome) -> Desk {
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

    pub fn dir(&self) -> &Path {
        &self.session.dir
    }

    /// Presses `keys` (xdotool names) in the focused window.
    pub fn key(&self, keys: &[&str]) {
        let status = self
            .command("xdotool")
            .arg("key")
            .args(keys)
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Chooses `folder` in the native folder picker titled like `title` (a regular
    /// expression), typing its path, until `done`.
    pub fn pick_folder(&self, title: &str, folder: &Path, done: &dyn Fn() -> bool) {
        let find = || {
            let mut command = self.command("xdotool");
            command.args(["search", "--onlyvisible", "--name", title]);
            command
        };
        let shown = || {
            find()
                .output()
                .is_ok_and(|output| !output.stdout.is_empty())
        };
        wait_until("the folder picker opens", WAIT, shown);
        let focus = || {
            find().args(["windowfocus", "--sync"]).status().unwrap();
        };
        focus();
        // "/" opens the location entry (Ctrl+L would too, but in the Recent view, where
        // Return does not choose a typed folder); the key after it could be lost while the
        // entry appears, so the whole path is typed over it a moment later.
        self.key(&["slash"]);
        std::thread::sleep(Duration::from_millis(500));
        self.key(&["ctrl+a"]);
        let typed = self
            .command("xdotool")
            .args(["type", "--delay", "30", &format!("{}/", folder.display())])
            .status()
            .unwrap();
        assert!(typed.success());
        // Return opens the typed folder in the picker, or chooses it; once more chooses it.
        for _ in 0..4 {
            if done() {
                return;
            }
            std::thread::sleep(Duration::from_millis(700));
            if shown() {
                focus();
                let _ = self.command("xdotool").args(["key", "Return"]).status();
            }
        }
        wait_until("the picked folder is taken", WAIT, done);
    }

    /// dunst, with our dmenu script for pressing buttons.
    pub fn start_dunst(&mut self) {
        let script = self.dir().join("pick.sh");
        executable(&script, PICK_SCRIPT);
        let dunstrc = self.dir().join("dunstrc");
        std::fs::write(
            &dunstrc,
            // Bottom left: clear of the tray panel at the top right.
            format!(
                "[global]\n    dmenu = {}\n    origin = bottom-left\n",
                script.display()
            ),
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

    /// Starts tauri-driver and, through it, the app with its window.
    pub async fn start_driver(&mut self) -> WebDriver {
        require("tauri-driver");
        require("WebKitWebDriver");
        let port = free_port();
        let mut driver_command = self.command("tauri-driver");
        driver_command
            .args(["--port", &port.to_string()])
            .args(["--native-port", &free_port().to_string()])
            .stdout(Stdio::null());
        self.session.spawn("tauri-driver", &mut driver_command);
        wait_until("tauri-driver listens", WAIT, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        WebDriver::start(port, Path::new(APP)).await
    }

    /// Starts the app; its log goes to `app.log` in the desk's folder.
    pub fn launch(&self) -> std::process::Child {
        let log = std::fs::File::create(self.dir().join("app.log")).unwrap();
        self.command(APP)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.envs(self.env.iter().cloned());
        command
    }

    pub fn dunstctl(&self, args: &[&str]) -> String {
        let output = self.command("dunstctl").args(args).output().unwrap();
        assert!(output.status.success(), "dunstctl {args:?}: {output:?}");
        String::from_utf8(output.stdout).unwrap()
    }

    pub fn displayed(&self) -> usize {
        self.dunstctl(&["count", "displayed"])
            .trim()
            .parse()
            .unwrap()
    }

    /// Launches the app a second time with `link`, as the desktop does for a
    /// `linzumi://` URL; the running app takes it and this launch exits.
    pub fn hand_over(&self, link: &str) {
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

    pub fn opened(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir().join("opened"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// Presses the window's "Sign in" and plays the browser: returns the page the app opened
/// (Kandan's authorization) and the `linzumi://` link Kandan redirects back to.
pub async fn authorize_in_browser(desk: &Desk, driver: &WebDriver) -> (String, String) {
    let before = desk.opened().len();
    click_button(driver, "Sign in").await;
    wait_until("the app opens the browser", WAIT, || {
        desk.opened().len() > before
    });
    let authorize = desk.opened().remove(before);
    let response = webdriver::http_client(false)
        .get(&authorize)
        .send()
        .await
        .unwrap();
    let callback = response.headers()["location"].to_str().unwrap().to_owned();
    (authorize, callback)
}

/// The app's state as the window renders it.
pub async fn snapshot(driver: &WebDriver) -> Value {
    driver
        .execute(
            "return window.__TAURI__.core.invoke('get_snapshot', {});",
            json!([]),
        )
        .await
}

pub async fn wait_for_snapshot(
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
pub async fn wait_for_notice(driver: &WebDriver, text: &str) -> String {
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
pub async fn click_button(driver: &WebDriver, label: &str) {
    click_button_in(driver, "body", label).await;
}

/// Clicks the button whose text starts with `label` inside the element `scope` (a CSS
/// selector), e.g. one folder's card.
pub async fn click_button_in(driver: &WebDriver, scope: &str, label: &str) {
    // The window re-renders on every snapshot: a button marked a moment ago may be
    // replaced before the click lands; then it is found and marked again.
    for _ in 0..10 {
        driver
            .wait_for(
                &format!("a {label:?} button in {scope}"),
                "const s = document.querySelector(arguments[0]); \
                 const b = s && [...s.querySelectorAll('button')] \
                   .find((b) => b.textContent.trim().startsWith(arguments[1])); \
                 if (!b) return null; b.setAttribute('data-e2e', 'target'); return true;",
                json!([scope, label]),
            )
            .await;
        let clicked = driver.try_click("[data-e2e=target]").await;
        driver
            .execute(
                "document.querySelector('[data-e2e=target]')?.removeAttribute('data-e2e');",
                json!([]),
            )
            .await;
        match clicked {
            Ok(()) => return,
            Err((error, _)) if error == "no such element" || error == "stale element reference" => {
            }
            Err((error, message)) => panic!("clicking {label:?} in {scope}: {error}: {message}"),
        }
    }
    panic!("the {label:?} button in {scope} was replaced before every click");
}

/// A chat message that scripts the mock model's answer.
pub fn mock(steps: Value) -> String {
    format!("mock: {}", json!({"steps": steps}))
}

/// This test's app and Codex processes (found by the config in their environment; the
/// daemons and drivers the test started have it too, and are left out).
pub fn processes_with_env(config_path: &Path) -> Vec<u32> {
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
pub fn app_servers(config_path: &Path) -> Vec<u32> {
    processes_with_env(config_path)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains("app-server"))
        })
        .collect()
}

/// Ends the WebDriver session and the app with everything it started. Ending the session
/// kills the app (tauri-driver sends SIGKILL), which leaves its Codex, what Codex ran and
/// the editor running: they are ended here so runs leave nothing behind.
pub async fn quit(driver: WebDriver, config_path: &Path) {
    // Read before the app dies: its children are re-parented then.
    let processes = app_tree(config_path);
    driver.quit().await;
    kill(&processes);
}

/// This test's app and everything it started, each with when it started.
fn app_tree(config_path: &Path) -> Vec<(u32, Option<u64>)> {
    let table = ProcessTable::read().unwrap();
    processes_with_env(config_path)
        .into_iter()
        .flat_map(|root| table.tree(root))
        .map(|pid| (pid, start_time(pid)))
        .collect()
}

/// Kills each process that is still the one [`app_tree`] found (not a new one that was
/// given a freed pid).
fn kill(processes: &[(u32, Option<u64>)]) {
    for &(pid, started) in processes {
        if started.is_some() && start_time(pid) == started {
            process_tree::signal(&[pid], Signal::Kill);
        }
    }
}

/// When `pid` started (clock ticks after boot), from `/proc/<pid>/stat`.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command, which is in parentheses and may contain spaces: field 22 of
    // the line is the 20th after it.
    stat.rsplit_once(") ")?.1.split(' ').nth(19)?.parse().ok()
}

/// A test that fails before [`quit`] leaves nothing running either: the app and what it
/// started end here, before the session's daemons (tauri-driver among them).
impl Drop for Desk {
    fn drop(&mut self) {
        kill(&app_tree(&self.config_path));
    }
}
