//! The `linzumi` binary end to end: flag errors, browser sign-in (a scripted `$BROWSER`
//! plays the person clicking through), the token cache, and `connect`/`start` running
//! the real codex against the Kandan test server until SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use kandan_test_server::{KandanTestServer, ServerConfig};
use linzumi_engine::process_tree;
use mock_model_api::{CodexHome, CodexHomeOptions, MockModelApi};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn linzumi() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_linzumi"));
    command.env_remove("KANDAN_TOKEN").env_remove("BROWSER");
    command
}

fn run(args: &[&str]) -> Output {
    linzumi().args(args).output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "linzumi-cli-{name}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(std::fs::canonicalize(dir).unwrap())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// A `$BROWSER` that follows the authorize URL to the callback, as a person's
    /// browser would after they approve; it records each URL it was given.
    fn browser(&self) -> PathBuf {
        let script = self.path("browser.sh");
        let log = self.path("browser.log");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$1\" >> '{}'\nexec curl -s -L -o /dev/null \"$1\"\n",
                log.display()
            ),
        )
        .unwrap();
        make_executable(&script);
        script
    }

    /// A `$BROWSER` that must not be used.
    fn no_browser(&self) -> PathBuf {
        let script = self.path("no-browser.sh");
        std::fs::write(&script, "#!/bin/sh\necho opened >> \"$0.log\"\nexit 1\n").unwrap();
        make_executable(&script);
        script
    }

    fn browser_visits(&self) -> usize {
        std::fs::read_to_string(self.path("browser.log"))
            .map(|log| log.lines().count())
            .unwrap_or(0)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn flag_mistakes_get_the_reference_runners_messages() {
    let cases: [(&[&str], &str); 6] = [
        (
            &[
                "connect",
                "--kandan-url",
                "ws://h",
                "--forward-port",
                "vite",
            ],
            "Invalid --forward-port: value must be a TCP port from 1 to 65535.",
        ),
        (
            &[
                "connect",
                "--kandan-url",
                "ws://h",
                "--allowed-cwd",
                "/does/not/exist",
            ],
            "Invalid --allowed-cwd: allowed cwd roots must exist locally.",
        ),
        (
            &["start", "/", "/tmp"],
            "linzumi start accepts at most one folder path",
        ),
        (
            &["start", "--workspace", "w"],
            "linzumi start chooses its workspace during browser onboarding; remove --workspace",
        ),
        (
            &["connect", "--kandan-url", "ws://h", "--sandbox", "yolo"],
            "unsupported Codex sandbox mode: yolo",
        ),
        (
            &[
                "connect",
                "--kandan-url",
                "ws://h",
                "--token",
                "not-a-jwt",
                "--workspace",
                "w",
                "--channel",
                "c",
                "--codex-bin",
                "/bin/true",
            ],
            "missing --listen-user and authenticated user is unavailable",
        ),
    ];
    for (args, message) in cases {
        let output = run(args);
        // The seed exits 1 on every error.
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&output).contains(message),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    // The seed's message alone, no prefix.
    let listen = run(cases[5].0);
    assert_eq!(stderr(&listen), format!("{}\n", cases[5].1));
    let unknown = run(&["connect", "--kandan-url", "ws://h", "--frobnicate"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(stderr(&unknown).starts_with("Invalid flag: --frobnicate"));
}

#[test]
fn version_guide_and_help() {
    let version = run(&["version"]);
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("linzumi {}", env!("CARGO_PKG_VERSION"))
    );
    let guide = String::from_utf8_lossy(&run(&["guide"]).stdout).into_owned();
    assert!(guide.contains("linzumi start ~/"));
    let help = String::from_utf8_lossy(&run(&["connect", "--help"]).stdout).into_owned();
    for flag in [
        "--kandan-url",
        "--token",
        "--auth-file",
        "--oauth-callback-host",
        "--workspace",
        "--channel",
        "--cwd",
        "--allowed-cwd",
        "--runner-id",
        "--codex-bin",
        "--codex-url",
        "--launch-tui",
        "--model",
        "--reasoning-effort",
        "--sandbox",
        "--approval-policy",
        "--fast",
        "--log-file",
        "--forward-port",
        "Bad:",
        "Invalid --forward-port",
    ] {
        assert!(help.contains(flag), "connect --help lacks {flag}");
    }
}

#[test]
fn a_missing_codex_is_reported_before_any_sign_in() {
    let scratch = Scratch::new("no-codex");
    let output = linzumi()
        .args(["connect", "--kandan-url", "ws://127.0.0.1:9", "--codex-bin"])
        .arg(scratch.path("nope/codex"))
        .env("BROWSER", scratch.no_browser())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("install it with `npm install -g @openai/codex`"),
        "{}",
        stderr(&output)
    );
    assert!(!scratch.path("no-browser.sh.log").exists());
}

// The test blocks on the linzumi process while the Kandan test server runs on the
// runtime, so the runtime needs threads of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_signs_in_through_the_browser_and_caches_the_token() {
    let server = KandanTestServer::start(ServerConfig::default())
        .await
        .unwrap();
    let scratch = Scratch::new("auth");
    let auth_file = scratch.path("kandan/auth.json");
    let output = linzumi()
        .args([
            "auth",
            "--kandan-url",
            &server.ws_url(),
            "--channel",
            "acme/codex",
            "--auth-file",
        ])
        .arg(&auth_file)
        .env("BROWSER", scratch.browser())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("Saved Kandan local runner auth for {}", server.http_url())
    );
    assert!(stderr(&output).contains("Authorize the local Codex runner:"));
    assert_eq!(scratch.browser_visits(), 1);
    let cache: Value = serde_json::from_str(&std::fs::read_to_string(&auth_file).unwrap()).unwrap();
    assert_eq!(cache["tokens"][0]["scope"]["workspace"], "acme");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&auth_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // As the reference runner does, every run signs in through the browser again and
    // saves the new token, even while the cached one is still good.
    let cached = cache["tokens"][0]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let again = linzumi()
        .args([
            "auth",
            "--kandan-url",
            &server.ws_url(),
            "--channel",
            "acme/codex",
            "--auth-file",
        ])
        .arg(&auth_file)
        .env("BROWSER", scratch.browser())
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(scratch.browser_visits(), 2);
    let text = std::fs::read_to_string(&auth_file).unwrap();
    assert!(
        !text.contains(&cached),
        "the new token replaced the old one"
    );

    // With --token, that token is saved without a browser, and the message says so.
    let given = server.issue_token("tester", Some(("acme", "codex")));
    let explicit = linzumi()
        .args([
            "auth",
            "--kandan-url",
            &server.ws_url(),
            "--channel",
            "acme/codex",
            "--token",
            &given,
            "--auth-file",
        ])
        .arg(&auth_file)
        .env("BROWSER", scratch.no_browser())
        .output()
        .unwrap();
    assert!(explicit.status.success(), "{}", stderr(&explicit));
    assert!(!scratch.path("no-browser.sh.log").exists());
    assert_eq!(
        String::from_utf8_lossy(&explicit.stdout).trim(),
        format!(
            "Saved the given Kandan local runner token for {} (not checked with Kandan)",
            server.http_url()
        )
    );
    let text = std::fs::read_to_string(&auth_file).unwrap();
    assert!(text.contains(&given), "the given token was saved");
}

/// A `linzumi` child with the codex of the mock model in its environment.
struct Running {
    child: std::process::Child,
    /// `$XDG_STATE_HOME` of the run, where its event log goes by default.
    state: Scratch,
    _home: CodexHome,
    _model: MockModelApi,
}

impl Running {
    async fn spawn(args: Vec<String>, browser: Option<PathBuf>, project: &Path) -> Running {
        let model = MockModelApi::start().await.unwrap();
        let home = CodexHome::create(
            &model,
            CodexHomeOptions {
                trusted_projects: vec![project.to_owned()],
                ..CodexHomeOptions::default()
            },
        )
        .unwrap();
        let state = Scratch::new("state");
        let mut command = linzumi();
        command
            .args(&args)
            .arg("--codex-bin")
            .arg(mock_model_api::codex_bin().unwrap())
            .envs(home.env())
            .env("XDG_STATE_HOME", &state.0)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(browser) = browser {
            command.env("BROWSER", browser);
        }
        Running {
            child: command.spawn().unwrap(),
            state,
            _home: home,
            _model: model,
        }
    }

    /// Where the run logs by default: `$XDG_STATE_HOME/linzumi/logs/<runner id>.jsonl`.
    fn default_log(&self, runner_id: &str) -> PathBuf {
        self.state.path(&format!("linzumi/logs/{runner_id}.jsonl"))
    }

    /// Waits for a run that ends by itself; its exit status and stderr.
    fn finish(mut self) -> (std::process::ExitStatus, String) {
        let deadline = std::time::Instant::now() + WAIT;
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "linzumi did not end by itself"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let output = std::mem::replace(&mut self.child, Command::new("true").spawn().unwrap())
            .wait_with_output()
            .unwrap();
        (output.status, stderr(&output))
    }

    /// SIGTERM, then the exit status and stderr.
    fn terminate(mut self) -> (std::process::ExitStatus, String) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let output = std::mem::replace(&mut self.child, Command::new("true").spawn().unwrap())
            .wait_with_output()
            .unwrap();
        (output.status, stderr(&output))
    }
}

// The test blocks on the linzumi process while the Kandan test server runs on the
// runtime, so the runtime needs threads of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_runs_codex_for_kandan_until_sigterm() {
    let server = KandanTestServer::start(ServerConfig::default())
        .await
        .unwrap();
    let project = Scratch::new("connect");
    let token = server.issue_token("tester", None);
    // Where the log used to go by default, a link a command Codex ran could have left.
    let profile = Scratch::new("connect-home");
    std::fs::write(profile.path(".bashrc"), "# profile\n").unwrap();
    std::os::unix::fs::symlink(
        profile.path(".bashrc"),
        project.path(".kandan-local-codex-runner.log"),
    )
    .unwrap();
    let running = Running::spawn(
        vec![
            "connect".into(),
            "--kandan-url".into(),
            server.ws_url(),
            "--token".into(),
            token.clone(),
            "--runner-id".into(),
            "cli-runner".into(),
            "--cwd".into(),
            project.0.display().to_string(),
            "--allowed-cwd".into(),
            project.0.display().to_string(),
            "--forward-port".into(),
            "5173".into(),
            "--model".into(),
            "gpt-5.5".into(),
        ],
        None,
        &project.0,
    )
    .await;

    let heartbeat = server
        .wait_for_event(
            |e| e.topic == "local_runner:cli-runner" && e.event == "heartbeat",
            WAIT,
        )
        .await
        .unwrap();
    // Seed C8: without a chat session the heartbeat's model is null, whatever --model says.
    assert_eq!(heartbeat.payload["model"], serde_json::Value::Null);
    assert_eq!(
        heartbeat.payload["capabilities"]["allowedPorts"],
        serde_json::json!([5173])
    );
    assert_eq!(
        heartbeat.payload["capabilities"]["toolStatus"]["codex"]["version"],
        "codex-cli 0.169.0"
    );
    let codex_processes = process_tree::tree(running.child.id());
    assert!(codex_processes.len() >= 3, "{codex_processes:?}");
    // The event log is written in the state folder, not in the shared folder (the link
    // there is left alone), privately, and the token is not in it.
    let log = running.default_log("cli-runner");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("kandan.joined"));
    assert!(!text.contains(&token));
    assert_eq!(
        std::fs::read_to_string(profile.path(".bashrc")).unwrap(),
        "# profile\n"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&log), 0o600);
    assert_eq!(mode(log.parent().unwrap()), 0o700);

    let (status, stderr) = running.terminate();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("Stopping: SIGTERM."), "{stderr}");
    assert!(
        stderr.contains(&format!("Event log: {}", log.display())),
        "{stderr}"
    );
    for pid in codex_processes {
        assert!(!process_tree::alive(pid), "process {pid} outlived linzumi");
    }
}

// The test blocks on the linzumi process while the Kandan test server runs on the
// runtime, so the runtime needs threads of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_signs_in_finds_its_workspace_and_shares_the_folder() {
    let server = KandanTestServer::start(ServerConfig::default())
        .await
        .unwrap();
    let project = Scratch::new("start");
    let scratch = Scratch::new("start-auth");
    let running = Running::spawn(
        vec![
            "start".into(),
            project.0.display().to_string(),
            "--kandan-url".into(),
            server.ws_url(),
            "--auth-file".into(),
            scratch.path("auth.json").display().to_string(),
            "--runner-id".into(),
            "start-runner".into(),
        ],
        Some(scratch.browser()),
        &project.0,
    )
    .await;
    let join = server
        .wait_for_event(
            |e| e.topic == "local_runner:start-runner" && e.event == "phx_join",
            WAIT,
        )
        .await
        .unwrap();
    let folder = project.0.display().to_string();
    assert_eq!(
        join.payload["capabilities"]["allowedCwds"],
        serde_json::json!([folder])
    );
    assert_eq!(scratch.browser_visits(), 1);
    let (status, stderr) = running.terminate();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("Sharing") && stderr.contains("with Kandan workspace personal-tester"),
        "{stderr}"
    );
}

/// `--log-file` naming a symbolic link (to the user's profile, say) is refused before
/// anything starts, with a message that says why; the link's target is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_file_that_is_a_symbolic_link_is_refused() {
    let server = KandanTestServer::start(ServerConfig::default())
        .await
        .unwrap();
    let project = Scratch::new("log-link");
    let profile = project.path("bashrc");
    std::fs::write(&profile, "# profile\n").unwrap();
    let link = project.path("runner.log");
    std::os::unix::fs::symlink(&profile, &link).unwrap();
    let running = Running::spawn(
        vec![
            "connect".into(),
            "--kandan-url".into(),
            server.ws_url(),
            "--token".into(),
            server.issue_token("tester", None),
            "--runner-id".into(),
            "link-runner".into(),
            "--cwd".into(),
            project.0.display().to_string(),
            "--log-file".into(),
            link.display().to_string(),
        ],
        None,
        &project.0,
    )
    .await;
    let (status, stderr) = running.finish();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "refusing to write the event log to {}: it is a symbolic link",
            link.display()
        )),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&profile).unwrap(), "# profile\n");
    assert!(
        !server
            .joins()
            .iter()
            .any(|join| join.topic == "local_runner:link-runner"),
        "the runner joined before refusing"
    );
}

/// `start --kandan-thread-id` binds the chat session to that existing thread (seed
/// `index.ts`), and `run`, the reference runner's older name for `connect`, still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_binds_an_existing_thread_and_run_is_connect() {
    let server = KandanTestServer::start(ServerConfig::default())
        .await
        .unwrap();
    let existing = server
        .post_user_message(
            "personal-tester",
            "codex",
            None,
            "tester",
            "an earlier thread",
        )
        .await
        .unwrap();
    let project = Scratch::new("start-thread");
    let scratch = Scratch::new("start-thread-auth");
    let running = Running::spawn(
        vec![
            "start".into(),
            project.0.display().to_string(),
            "--kandan-url".into(),
            server.ws_url(),
            "--auth-file".into(),
            scratch.path("auth.json").display().to_string(),
            "--runner-id".into(),
            "thread-runner".into(),
            "--kandan-thread-id".into(),
            existing.thread_id.clone(),
        ],
        Some(scratch.browser()),
        &project.0,
    )
    .await;
    let bind = server
        .wait_for_event(
            |e| e.topic == "local_runner:thread-runner" && e.event == "session:bind",
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(bind.payload["thread_id"], existing.thread_id.as_str());
    let (status, stderr) = running.terminate();
    assert!(status.success(), "{stderr}");

    let token = server.issue_token("tester", None);
    let project = Scratch::new("run-alias");
    let running = Running::spawn(
        vec![
            "run".into(),
            "--kandan-url".into(),
            server.ws_url(),
            "--token".into(),
            token,
            "--runner-id".into(),
            "run-runner".into(),
            "--cwd".into(),
            project.0.display().to_string(),
        ],
        None,
        &project.0,
    )
    .await;
    server
        .wait_for_event(
            |e| e.topic == "local_runner:run-runner" && e.event == "heartbeat",
            WAIT,
        )
        .await
        .unwrap();
    let (status, stderr) = running.terminate();
    assert!(status.success(), "{stderr}");
}
